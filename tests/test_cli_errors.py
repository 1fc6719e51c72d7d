"""Error paths of the commands that had none under test: each is one line
``cgrseg <cmd>: error: ...``, exit code 2, no traceback and nothing written."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

# Imported here, outside any output capture: torch's loggers keep the stream they first write to,
# and a warning printed at their import (no CUDA runtime) would otherwise land in a closed capture.
pytest.importorskip('mmcv.cnn')

ROOT = Path(__file__).resolve().parents[1]
ADE_T = ROOT / 'configs' / 'cgrseg' / 'cgrseg-t_ade20k_160k.py'
PAPER = ROOT / 'configs' / 'paper' / 'results.yaml'
QUICK = ('--shape', '64', '64', '--warmup', '0', '--repeats', '1', '--iters', '1')  # fails fast, were the check gone


def fails_cleanly(result, command, *fragments):
    """Exit 2 with exactly one error line that starts with the command and names the problem."""
    assert result.code == 2, (result.out, result.err)
    assert 'Traceback' not in result.err
    assert len(result.error_lines) == 1, result.err
    line = result.error_lines[0]
    assert line.startswith(f'cgrseg {command}: error: '), line
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without CUDA, also where the tests run on a GPU node."""
    torch = pytest.importorskip('torch')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


# ---------------------------------------------------------------- throughput

@pytest.mark.parametrize('device', ['cuda', 'cuda:1'])
def test_throughput_on_cuda_without_cuda(run_cli, tmp_path, no_cuda, device):
    out = tmp_path / 't.json'
    result = run_cli('throughput', ADE_T, '--device', device, *QUICK, '--out', out)
    fails_cleanly(result, 'throughput', f'--device {device}', 'no CUDA device')
    assert list(tmp_path.iterdir()) == []


def test_throughput_float16_on_cpu(run_cli, tmp_path):
    out = tmp_path / 't.json'
    result = run_cli('throughput', ADE_T, '--device', 'cpu', '--dtype', 'float16', *QUICK, '--out', out)
    fails_cleanly(result, 'throughput', 'float16', 'CUDA')
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- train

def test_train_on_gpus_without_cuda(run_cli, tmp_path, no_cuda):
    work = tmp_path / 'work'
    result = run_cli('train', ADE_T, '--work-dir', work, '--gpus', '2', '--no-pretrained')
    fails_cleanly(result, 'train', '--gpus 2', 'no CUDA device')
    assert not work.exists()


def test_train_with_no_samples_per_gpu(run_cli, tmp_path, no_cuda):
    work = tmp_path / 'work'
    result = run_cli('train', ADE_T, '--work-dir', work, '--gpus', '0', '--samples-per-gpu', '0',
                     '--no-pretrained')
    fails_cleanly(result, 'train', 'argument --samples-per-gpu: 0 is less than the minimum of 1')
    assert not work.exists()


# ---------------------------------------------------------------- pretrained --from

def pretrained(run_cli, tmp_path, arch, source):
    out = tmp_path / 'out' / f'efficientformerv2_{arch}.pth'
    return run_cli('pretrained', arch, '--from', source, '--out', out), out.parent


def test_pretrained_from_a_missing_file(run_cli, tmp_path):
    source = tmp_path / 'eformer_s1_450.pth'
    result, out = pretrained(run_cli, tmp_path, 's1', source)
    fails_cleanly(result, 'pretrained', str(source), 'not found')
    assert not out.exists()


def test_pretrained_from_an_unreadable_file(run_cli, tmp_path):
    source = tmp_path / 'eformer_s1_450.pth'
    source.write_bytes(b'not a checkpoint\n' * 10)
    result, out = pretrained(run_cli, tmp_path, 's1', source)
    fails_cleanly(result, 'pretrained', str(source), 'cannot read checkpoint')
    assert not out.exists()


def test_pretrained_from_another_architecture(run_cli, tmp_path):
    torch = pytest.importorskip('torch')
    from cgrseg.models.efficientformer_v2 import EfficientFormerV2
    source = tmp_path / 'eformer_s1_450.pth'
    torch.save({'model': EfficientFormerV2(arch='s1').state_dict()}, source)
    result, out = pretrained(run_cli, tmp_path, 'l', source)
    fails_cleanly(result, 'pretrained', 'does not fit EfficientFormerV2-L')
    assert not out.exists()


def test_pretrained_from_a_truncated_state_dict(run_cli, tmp_path):
    torch = pytest.importorskip('torch')
    from cgrseg.models.efficientformer_v2 import EfficientFormerV2
    state = EfficientFormerV2(arch='s1').state_dict()
    source = tmp_path / 'eformer_s1_450.pth'
    torch.save({k: v for k, v in state.items() if not k.startswith('network.6.')}, source)
    result, out = pretrained(run_cli, tmp_path, 's1', source)
    fails_cleanly(result, 'pretrained', 'lacks', 'network.6.')
    assert not out.exists()


# ---------------------------------------------------------------- tables and friends

@pytest.mark.parametrize('formats', ['[pdf]', 'md', '[]', '[md, html]'])
def test_tables_with_bad_formats_in_params(run_cli, tmp_path, formats):
    params = tmp_path / 'params.yaml'
    params.write_text(f'tables:\n  formats: {formats}\n')
    metrics = tmp_path / 'metrics.json'
    metrics.write_text('{}')
    out = tmp_path / 'tables'
    result = run_cli('tables', '--params', params, '--metrics', metrics, '--paper', PAPER, '--out', out)
    fails_cleanly(result, 'tables', str(params), 'tables.formats')
    assert not out.exists()


def test_tables_with_a_bad_formats_option(run_cli, tmp_path):
    metrics = tmp_path / 'metrics.json'
    metrics.write_text('{}')
    out = tmp_path / 'tables'
    result = run_cli('tables', '--formats', 'pdf', '--metrics', metrics, '--paper', PAPER, '--out', out)
    assert result.code == 2 and result.err.splitlines() == [  # argparse's error, without the usage
        "cgrseg tables: error: argument --formats: invalid choice: 'pdf' (choose from 'md', 'csv', 'tex')"]
    assert not out.exists()


@pytest.mark.parametrize('command', ['tables', 'diff', 'figure'])
def test_missing_metrics_file(run_cli, tmp_path, command):
    missing = tmp_path / 'metrics.json'
    out = tmp_path / 'out'
    result = run_cli(command, '--metrics', missing, '--paper', PAPER, '--out', out)
    fails_cleanly(result, command, str(missing), 'metrics not found', 'cgrseg collect')
    assert list(tmp_path.iterdir()) == []


def test_collect_with_a_missing_params_file(run_cli, tmp_path):
    missing = tmp_path / 'params.yaml'
    out = tmp_path / 'metrics.json'
    result = run_cli('collect', '--params', missing, '--results', tmp_path, '--out', out)
    fails_cleanly(result, 'collect', str(missing), 'params not found')
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('command', ['tables', 'diff', 'figure'])
def test_missing_paper_file(run_cli, tmp_path, command):
    metrics = tmp_path / 'metrics.json'
    metrics.write_text('{}')
    missing = tmp_path / 'results.yaml'
    result = run_cli(command, '--metrics', metrics, '--paper', missing, '--out', tmp_path / 'out')
    fails_cleanly(result, command, str(missing))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['metrics.json']


# ---------------------------------------------------------------- the last line on stderr

def test_the_error_is_the_only_line_on_stderr(tmp_path):
    """In a fresh interpreter, where the third-party libraries print their import-time notices
    (mmcv's "MMCV will release v2.0.0", torch's "No CUDA runtime is found", mmseg's loss defaults
    when a model is built): the error line is all there is on stderr."""
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    cases = {   # argv -> the one line expected
        ('flops', ADE_T, '--shape', '32', '32', '--out', blocker / 'flops.json'):
            None,   # the output rules' words (cgrseg.io), tested in their own tests
        ('pretrained', 's1', '--from', tmp_path / 'missing.pth'):
            f'cgrseg pretrained: error: {tmp_path / "missing.pth"}: file not found',
        ('throughput', tmp_path / 'missing.py'):
            f'cgrseg throughput: error: {tmp_path / "missing.py"}: no such config file',
        ('train', ADE_T, '--work-dir', tmp_path / 'work', '--data-root', tmp_path / 'none', '--gpus', '0',
         '--no-pretrained'): None,
        ('train', ADE_T, '--work-dir', tmp_path / 'work', '--crop', '48'):
            'cgrseg train: error: argument --crop: 48 is not a multiple of 32',
    }
    env = dict(os.environ, PYTHONPATH=str(ROOT / 'src'), PYTHONWARNINGS='default')
    children = {argv: subprocess.Popen([sys.executable, '-m', 'cgrseg.cli', *map(str, argv)], env=env,
                                       cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       text=True) for argv in cases}
    for argv, child in children.items():
        _, err = child.communicate(timeout=600)
        assert child.returncode == 2, err
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f'cgrseg {argv[0]}: error: '), err
        assert cases[argv] is None or err.strip() == cases[argv]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a-file']


def test_our_warnings_still_show(run_cli, recwarn, monkeypatch):
    def command(args):
        warnings.warn_explicit('mmcv: deprecated', DeprecationWarning, 'mmcv/__init__.py', 20, module='mmcv')
        warnings.warn_explicit('timm: moved', FutureWarning, 'timm/models/layers/__init__.py', 48,
                               module='timm.models.layers')
        warnings.warn_explicit('cgrseg: ours', UserWarning, 'cgrseg/data/download.py', 1,
                               module='cgrseg.data.download')
        return 0

    import cgrseg.tables.cli
    monkeypatch.setattr(cgrseg.tables.cli, 'run_collect', command)
    assert run_cli('collect').code == 0
    assert [str(w.message) for w in recwarn] == ['cgrseg: ours']
