"""Faults around training, evaluation and measurement (issue 10): broken configs and inputs give one
line, checkpoints are written atomically and unreadable ones skipped, one trainer per work dir,
a resumable data stream, a full disk."""
import errno
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('mmseg')
torch = pytest.importorskip('torch')

from cgrseg.errors import CGRSegError  # noqa: E402
from cgrseg.runner import checkpoints, resume  # noqa: E402
from cgrseg.runner import config_rewrites as C  # noqa: E402
from cgrseg.runner.lock import WorkDirLock  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ADE = ROOT / 'configs/cgrseg/cgrseg-t_ade20k_160k.py'
ADE_B = ROOT / 'configs/cgrseg/cgrseg-b_ade20k_160k.py'
BASE = ROOT / 'configs/_base_'
PARTS = {'model': BASE / 'models/cgrseg-t.py', 'data': BASE / 'datasets/ade20k.py',
         'schedule': BASE / 'schedules/adamw_poly_160k.py', 'runtime': BASE / 'default_runtime.py'}
EXPERIMENT = "experiment = dict(model='cgrseg-t', variant='t', dataset='ade20k', paper_mode='ss')\n"
IMPORTS = "custom_imports = dict(imports=['cgrseg.models'], allow_failed_imports=False)\n"


def config_without(tmp_path, part):
    path = tmp_path / f'no_{part}.py'
    bases = [str(p) for name, p in PARTS.items() if name != part]
    path.write_text(f'{IMPORTS}_base_ = {bases!r}\n{EXPERIMENT}')
    return path


def config_with(tmp_path, name, body):
    path = tmp_path / f'{name}.py'
    path.write_text(f'_base_ = [{str(ADE)!r}]\n{body}\n')
    return path


BROKEN = {  # name: (config maker, expected message)
    'no model': (lambda t: config_without(t, 'model'), 'config has no `model`'),
    'unknown model type': (lambda t: config_with(t, 'unknown', "model = dict(backbone=dict(type='NoSuchNet'))"),
                           "`model.backbone.type` 'NoSuchNet' is not a registered mmseg type"),
    'text num_classes': (lambda t: config_with(t, 'classes', "model = dict(decode_head=dict(num_classes='150'))"),
                         "`model.decode_head.num_classes` must be a positive integer, not '150'"),
    'float num_classes': (lambda t: config_with(t, 'fclasses', 'model = dict(decode_head=dict(num_classes=1.5))'),
                          '`model.decode_head.num_classes` must be a positive integer, not 1.5'),
    'no data': (lambda t: config_without(t, 'data'), 'config has no `data`'),
    'no max_iters': (lambda t: config_with(t, 'iters', "runner = dict(_delete_=True, type='IterBasedRunner')"),
                     'config has no `runner.max_iters`'),
}
MODEL_ONLY = ('no model', 'unknown model type', 'text num_classes', 'float num_classes')


def command(name, config, tmp_path):
    ckpt = tmp_path / 'some.pth'
    ckpt.write_bytes(b'not empty')
    return {
        'flops': ['flops', config, '--shape', 64, 64, '--out', tmp_path / 'out.json'],
        'throughput': ['throughput', config, '--shape', 64, 64, '--device', 'cpu', '--out', tmp_path / 'out.json'],
        'train': ['train', config, '--work-dir', tmp_path / 'work', '--gpus', 0, '--no-pretrained',
                  '--data-root', tmp_path],
        'evaluate': ['evaluate', config, ckpt, '--out', tmp_path / 'out.json'],
    }[name]


@pytest.mark.parametrize('cmd', ['flops', 'throughput', 'train', 'evaluate'])
@pytest.mark.parametrize('case', list(BROKEN))
def test_broken_configs_are_one_line(run_cli, tmp_path, cmd, case):
    if cmd in ('flops', 'throughput') and case not in MODEL_ONLY:
        pytest.skip(f'{cmd} needs only the model')
    make, message = BROKEN[case]
    config = make(tmp_path)
    result = run_cli(*command(cmd, config, tmp_path))
    assert result.code == 2 and result.error_lines == [f'cgrseg {cmd}: error: {config}: {message}']
    assert 'Traceback' not in result.err
    assert not (tmp_path / 'out.json').exists() and not (tmp_path / 'work').exists()


def test_config_syntax_error_is_one_line_without_a_trailing_traceback(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text("model = dict(type='EncoderDecoder'\nx = 1\n")
    proc = subprocess.run([sys.executable, '-m', 'cgrseg.cli', 'flops', str(bad)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if 'error' in line] == [
        f"cgrseg flops: error: {bad}: cannot load config: There are syntax errors in config file {bad}: "
        "'(' was never closed (<unknown>, line 1)"]
    assert 'Exception ignored' not in proc.stderr and 'Traceback' not in proc.stderr


def test_empty_checkpoint_is_one_line(run_cli, tmp_path):
    empty = tmp_path / 'iter_1.pth'
    empty.touch()
    result = run_cli('evaluate', ADE, empty, '--out', tmp_path / 'm.json')
    assert result.code == 2
    assert result.error_lines == [f'cgrseg evaluate: error: {empty}: cannot read checkpoint: the file is empty']
    assert not (tmp_path / 'm.json').exists()


def test_a_manifest_that_is_not_an_object_is_refused_before_evaluating(run_cli, tmp_path, monkeypatch):
    from cgrseg.runner import evaluate
    monkeypatch.setattr(evaluate, 'predict_and_score', lambda *a: pytest.fail('evaluated anyway'))
    manifest = tmp_path / 'ade20k.manifest.json'
    manifest.write_text('[]')
    ckpt = tmp_path / 'x.pth'
    ckpt.write_bytes(b'x')
    result = run_cli('evaluate', ADE, ckpt, '--out', tmp_path / 'm.json', '--manifest', manifest)
    assert result.code == 2 and result.error_lines == [
        f'cgrseg evaluate: error: {manifest}: the data set manifest must be a JSON object, not list']


def fake_ade_root(root):
    """Empty directories where the ADE20K config looks for its images (enough for the checks)."""
    for kind in ('images', 'annotations'):
        for split in ('training', 'validation'):
            (root / 'ade/ADEChallengeData2016' / kind / split).mkdir(parents=True, exist_ok=True)
    return root


def test_another_variant_on_a_work_dir_is_refused_and_leaves_it_alone(run_cli, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    resolved = C.resolved_text(C.load_config(ADE))
    (work / 'config.py').write_text(resolved)
    result = run_cli('train', ADE_B, '--work-dir', work, '--gpus', 0, '--no-pretrained',
                     '--data-root', fake_ade_root(tmp_path / 'data'))
    assert result.code == 2 and result.error_lines == [
        f'cgrseg train: error: {ADE_B}: {work} holds a cgrseg-t ade20k run, not cgrseg-b ade20k '
        f'(per {work}/config.py); refusing to mix them: use another --work-dir']
    assert (work / 'config.py').read_text() == resolved


LOCK_HOLDER = '''
import sys, time
from cgrseg.runner.lock import WorkDirLock
with WorkDirLock(sys.argv[1]):
    print('held', flush=True)
    time.sleep(120)
'''


def test_a_second_trainer_on_a_work_dir_gets_one_line_naming_the_holder(run_cli, tmp_path):
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    holder = subprocess.Popen([sys.executable, '-c', LOCK_HOLDER, str(work)], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == 'held'
        result = run_cli('train', ADE, '--work-dir', work, '--gpus', 0, '--no-pretrained',
                         '--data-root', fake_ade_root(tmp_path / 'data'))
        assert result.code == 2 and len(result.error_lines) == 1
        line = result.error_lines[0]
        assert line.startswith(f'cgrseg train: error: {work}: work directory in use by another `cgrseg train` '
                               f'(pid {holder.pid} on host ')
        assert not (work / 'config.py').exists()
    finally:
        holder.kill()
        holder.wait()
    with WorkDirLock(work):     # the kernel released the dead holder's lock
        pass


FORKING_HOLDER = '''
import multiprocessing, sys, time
from cgrseg.runner.lock import WorkDirLock

def work(running):
    running.set()
    time.sleep(120)

with WorkDirLock(sys.argv[1]):
    fork = multiprocessing.get_context('fork')
    running = fork.Event()
    worker = fork.Process(target=work, args=(running,))
    worker.start()   # as a data-loader worker is
    running.wait()   # past the fork's hooks
    print(worker.pid, flush=True)
    time.sleep(120)
'''


def test_a_killed_trainers_forked_workers_do_not_hold_its_lock(tmp_path):
    """SIGKILL ends the trainer, not its loader workers (seconds later): a rerun must not wait."""
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    holder = subprocess.Popen([sys.executable, '-c', FORKING_HOLDER, str(work)], stdout=subprocess.PIPE,
                              text=True, env=env)
    worker = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait()
        os.kill(worker, 0)   # still alive
        with WorkDirLock(work):
            pass
    finally:
        os.kill(worker, 9)


# -- checkpoints ------------------------------------------------------------------------------

def test_a_failed_checkpoint_write_leaves_nothing(tmp_path):
    target = tmp_path / 'iter_3.pth'

    def half_then_full(tmp):
        Path(tmp).write_bytes(b'half a checkpoint')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(CGRSegError, match=f'{target}: cannot write checkpoint: No space left on device'):
        checkpoints.save_atomically(half_then_full, target)
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_are_renamed_into_place_and_latest_follows(tmp_path, monkeypatch):
    seen = []

    def write(tmp):
        seen.append(Path(tmp).name)
        torch.save({'state_dict': {}, 'meta': {'iter': 1}}, tmp)

    checkpoints.save_atomically(write, tmp_path / 'iter_2.pth')
    checkpoints.point_latest(tmp_path / 'iter_2.pth')
    assert seen[0].startswith('.iter_2.pth.') and seen[0].endswith('.tmp')   # never the real name
    checkpoints.save_atomically(write, tmp_path / 'iter_4.pth')
    checkpoints.point_latest(tmp_path / 'iter_4.pth')
    assert os.readlink(tmp_path / 'latest.pth') == 'iter_4.pth'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_2.pth', 'iter_4.pth', 'latest.pth']


def test_resume_skips_an_unreadable_checkpoint_with_a_warning(tmp_path):
    good = tmp_path / 'iter_4.pth'
    torch.save({'state_dict': {}, 'meta': {'iter': 3, 'epoch': 1}}, good)
    truncated = tmp_path / 'iter_6.pth'
    truncated.write_bytes(good.read_bytes()[:200])       # a kill while it was written (old code)
    (tmp_path / 'iter_8.pth').touch()                    # a kill right after it was created
    warnings = []
    path, meta = checkpoints.resumable(tmp_path, warnings.append)
    assert path == good and meta == {'iter': 3, 'epoch': 1}
    assert len(warnings) == 2
    assert 'iter_8.pth: cannot read checkpoint: the file is empty' in warnings[0]
    assert 'iter_6.pth: cannot read checkpoint' in warnings[1]
    assert checkpoints.resumable(tmp_path / 'nothing', warnings.append) == (None, None)


def test_prune_keeps_the_newest_and_stale_temporaries_go(tmp_path):
    for n in (1, 2, 3, 10, 11):
        (tmp_path / f'iter_{n}.pth').touch()
    (tmp_path / '.iter_12.pth.999.tmp').touch()
    checkpoints.prune(tmp_path, 3)
    checkpoints.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_10.pth', 'iter_11.pth', 'iter_3.pth']


# -- the data stream --------------------------------------------------------------------------

class Augmented(torch.utils.data.Dataset):
    """Items that depend on every global RNG, as mmseg's augmentations do."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        import random
        return torch.tensor([i, random.random(), np.random.rand(), torch.rand(1).item()], dtype=torch.float64)


def mmseg_like_loader(workers, batch=3):
    # not persistent: workers that ignore SIGTERM and outlive a failed test would hang pytest's exit
    # (the trainer shuts its persistent workers down itself: ExactResumeRunner._stop_workers)
    return torch.utils.data.DataLoader(Augmented(), batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=workers)


def stream(loader, epochs):
    batches = []
    for _ in range(epochs):
        batches += [b.clone() for b in loader]
    return batches


def test_the_data_stream_resumes_mid_epoch_whatever_the_workers():
    uninterrupted = stream(resume.resumable_loader(mmseg_like_loader(0), seed=7), epochs=3)
    assert len(uninterrupted) == 9                          # 3 batches of 3 per epoch, last one dropped
    order = [int(i) for b in uninterrupted[:3] for i in b[:, 0]]
    assert order != sorted(order) and len(set(order)) == 9
    for completed in (4, 6):                                # mid-epoch, and at an epoch boundary
        loader = resume.resumable_loader(mmseg_like_loader(2), seed=7)
        loader.sampler.seek(*resume.position(loader, completed))
        torch.manual_seed(123)                              # the trainer's RNG does not matter
        rest = stream(loader, epochs=3)[:9 - completed]
        assert all(torch.equal(a, b) for a, b in zip(rest, uninterrupted[completed:]))


def test_an_unshuffled_loader_keeps_its_order_and_resumes():
    sequential = torch.utils.data.DataLoader(Augmented(), batch_size=3, shuffle=False, drop_last=True)
    loader = resume.resumable_loader(sequential, seed=7)
    assert [int(i) for b in stream(loader, epochs=1) for i in b[:, 0]] == list(range(9))
    loader.sampler.seek(*resume.position(loader, 2))
    assert [int(i) for i in next(iter(loader))[:, 0]] == [6, 7, 8]


def test_loading_a_sample_leaves_the_training_random_states_alone():
    loader = resume.resumable_loader(mmseg_like_loader(0), seed=1)
    torch.manual_seed(5)
    before = resume.rng_state()
    next(iter(loader))
    after = resume.rng_state()
    assert torch.equal(before['torch'], after['torch']) and before['python'] == after['python']
    assert before['numpy'] == after['numpy']


def test_rng_state_round_trip():
    state = resume.rng_state()
    first = (torch.rand(3), np.random.rand(), __import__('random').random())
    resume.set_rng_state(state)
    again = (torch.rand(3), np.random.rand(), __import__('random').random())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


# -- a full disk ------------------------------------------------------------------------------

@pytest.fixture
def full_disk(small_tmpfs):
    """The small tmpfs, filled up to the last page."""
    with open(small_tmpfs / 'filler', 'wb', buffering=0) as f:
        with pytest.raises(OSError) as full:
            while True:
                f.write(b'\0' * 4096)
        assert full.value.errno == errno.ENOSPC
    return small_tmpfs


def test_flops_on_a_full_disk_is_one_line_and_leaves_nothing(run_cli, full_disk):
    out = full_disk / 'flops.json'
    result = run_cli('flops', ADE, '--shape', 64, 64, '--out', out)
    assert result.code == 2
    assert result.error_lines == [f'cgrseg flops: error: {out}: cannot write: No space left on device']
    assert sorted(p.name for p in full_disk.iterdir()) == ['filler']


def test_a_checkpoint_on_a_full_disk_is_one_error_and_leaves_nothing(full_disk):
    target = full_disk / 'iter_1.pth'
    buffer = io.BytesIO()
    torch.save({'state_dict': {'w': torch.zeros(100_000)}, 'meta': {}}, buffer)
    # as mmcv's save_checkpoint: serialise to memory, then write the bytes
    with pytest.raises(CGRSegError, match='cannot write checkpoint: No space left on device'):
        checkpoints.save_atomically(lambda tmp: Path(tmp).write_bytes(buffer.getvalue()), target)
    assert sorted(p.name for p in full_disk.iterdir()) == ['filler']
