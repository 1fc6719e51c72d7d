"""SIGINT/SIGTERM in the middle of a command: exit 130/143, one line on stderr and no traceback,
no temporary left, a download's ``.part`` kept (the next run resumes it), the worker processes of
``prepare --jobs`` gone with their parent. Each command runs in a child process on synthetic
inputs and is signalled while its temporary output exists."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgrseg.data.synth import synthesize
from cgrseg.io import MARKER

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO / 'src'), OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')
ZIP = 'ADEChallengeData2016.zip'
SIGNALS = [signal.SIGINT, signal.SIGTERM]


def start(argv, cwd, code=None):
    """``cgrseg *argv`` (or ``python -c code *argv``) in a child, stderr to a file."""
    log = open(Path(cwd) / '.stderr', 'w+')
    cmd = [sys.executable, *(['-c', code] if code else ['-m', 'cgrseg.cli']), *map(str, argv)]
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=log), log


def wait_for(child, condition, what, limit=300):
    deadline = time.monotonic() + limit
    while not _holds(condition):
        assert child.poll() is None, f'the command ended before {what}'
        assert time.monotonic() < deadline, f'no {what} after {limit} s'
        time.sleep(0.01)


def _holds(condition):
    try:
        return condition()
    except FileNotFoundError:   # a folder went while it was listed
        return False


def stopped(child, log, sig, command):
    """Exit code and stderr of a child that got ``sig``: 128 + signal number, one line."""
    child.wait(timeout=300)
    log.seek(0)
    err = log.read()
    log.close()
    assert child.returncode == 128 + sig, err
    assert err.splitlines() == [f'cgrseg {command}: error: interrupted by {sig.name}'], err


def temporaries(folder):
    return [p for p in Path(folder).rglob('*') if p.name.endswith('.tmp')]


def children(pid):
    tasks = Path(f'/proc/{pid}/task')
    return {int(c) for t in tasks.iterdir() for c in (t / 'children').read_text().split()}


def alive(pid):
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != 'Z'


# ---------------------------------------------------------------- download

@pytest.mark.parametrize('sig', SIGNALS, ids=lambda s: s.name)
def test_an_interrupted_download_keeps_its_part_and_resumes(synth_archives, http_server, tmp_path, sig):
    (http_server.root / ZIP).write_bytes((synth_archives / ZIP).read_bytes())
    http_server.drip = (2048, 0.05)   # about 40 kB/s: the transfer lasts a few seconds
    dest = tmp_path / 'raw'
    argv = ['download', 'ade20k', '--dest', dest, '--sources', synth_archives / 'sources.yaml',
            '--url', http_server.url]
    child, log = start(argv, tmp_path)
    part = dest / f'{ZIP}.part'
    wait_for(child, lambda: part.exists() and part.stat().st_size > 0, 'bytes in the .part')
    child.send_signal(sig)
    stopped(child, log, sig, 'download')
    kept = part.stat().st_size
    assert sorted(p.name for p in dest.iterdir()) == [part.name] and kept > 0

    http_server.drip = None
    done = subprocess.run([sys.executable, '-m', 'cgrseg.cli', *map(str, argv)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert http_server.log[-1]['range'] == f'bytes={kept}-'   # resumed, not started over
    assert (dest / ZIP).read_bytes() == (synth_archives / ZIP).read_bytes()


# ---------------------------------------------------------------- prepare, synth

@pytest.fixture(scope='module')
def large_raw(tmp_path_factory):
    """A synthetic ADE20K archive large enough that converting it takes a few seconds."""
    folder = tmp_path_factory.mktemp('large')
    synthesize('ade20k', folder, images=600)
    return folder


@pytest.mark.parametrize('sig', SIGNALS, ids=lambda s: s.name)
def test_an_interrupted_prepare_leaves_nothing_and_stops_its_workers(large_raw, tmp_path, sig):
    out = tmp_path / 'prepared'
    child, log = start(['prepare', 'ade20k', '--raw', large_raw, '--out', out, '--jobs', 2], tmp_path)
    wait_for(child, lambda: any(p.suffix == '.png' for t in temporaries(out) for p in t.rglob('*')),
             'converted image in the temporary folder')
    workers = children(child.pid)
    assert workers, 'no worker processes to check'
    child.send_signal(sig)
    stopped(child, log, sig, 'prepare')
    assert not out.exists()   # nor the folders created for it
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, 'the workers outlived their parent'
        time.sleep(0.05)


def left_behind(out):
    """Files under ``out`` but the output marker (it claims the folder, so the next run reuses it)."""
    return [p for p in Path(out).rglob('*') if p.is_file() and p.name != MARKER]


def test_an_interrupted_synth_leaves_nothing(tmp_path):
    out = tmp_path / 'synth'
    child, log = start(['synth', 'ade20k', '--out', out, '--images', 600], tmp_path)
    wait_for(child, lambda: any(any(t.iterdir()) for t in temporaries(out) if t.is_dir()),
             'file in the scratch folder')
    child.send_signal(signal.SIGINT)
    stopped(child, log, signal.SIGINT, 'synth')
    assert left_behind(out) == []


# ---------------------------------------------------------------- collect, tables, diff, figure

# The table commands take a second: the signal is sent from inside, by the command's own atomic
# writers, once the temporary output is written and before it would take its final name.
SIGNAL_AFTER_WRITING = '''
import contextlib, os, signal, sys, time
import cgrseg.tables.cli as T

def stopping(make):
    @contextlib.contextmanager
    def wrapped(path, *args, **kwargs):
        with make(path, *args, **kwargs) as tmp:
            yield tmp
            os.kill(os.getpid(), signal.{sig})
            time.sleep(60)
    return wrapped

T.atomic_path, T.atomic_dir = stopping(T.atomic_path), stopping(T.atomic_dir)
from cgrseg.cli import main
sys.exit(main(sys.argv[1:]))
'''
TABLES = [('collect', signal.SIGTERM), ('tables', signal.SIGINT), ('diff', signal.SIGTERM),
          ('figure', signal.SIGINT)]


@pytest.mark.parametrize('command, sig', TABLES, ids=[c for c, _ in TABLES])
def test_an_interrupted_table_command_leaves_nothing(tmp_path, command, sig):
    metrics, out = tmp_path / 'metrics.json', tmp_path / 'out'
    metrics.write_text('{}')
    out.mkdir()
    hypotheses = ['--hypotheses', REPO / 'configs/paper/hypotheses.yaml']
    inputs = ['--metrics', metrics, '--paper', REPO / 'configs/paper/results.yaml', *hypotheses]
    argv = {'collect': ['--params', REPO / 'params.yaml', '--results', tmp_path, *hypotheses,
                        '--out', out / 'metrics.json'],
            'tables': [*inputs, '--out', out / 'tables'],
            'diff': [*inputs, '--out', out / 'diff'],
            'figure': [*inputs, '--out', out / 'figure']}[command]
    child, log = start([command, *argv], tmp_path, code=SIGNAL_AFTER_WRITING.format(sig=sig.name))
    stopped(child, log, sig, command)
    assert left_behind(out) == []


# ---------------------------------------------------------------- train's re-launch

CHILD = ('import signal, sys, time\n'
         'signal.signal(signal.SIGINT, lambda *_: sys.exit(130))\n'
         'print("ready", flush=True)\n'
         'time.sleep(120)\n')


def test_a_relaunched_trainer_gets_the_interrupt_and_its_parent_waits_for_it():
    """`cgrseg train` re-launches itself (torchrun, hidden GPUs): SIGINT to the parent reaches the
    child, and the parent ends after it instead of leaving it training."""
    parent = ('import sys\n'
              'from cgrseg.runner.preempt import run_child\n'
              f'print(*run_child([sys.executable, "-c", {CHILD!r}]), flush=True)\n')
    proc = subprocess.Popen([sys.executable, '-c', parent], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == 'ready\n'
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert out.split() == ['130', str(int(signal.SIGINT))]
