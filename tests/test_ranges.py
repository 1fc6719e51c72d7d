"""Ranges checked where values enter: every numeric option of every command, and every numeric
params.yaml value, against one definition (the params schema's definitions, which cgrseg.ranges
reads); a value outside is one line, exit 2."""
import argparse
import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgrseg import cli, params
from cgrseg import ranges as R
from cgrseg.errors import CGRSegError

RANGES = {name: value for name, value in vars(R).items() if name.isupper() and isinstance(value, dict)}
# every numeric option the commands have (issue 16, item 6); a new one must be added here
NUMERIC_OPTIONS = {
    'train': ['--iters', '--crop', '--samples-per-gpu', '--train-repeat', '--checkpoint-interval',
              '--workers', '--gpus', '--cpu-processes', '--seed'],
    'evaluate': ['--crop', '--workers'],
    'flops': ['--shape'],
    'throughput': ['--crop', '--images', '--skip', '--workers', '--shape', '--batch-size', '--warmup',
                   '--repeats', '--iters'],
    'synth': ['--images', '--seed'],
    'download': ['--retries', '--retry-wait', '--timeout', '--min-rate'],
    'prepare': ['--jobs'],
}
# params.yaml value (schema path; '*' any key) -> the options that take it (cgrseg.workflow)
SAME_RANGE = [
    (('presets', '*', 'crop'), [('train', '--crop'), ('evaluate', '--crop'), ('throughput', '--crop')]),
    (('presets', '*', 'iters'), [('train', '--iters')]),
    (('presets', '*', 'iters', '*'), [('train', '--iters')]),
    (('presets', '*', 'samples_per_gpu'), [('train', '--samples-per-gpu')]),
    (('presets', '*', 'train_repeat'), [('train', '--train-repeat')]),
    (('presets', '*', 'checkpoint_interval'), [('train', '--checkpoint-interval')]),
    (('presets', '*', 'gpus'), [('train', '--gpus')]),
    (('presets', '*', 'throughput_repeats'), [('throughput', '--repeats')]),
    (('presets', '*', 'throughput_iters'), [('throughput', '--iters')]),
    (('seeds', '*'), [('train', '--seed'), ('synth', '--seed')]),
    (('synth_images',), [('synth', '--images')]),
    (('measure_shape', '*', '*'), [('flops', '--shape'), ('throughput', '--shape')]),
    (('judged_complexity', 'shape', '*'), [('flops', '--shape')]),
]
BOUNDS = ('minimum', 'exclusiveMinimum', 'maximum', 'multipleOf')


@pytest.fixture(scope='module')
def actions():
    """{(command, option): argparse action} for every option of every command."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {(command, option): action for command, p in sub.choices.items()
            for action in p._actions for option in action.option_strings}


def test_every_numeric_option_is_range_checked(actions):
    # an option that also takes `none` (cgrseg.cli.optional) wraps its type as `kind`
    types = {key: getattr(action.type, 'kind', action.type) for key, action in actions.items()}
    unchecked = [key for key, kind in types.items() if kind in (int, float)]
    assert not unchecked, f'numeric options parsed without a range (cgrseg.ranges.option): {unchecked}'
    checked = {key for key, kind in types.items() if hasattr(kind, 'schema')}
    assert checked == {(c, o) for c, options in NUMERIC_OPTIONS.items() for o in options}
    assert all(types[key].schema in RANGES.values() for key in checked)


def schema_at(path):
    node = params.schema()
    for part in path:
        node = (node['properties'][part] if part in node.get('properties', {})
                else node['items'] if node.get('type') == 'array' else node['additionalProperties'])
    return node


@pytest.mark.parametrize('path, options', SAME_RANGE, ids=['.'.join(p) for p, _ in SAME_RANGE])
def test_params_and_options_share_their_ranges(actions, path, options):
    in_params = {k: schema_at(path).get(k) for k in BOUNDS}
    for key in options:
        kind = getattr(actions[key].type, 'kind', actions[key].type)
        assert {k: kind.schema.get(k) for k in BOUNDS} == in_params, key


@pytest.mark.parametrize('name', sorted(RANGES))
@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.integers(-2 ** 40, 2 ** 40), st.integers(), st.booleans(),
                       st.floats(allow_nan=False, allow_infinity=False),
                       st.sampled_from([0, 1, 31, 32, 33, 4096, 4128, 2 ** 31, 2 ** 32, -1, 0.5, 64.0])))
def test_the_option_check_reads_a_range_as_jsonschema_does(name, value):
    """jsonschema is the reference (params.yaml is checked with it): same verdict, same words."""
    schema = RANGES[name]
    errors = [e.message for e in params._validator(schema).iter_errors(value)]
    why = R.problem(value, schema)
    assert (why is None) == (not errors), (value, why, errors)
    assert why is None or why in errors


@pytest.mark.parametrize('value', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_numbers_are_refused(value):
    assert R.problem(value, R.WAIT) == f'{value!r} is not a finite number'
    with pytest.raises(argparse.ArgumentTypeError, match='not a finite number'):
        R.option(R.TIMEOUT)(str(value))


def test_the_python_api_refuses_the_same_values():
    with pytest.raises(CGRSegError, match=r'^--crop: 48 is not a multiple of 32$'):
        R.require(48, R.SIDE, '--crop')
    assert R.require(64, R.SIDE, '--crop') == 64


# A command line that fails after parsing, on a missing file, so that a value inside the range
# also ends in one line and exit 2 without running anything; the option is appended.
def fails_later(command, folder):
    return {
        'train': ['train', folder / 'missing.py', '--work-dir', folder / 'work', '--gpus', '0'],
        'throughput': ['throughput', folder / 'missing.py'],
        'flops': ['flops', folder / 'missing.py'],
        'download': ['download', 'ade20k', '--dest', folder / 'dest', '--sources', folder / 'missing.yaml'],
        'prepare': ['prepare', 'ade20k', '--raw', folder / 'raw', '--out', folder / 'out'],
        'evaluate': ['evaluate', folder / 'missing.py', folder / 'missing.pth', '--out', folder / 'm.json'],
    }[command]


CASES = [(c, o) for c in ('train', 'throughput', 'flops', 'download', 'prepare', 'evaluate')
         for o in NUMERIC_OPTIONS[c]]
TEXT = st.one_of(st.integers().map(str), st.integers(-2 ** 70, 2 ** 70).map(str),
                 st.floats().map(repr), st.text(max_size=12),
                 st.sampled_from(['32', '64', '48', '0', '-1', '-0', '1e3', '4294967296', 'nan', '-inf', '']))


def run_main(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main([str(a) for a in argv])
    return code, err.getvalue()


@pytest.fixture(scope='module')
def empty(tmp_path_factory):
    return tmp_path_factory.mktemp('empty')


@pytest.mark.parametrize('command, option', CASES, ids=[f'{c}{o}' for c, o in CASES])
@settings(max_examples=25, deadline=None)
@given(text=TEXT)
def test_any_option_value_is_one_line_and_exit_2(actions, empty, command, option, text):
    values = [text, '64'] if option == '--shape' else [text]
    code, err = run_main([*fails_later(command, empty), option, *values])
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f'cgrseg {command}: error: '), err
    try:
        actions[command, option].type(text)
        inside = True
    except (ValueError, argparse.ArgumentTypeError):
        inside = False
    assert (f'argument {option}' in err) != inside, err   # refused by the range, or got past it
    assert list(empty.iterdir()) == []
