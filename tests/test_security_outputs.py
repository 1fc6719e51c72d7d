"""A careless output path deletes nothing (issue 16, items 3 and 9; docs/security.md): every command
with --out/--dest/--work-dir refuses the root, home and current directory, a folder holding one of
its inputs, and an existing folder that holds anything but its own earlier output; a result file
never replaces an input, a folder or a device; a read-only destination is one line."""
import json
import os
import shutil
from pathlib import Path

import pytest

from cgrseg.io import MARKER

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / 'configs/paper/results.yaml'
HYPOTHESES = ROOT / 'configs/paper/hypotheses.yaml'
FIXTURE = ROOT / 'tests/fixtures/metrics'
ADE = ROOT / 'configs/cgrseg/cgrseg-t_ade20k_160k.py'


def one_line(result, cmd, *fragments):
    assert result.code == 2, result.err
    assert len(result.error_lines) == 1 and 'Traceback' not in result.err, result.err
    line = result.error_lines[0]
    assert line.startswith(f'cgrseg {cmd}: error: ')
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.fixture
def metrics(run_cli, tmp_path):
    out = tmp_path / 'in' / 'metrics.json'
    result = run_cli('collect', '--params', FIXTURE / 'params.yaml', '--results', FIXTURE / 'results',
                     '--hypotheses', HYPOTHESES, '--out', out)
    assert result.code == 0, result.err
    return out


def tables(run_cli, metrics, out):
    return run_cli('tables', '--metrics', metrics, '--paper', PAPER, '--hypotheses', HYPOTHESES,
                   '--out', out)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


# -- a folder the command would replace or write into --------------------------------------------

def test_tables_out_dot_deletes_nothing(run_cli, metrics, tmp_path, monkeypatch):
    """`cgrseg tables --out .` used to empty the current directory."""
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'notes.txt').write_text('mine')
    monkeypatch.chdir(work)
    for out in ('.', '..', os.sep):
        one_line(tables(run_cli, metrics, out), 'tables', f'{out}: is ', 'refusing to write into it')
    assert (work / 'notes.txt').read_text() == 'mine'


def test_tables_out_over_a_foreign_folder_keeps_its_files(run_cli, metrics, tmp_path):
    out = tmp_path / 'paper_drafts'
    out.mkdir()
    (out / 'chapter1.tex').write_text('mine')
    one_line(tables(run_cli, metrics, out), 'tables', f'{out}: holds files that `cgrseg tables` did not '
             f'write (no {MARKER} of its own)')
    assert snapshot(out) == {Path('chapter1.tex'): b'mine'}


def test_tables_rerun_replaces_its_own_output(run_cli, metrics, tmp_path):
    out = tmp_path / 'tables'
    assert tables(run_cli, metrics, out).code == 0
    (out / 'ade20k.md').write_text('stale')
    assert tables(run_cli, metrics, out).code == 0
    assert (out / 'ade20k.md').read_text() != 'stale'


def test_tables_out_holding_an_input_is_refused(run_cli, metrics, tmp_path):
    one_line(tables(run_cli, metrics, metrics.parent), 'tables', f'holds an input of this command ({metrics})')
    one_line(tables(run_cli, metrics, tmp_path), 'tables', 'holds an input of this command')
    assert metrics.is_file()


def test_a_folder_of_another_command_is_not_taken(run_cli, metrics, tmp_path):
    synth = tmp_path / 'synth'
    assert run_cli('synth', 'ade20k', '--out', synth, '--images', 2).code == 0
    before = snapshot(synth)
    one_line(tables(run_cli, metrics, synth), 'tables', 'did not write')
    assert snapshot(synth) == before


def test_synth_does_not_write_over_a_foreign_folder(run_cli, tmp_path):
    """The real ADE20K archive in data/raw must survive `cgrseg synth ade20k --out data/raw`."""
    raw = tmp_path / 'raw'
    raw.mkdir()
    (raw / 'ADEChallengeData2016.zip').write_bytes(b'the real 1 GB download')
    one_line(run_cli('synth', 'ade20k', '--out', raw), 'synth', f'{raw}: holds files that `cgrseg synth`')
    assert snapshot(raw) == {Path('ADEChallengeData2016.zip'): b'the real 1 GB download'}
    shared = tmp_path / 'synth'   # several datasets share one synth folder
    for dataset in ('ade20k', 'coco_stuff10k'):
        assert run_cli('synth', dataset, '--out', shared, '--images', 2).code == 0


def test_download_dest_may_hold_only_archives(run_cli, synth_archives, tmp_path):
    dest = tmp_path / 'raw'
    dest.mkdir()
    (dest / 'thesis.pdf').write_bytes(b'mine')
    result = run_cli('download', 'ade20k', '--sources', synth_archives / 'sources.yaml', '--dest', dest)
    one_line(result, 'download', f'{dest}: holds files that `cgrseg download` did not write')
    (dest / 'thesis.pdf').unlink()
    (dest / 'cocostuff-10k-v1.1.zip.sha256').write_text('0' * 64 + '  cocostuff-10k-v1.1.zip\n')
    assert run_cli('download', 'ade20k', '--sources', synth_archives / 'sources.yaml',
                   '--dest', dest).code == 0   # another dataset's record is download's own
    one_line(run_cli('download', 'ade20k', '--sources', synth_archives / 'sources.yaml', '--dest',
                     synth_archives.parent), 'download', 'holds an input of this command')


def test_prepare_out_is_checked_before_any_work(run_cli, raw, tmp_path):
    out = tmp_path / 'prepared'
    out.mkdir()
    (out / 'other.txt').write_text('mine')
    one_line(run_cli('prepare', 'ade20k', '--raw', raw, '--out', out), 'prepare',
             f'{out}: holds files that `cgrseg prepare` did not write')
    one_line(run_cli('prepare', 'ade20k', '--raw', raw, '--out', tmp_path), 'prepare',
             f'holds an input of this command ({raw})')
    assert snapshot(out) == {Path('other.txt'): b'mine'}


def test_prepare_never_replaces_a_data_root_it_did_not_write(run_cli, raw, tmp_path):
    out = tmp_path / 'prepared'
    assert run_cli('prepare', 'coco_stuff10k', '--raw', raw, '--out', out, '--jobs', 1).code == 0
    root = out / 'coco_stuff10k'
    assert json.loads((root / MARKER).read_text())['command'] == 'prepare'
    assert run_cli('prepare', 'coco_stuff10k', '--raw', raw, '--out', out, '--force', '--jobs', 1).code == 0
    (root / MARKER).unlink()    # as if the folder were someone else's
    one_line(run_cli('prepare', 'coco_stuff10k', '--raw', raw, '--out', out, '--force', '--jobs', 1),
             'prepare', f'{root}: holds files that `cgrseg prepare` did not write')
    assert root.is_dir()


def test_train_refuses_a_work_dir_that_is_not_one(run_cli, tmp_path, monkeypatch):
    foreign = tmp_path / 'project'
    foreign.mkdir()
    (foreign / 'iter_1.pth').write_bytes(b'my own file, not a checkpoint of cgrseg train')
    data = tmp_path / 'data'
    for kind in ('images', 'annotations'):
        for split in ('training', 'validation'):
            (data / 'ade/ADEChallengeData2016' / kind / split).mkdir(parents=True)
    args = ('--gpus', 0, '--no-pretrained', '--data-root', data)
    one_line(run_cli('train', ADE, '--work-dir', foreign, *args), 'train',
             f'{foreign}: holds files that `cgrseg train` did not write')
    one_line(run_cli('train', ADE, '--work-dir', data, *args), 'train', 'holds an input of this command')
    monkeypatch.chdir(foreign)
    one_line(run_cli('train', ADE, '--work-dir', '.', *args), 'train', 'is the current directory')
    assert sorted(p.name for p in foreign.iterdir()) == ['iter_1.pth']


# -- a result file -------------------------------------------------------------------------------

def test_diff_and_figure_never_overwrite_an_input_through_their_suffixes(run_cli, metrics):
    """diff writes PREFIX.md and PREFIX.json: --out PREFIX of the metrics file would replace it."""
    before = metrics.read_bytes()
    prefix = metrics.with_suffix('')
    one_line(run_cli('diff', '--metrics', metrics, '--paper', PAPER, '--hypotheses', HYPOTHESES,
                     '--out', prefix), 'diff', f'{metrics}: is an input of this command')
    paper_copy = metrics.parent / 'paper.png'
    shutil.copy(PAPER, paper_copy)
    one_line(run_cli('figure', '--metrics', metrics, '--paper', paper_copy, '--hypotheses', HYPOTHESES,
                     '--out', paper_copy.with_suffix('')), 'figure', 'is an input of this command')
    assert metrics.read_bytes() == before
    assert not metrics.with_suffix('.md').exists()


@pytest.mark.parametrize('cmd', ['evaluate', 'flops', 'collect', 'pretrained'])
def test_an_output_that_is_a_folder_or_an_input_is_one_line(run_cli, tmp_path, cmd):
    ckpt = tmp_path / 'w.pth'
    ckpt.write_bytes(b'x')
    params = tmp_path / 'params.yaml'
    shutil.copy(FIXTURE / 'params.yaml', params)
    argv = {'evaluate': ['evaluate', ADE, ckpt, '--out'],
            'flops': ['flops', ADE, '--shape', 64, 64, '--out'],
            'collect': ['collect', '--params', params, '--results', FIXTURE / 'results', '--out'],
            'pretrained': ['pretrained', 's1', '--from', ckpt, '--out']}[cmd]
    folder = tmp_path / 'folder'
    folder.mkdir()
    one_line(run_cli(*argv, folder), cmd, f'{folder}: is a folder')
    victim = {'evaluate': ckpt, 'flops': ADE, 'collect': params, 'pretrained': ckpt}[cmd]
    before = victim.read_bytes()
    one_line(run_cli(*argv, victim), cmd, f'{victim}: is an input of this command')
    assert victim.read_bytes() == before


def test_pretrained_out_that_ends_in_json_is_refused(run_cli, tmp_path):
    one_line(run_cli('pretrained', 's1', '--from', tmp_path / 'w.pth', '--out', tmp_path / 'w.json'),
             'pretrained', 'cannot end in .json')


def test_a_read_only_destination_is_one_line_for_every_command(run_cli, metrics, synth_archives, read_only):
    cases = [
        ('flops', ['flops', ADE, '--shape', 64, 64, '--out', read_only / 'f.json']),
        ('tables', ['tables', '--metrics', metrics, '--paper', PAPER, '--hypotheses', HYPOTHESES,
                    '--out', read_only / 'tables']),
        ('diff', ['diff', '--metrics', metrics, '--paper', PAPER, '--hypotheses', HYPOTHESES,
                  '--out', read_only / 'diff']),
        ('synth', ['synth', 'ade20k', '--out', read_only / 'synth']),
        ('download', ['download', 'ade20k', '--sources', synth_archives / 'sources.yaml',
                      '--dest', read_only / 'raw']),
    ]
    for cmd, argv in cases:
        one_line(run_cli(*argv), cmd, 'is read-only')
    assert list(read_only.iterdir()) == []
