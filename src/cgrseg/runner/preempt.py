"""Stopping a training run cleanly when the cluster asks for it (SIGTERM, SIGUSR1).

SLURM sends SIGTERM at the time limit and on preemption, and any signal chosen with
``sbatch --signal`` some time before the limit (docs/slurm.md). The trainer only records the
signal; after the current iteration it saves a checkpoint and exits with ``EX_TEMPFAIL`` (75) so
that the job is retried and the rerun resumes there (docs/robustness.md).
"""
import contextlib
import signal
import subprocess

from cgrseg.errors import CGRSegError
from cgrseg.runner.resume import PREEMPT_SIGNALS

EX_TEMPFAIL = 75  # sysexits.h: temporary failure, the user is invited to retry
# passed on to a re-launched trainer: its parent must not leave it running on an interrupt either
FORWARDED = (*PREEMPT_SIGNALS, signal.SIGINT)

_received = []


def _record(signum, frame):
    _received.append(signum)


@contextlib.contextmanager
def handling():
    """Record preemption signals instead of dying on them while the context is open (enter it as
    early as possible); the previous handlers come back afterwards."""
    _received.clear()
    previous = {sig: signal.signal(sig, _record) for sig in PREEMPT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def requested():
    """The first preemption signal received since ``handling()`` began, or None."""
    return _received[0] if _received else None


def signal_name(signum):
    return signal.Signals(signum).name


class Preempted(CGRSegError):
    """Training stopped on a signal after saving its state; a rerun continues from it."""

    exit_code = EX_TEMPFAIL


def run_child(cmd, env=None, pass_fds=()):
    """Run ``cmd``, passing preemption signals and SIGINT on to it; (exit code, signal received or
    None).

    The parent of a re-launched trainer (torchrun, hidden GPUs) must outlive its child: dying on
    SIGTERM would end the job while the child still writes its checkpoint, and on SIGINT it would
    leave the child training.
    """
    child = subprocess.Popen(cmd, env=env, pass_fds=pass_fds)
    received = []

    def forward(signum, frame):
        received.append(signum)
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        return child.wait(), (received[0] if received else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
