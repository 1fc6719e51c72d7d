"""Exact resume on CPU (slow): a run stopped by SIGTERM, or killed by SIGKILL with a truncated
checkpoint left behind, and then resumed ends with the same weights, bit for bit, as an
uninterrupted run with the same seed. Synthetic ADE20K (cgrseg synth/download/prepare), CGRSeg-T,
crop 64, batch 2: one epoch is 4 iterations, so 5 iterations cross an epoch boundary. Validation
runs after every iteration (the schedule's interval scaled to 5 iterations), with 2 persistent
data-loader workers as `cgrseg train` gives a 2-core machine: their first validation pass draws
from torch's global generator, once per process, which made the resumed runs differ (4e-4)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip('mmseg')
torch = pytest.importorskip('torch')

from cgrseg import cli  # noqa: E402
from cgrseg.runner.preempt import EX_TEMPFAIL  # noqa: E402
from test_robust import full_disk  # noqa: E402,F401  (fixture)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ADE = ROOT / 'configs/cgrseg/cgrseg-t_ade20k_160k.py'
ITERS = 5


def cgrseg(*argv):
    return cli.main([str(a) for a in argv])


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    assert cgrseg('synth', 'ade20k', '--out', root / 'synth') == 0
    assert cgrseg('download', 'ade20k', '--dest', root / 'raw', '--sources', root / 'synth/sources.yaml') == 0
    assert cgrseg('prepare', 'ade20k', '--raw', root / 'raw', '--out', root / 'prepared') == 0
    return root / 'prepared'


def train_argv(work, prepared):
    return ['train', ADE, '--work-dir', work, '--data-root', prepared, '--iters', ITERS, '--crop', 64,
            '--samples-per-gpu', 2, '--gpus', 0, '--no-pretrained', '--workers', 2, '--seed', 3,
            '--checkpoint-interval', 1]


@pytest.fixture(scope='module')
def uninterrupted(prepared, tmp_path_factory):
    work = tmp_path_factory.mktemp('uninterrupted')
    assert cgrseg(*train_argv(work, prepared)) == 0
    return torch.load(work / f'iter_{ITERS}.pth', map_location='cpu', weights_only=False)


def start_and_stop(work, prepared, sig, after):
    """Train in a child process and send it ``sig`` once iter_<after>.pth exists; (exit code, stderr)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    log = work.parent / f'{work.name}.stderr'
    with open(log, 'w') as stderr:   # a file, not a pipe: the log is long and nobody reads a pipe meanwhile
        child = subprocess.Popen([sys.executable, '-m', 'cgrseg.cli', *map(str, train_argv(work, prepared))],
                                 stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        deadline = time.monotonic() + 1800
        while not (work / f'iter_{after}.pth').exists():
            assert child.poll() is None, f'training ended early:\n{log.read_text()[-3000:]}'
            assert time.monotonic() < deadline, 'no checkpoint after 30 minutes'
            time.sleep(0.2)
        child.send_signal(sig)
        child.wait(timeout=1800)
    validations = sum(p.read_text().count('Iter(val)') for p in work.glob('*.log'))
    assert validations >= after, 'the interrupted run did not validate before it was stopped'
    return child.returncode, log.read_text()


def assert_same_training(a, b):
    assert a['meta']['iter'] == b['meta']['iter'] == ITERS - 1
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, tensor in a['state_dict'].items():
        assert torch.equal(tensor, b['state_dict'][key]), f'weights differ: {key}'
    for key, state in a['optimizer']['state'].items():
        for name, value in state.items():
            other = b['optimizer']['state'][key][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other


def test_sigterm_saves_stops_and_the_resumed_run_is_bitwise_identical(prepared, uninterrupted, tmp_path):
    work = tmp_path / 'work'
    code, err = start_and_stop(work, prepared, signal.SIGTERM, after=1)
    assert code == EX_TEMPFAIL, err[-3000:]
    line = [line for line in err.splitlines() if ': error: ' in line][-1]
    assert 'stopped by SIGTERM after iteration' in line and 'run the same command again' in line
    stopped_at = int(line.split('after iteration ')[1].split(',')[0])
    assert stopped_at < ITERS
    assert os.readlink(work / 'latest.pth') == f'iter_{stopped_at}.pth'
    assert cgrseg(*train_argv(work, prepared)) == 0
    assert_same_training(torch.load(work / f'iter_{ITERS}.pth', weights_only=False), uninterrupted)


def test_sigkill_with_a_truncated_checkpoint_resumes_from_the_previous_one(prepared, uninterrupted, tmp_path,
                                                                           caplog):
    work = tmp_path / 'work'
    code, _ = start_and_stop(work, prepared, signal.SIGKILL, after=2)
    assert code == -signal.SIGKILL
    done = max(int(p.stem.split('_')[1]) for p in work.glob('iter_*.pth'))
    assert done < ITERS
    # what the old code left behind: the next checkpoint truncated, latest.pth deleted by Snakemake
    good = (work / f'iter_{done}.pth').read_bytes()
    (work / f'iter_{done + 1}.pth').write_bytes(good[:len(good) // 2])
    (work / 'latest.pth').unlink(missing_ok=True)
    caplog.clear()
    assert cgrseg(*train_argv(work, prepared)) == 0
    assert f'skipping an unreadable checkpoint: {work}/iter_{done + 1}.pth: cannot read checkpoint' in caplog.text
    assert f'continuing after iteration {done}' in caplog.text
    assert not list(work.glob('.*.tmp'))                   # the killed writer's temporary is gone
    assert_same_training(torch.load(work / f'iter_{ITERS}.pth', weights_only=False), uninterrupted)


def test_evaluate_on_a_full_disk_is_one_line_and_leaves_nothing(prepared, uninterrupted, tmp_path, full_disk,
                                                                 run_cli):
    ckpt = tmp_path / 'final.pth'
    torch.save(uninterrupted, ckpt)
    out = full_disk / 'metrics.json'
    result = run_cli('evaluate', ADE, ckpt, '--out', out, '--data-root', prepared, '--workers', 0)
    assert result.code == 2
    assert result.error_lines == [f'cgrseg evaluate: error: {out}: cannot write: No space left on device']
    assert sorted(p.name for p in full_disk.iterdir()) == ['filler']
