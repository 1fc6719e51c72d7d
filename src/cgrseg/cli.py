"""The ``cgrseg`` command: one subcommand per pipeline step.

Each step's module exposes ``add_parser(subparsers)``; the parser stores the function to run in
``func``. Modules are imported only for the command being run so that light commands stay fast.
"""
import argparse
import importlib
import sys

from cgrseg.errors import CGRSegError
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


def optional(kind):
    """An argparse type: a value of ``kind``, or ``none`` (any case) for "not set": the rules pass
    every option, and params.yaml's null (``None`` in a rule) keeps the command's default."""
    def parse(text):
        return None if text.lower() == 'none' else kind(text)
    parse.__name__ = f'{kind.__name__} or none'
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
    parser = argparse.ArgumentParser(prog='cgrseg', description=__doc__.splitlines()[0])
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
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    args.argv = argv  # what `cgrseg train` repeats when it re-launches itself (DDP)
    try:
        return args.func(args) or 0
    except CGRSegError as err:  # the domain's expected failures: one line each, exit 2
        for line in redact(str(err)).splitlines() or ['']:  # several problems (doctor): one line each
            print(f'cgrseg {args.command}: error: {line}', file=sys.stderr)
        return getattr(err, 'exit_code', 2)  # 2, or e.g. 75 for a preempted training


if __name__ == '__main__':
    # run through the package module so that its error type is the one the subcommands raise
    from cgrseg.cli import main as package_main
    sys.exit(package_main())
