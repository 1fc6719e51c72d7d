"""One ``cgrseg train`` per work directory: an exclusive ``flock`` on ``<work_dir>/train.lock``.

The kernel drops the lock when its holder dies, so a killed run leaves no stale lock behind. The
file names the holder (pid, host, start time) for the error message a second run prints. Child
processes of the holder (the torchrun or hidden-GPU re-launch) inherit the lock through the
environment variable ``CGRSEG_TRAIN_LOCK`` and the open descriptor instead of taking it again.
"""
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from cgrseg.errors import CGRSegError
from cgrseg.io import read_json

LOCK_NAME = 'train.lock'
INHERITED = 'CGRSEG_TRAIN_LOCK'
_HELD = set()   # descriptors of the locks this process holds


def _not_in_forked_children():
    """A process forked from the holder (a data-loader worker) closes its copy of the lock: a
    SIGKILLed trainer's workers outlive it by seconds, and a rerun would find the directory in use.
    The re-launched trainer gets the descriptor through exec (``pass_fds``), which skips this."""
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_not_in_forked_children)


def lock_path(work_dir):
    return Path(work_dir).resolve() / LOCK_NAME


def held_by_parent(work_dir):
    """True in a child process the lock holder started for this work dir."""
    return os.environ.get(INHERITED) == str(lock_path(work_dir))


def _holder(path):
    try:
        info = read_json(path, 'lock file', limit=4096)
    except CGRSegError:   # empty (not written yet) or damaged: the holder is still the holder
        info = {}
    if not isinstance(info, dict) or 'pid' not in info:
        return 'another process (holder not recorded yet)'
    return f"pid {info['pid']} on host {info.get('host', '?')}, started {info.get('started', '?')}"


class WorkDirLock:
    """Hold the work directory's lock while the context is open; ``fd`` can be passed to children."""

    def __init__(self, work_dir):
        self.work_dir = Path(work_dir)
        self.path = lock_path(work_dir)
        self.fd = None

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise CGRSegError(f'{self.path}: cannot create the work directory lock: '
                              f'{err.strerror}') from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CGRSegError(f'{self.work_dir}: work directory in use by another `cgrseg train` '
                              f'({_holder(self.path)}); wait for it or use another --work-dir') from None
        except OSError as err:  # a file system without flock support
            os.close(fd)
            raise CGRSegError(f'{self.path}: cannot lock the work directory: {err.strerror}') from None
        self.fd = fd
        _HELD.add(fd)
        record = json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                             'started': time.strftime('%Y-%m-%dT%H:%M:%S%z')})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode() + b'\n', 0)
        return self

    def child_env(self, env=None):
        """The environment for a re-launched child: it shares this lock instead of taking it."""
        return dict(os.environ if env is None else env, **{INHERITED: str(self.path)})

    def __exit__(self, *exc):
        if self.fd is not None:
            _HELD.discard(self.fd)
            os.close(self.fd)  # releases the flock
            self.fd = None
        return False
