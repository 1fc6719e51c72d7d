"""The ``cgrseg`` command: one subcommand per pipeline step.

Each step's module exposes ``add_parser(subparsers)``; the parser stores the function to run in
``func``. Modules are imported only for the command being run so that light commands stay fast.

Whatever goes wrong ends in one line on stderr, the last one, ``cgrseg <cmd>: error: ...``:
a bad argument (exit 2), an expected failure (``CGRSegError``, exit 2), or SIGINT/SIGTERM (exit
130/143, after the temporary outputs are cleaned up). The deprecation notices the third-party
libraries print when they are imported are silenced, so that they never precede it.
"""
import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import warnings

from cgrseg.errors import CGRSegError, Interrupted
from cgrseg.io import redact

# subcommand -> module providing add_parser()
COMMANDS = {
    'synth': 'cgrseg.data.cli',
    'download': 'cgrseg.data.cli',
    'prepare': 'cgrseg.data.cli',
    'pretrained': 'cgrseg.models.pretrained',
    'flops': 'cgrseg.measure.flops',
    'throughput': 'cgrseg.measure.throughput',
    'train': 'cgrseg.runner.train',
    'evaluate': 'cgrseg.runner.evaluate',
    'params': 'cgrseg.params',
    'collect': 'cgrseg.tables.cli',
    'tables': 'cgrseg.tables.cli',
    'diff': 'cgrseg.tables.cli',
    'figure': 'cgrseg.tables.cli',
    'doctor': 'cgrseg.doctor',
    'curves': 'cgrseg.curves',
    'zoo': 'cgrseg.zoo',
    'pages': 'cgrseg.pages',
}
# Warnings issued by these packages are theirs to fix (mmcv's "MMCV will release v2.0.0", timm's
# moved-module FutureWarnings, mmseg's loss defaults); cgrseg's own warnings still show.
THIRD_PARTY = r'(mmcv|mmseg|timm|torch|torchvision)(\.|$)'
# torch logs this when it finds no CUDA toolkit, which a CPU machine never has
QUIET_LOGGERS = ('torch.utils.cpp_extension',)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UsageError(Exception):
    """A bad command line, reported like argparse's errors, on one line, without the usage."""

    def __init__(self, prog, message):
        super().__init__(f'{prog}: error: {message}')


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(self.prog, message)


def optional(kind):
    """An argparse type: a value of ``kind``, or ``none`` (any case) for "not set": the rules pass
    every option, and params.yaml's null (``None`` in a rule) keeps the command's default."""
    def parse(text):
        return None if text.lower() == 'none' else kind(text)
    parse.__name__ = f'{kind.__name__} or none'
    parse.kind = kind
    return parse


def yes_no(text):
    """An argparse type for an on/off option given a value: true/false (any case), yes/no, 1/0."""
    value = {'true': True, 'yes': True, '1': True, 'false': False, 'no': False, '0': False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f'{text!r}: expected true or false')
    return value


def add_switch(parser, name, help, default):
    """``--name [true|false]`` (alone: true) and ``--no-name``, both setting ``name``."""
    dest = name.replace('-', '_')
    parser.add_argument(f'--{name}', type=yes_no, nargs='?', const=True, default=default,
                        metavar='true|false', help=help)
    parser.add_argument(f'--no-{name}', dest=dest, action='store_false', help=f'the same as --{name} false')


def build_parser(only=None):
    parser = Parser(prog='cgrseg', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    seen = set()
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        if module in seen:
            continue
        seen.add(module)
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    prefix = f'cgrseg {command}' if command else 'cgrseg'
    try:
        with _stop_on_signals(), _third_party_quiet():
            return _run(argv, command)
    except UsageError as err:
        _say(str(err))
        return 2
    except CGRSegError as err:  # the domain's expected failures: one line each, exit 2
        for line in redact(str(err)).splitlines() or ['']:  # several problems (doctor): one line each
            _say(f'{prefix}: error: {line}')
        return getattr(err, 'exit_code', 2)  # 2, or e.g. 75 for a preempted training
    except Interrupted as stop:
        _say(f'{prefix}: error: interrupted by {signal.Signals(stop.signum).name}')
        return 128 + stop.signum


def _say(line):
    """Print ``line`` as one line: a newline or NUL in it (a file name, an argument) is escaped."""
    print(''.join(c if c.isprintable() else repr(c)[1:-1] for c in line), file=sys.stderr)


def _run(argv, command):
    args = build_parser(only=command).parse_args(argv)
    args.argv = argv  # what `cgrseg train` repeats when it re-launches itself (DDP)
    return args.func(args) or 0


def _interrupt(signum, frame):
    for sig in STOP_SIGNALS:   # a second signal must not break off the clean-up of the first
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _child_defaults():
    """In a forked worker (a conversion pool, a data loader): SIGINT, which a terminal sends to
    every process, is left to the parent, and SIGTERM, with which the parent ends its workers,
    ends the worker silently."""
    if signal.getsignal(signal.SIGINT) is _interrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if signal.getsignal(signal.SIGTERM) is _interrupt:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


_at_fork_registered = []


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM raise ``Interrupted`` in the main thread while the command runs (training
    installs its own SIGTERM handling on top: save, then exit 75); the handlers before come back
    afterwards, so a caller of ``main()`` (the tests) keeps its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _at_fork_registered:
        os.register_at_fork(after_in_child=_child_defaults)
        _at_fork_registered.append(True)
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _third_party_quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', module=THIRD_PARTY)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        yield


if __name__ == '__main__':
    # run through the package module so that its error type is the one the subcommands raise
    from cgrseg.cli import main as package_main
    sys.exit(package_main())
