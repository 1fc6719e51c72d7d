"""params.yaml and ``--config`` values from a careless or hostile hand: whatever they are (wrong
types, huge integers, NaN, deep nesting, unicode, NUL or newlines in paths, YAML aliases), the
params check answers with its documented lines, ``params.yaml: <key>: <problem>``, one per key,
and never raises; what must be refused is refused, naming the key."""
import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgrseg import params
from cgrseg import workflow as wf

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / 'params.yaml').read_text())


def key_paths(node, path=()):
    """Every key path of ``node`` (dict keys, list positions), the empty path included."""
    yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from key_paths(child, (*path, key))


PATHS = [p for p in key_paths(PARAMS) if p]


def set_at(config, path, value):
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def nested(depth, leaf=0):
    for _ in range(depth):
        leaf = [leaf] if depth % 2 else {'k': leaf}
    return leaf


HOSTILE_TEXT = st.text(alphabet=st.sampled_from('\x00\n\r\t\u2028 a/$`"\'{}[]:.é中\U0001f600'), max_size=12)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2 ** 70, 2 ** 70), st.floats(),
                    st.text(max_size=12), HOSTILE_TEXT, st.binary(max_size=4),
                    st.sampled_from([float('nan'), float('inf'), 64.0, 48, 2 ** 32, -1, 0, '', 'null']))
VALUES = st.one_of(
    st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), HOSTILE_TEXT, st.integers()), inner, max_size=3)),
        max_leaves=12),
    st.integers(30, 400).map(nested))
# what Snakemake's --config hands over: text, which params.coerce reads as YAML where numbers belong
CONFIG_TEXT = st.one_of(st.text(max_size=20), HOSTILE_TEXT,
                        st.sampled_from([1, 40, 400, 1000]).map(lambda n: '[' * n + ']' * n),
                        st.sampled_from([1, 40, 400, 1000]).map(lambda n: '{a: ' * n + '1' + '}' * n),
                        st.sampled_from(['.nan', '.inf', '1e400', '64.0', '48', '4294967296', '[1, 2]',
                                         '{t: 1}', '&a [*a]', '!!python/object:os.system ls']))


def assert_documented(lines):
    assert isinstance(lines, list)
    for line in lines:
        assert isinstance(line, str) and line.isprintable(), line
        assert line.startswith('params.yaml: ') and ': ' in line[len('params.yaml: '):], line
        assert len(line) < 2000, line
    assert len(set(lines)) == len(lines)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_value_anywhere_gives_one_line_per_key(data):
    config = copy.deepcopy(PARAMS)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(PATHS))
        try:
            set_at(config, path, data.draw(VALUES))
        except (KeyError, IndexError, TypeError):   # an earlier draw replaced a parent
            pass
    assert_documented(params.problems(config))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_config_text_gives_one_line_per_key(data):
    config = copy.deepcopy(PARAMS)
    path = data.draw(st.sampled_from(PATHS))
    set_at(config, path, data.draw(CONFIG_TEXT))
    assert_documented(params.problems(params.coerce(config)))


@pytest.mark.parametrize('path, value, problem', [
    (('presets', 'demo', 'cfg_options', 'optimizer.lr'), float('nan'), 'nan is not a finite number'),
    (('presets', 'demo', 'cfg_options', 'optimizer.lr'), float('inf'), 'inf is not a finite number'),
    (('presets', 'demo', 'crop'), 64.0, "64.0 is not of type 'integer', 'null'"),
    (('presets', 'demo', 'crop'), 8192, '8192 is greater than the maximum of 4096'),
    (('presets', 'demo', 'train_repeat'), 10 ** 6, '1000000 is greater than the maximum of 1000'),
    (('seeds',), [2 ** 32], None),
    (('data_root',), 'data\x00/x', r"'data\x00/x' has a character that cannot be printed"),
    (('data_root',), 'data\n; rm -rf ~', r"'data\n; rm -rf ~' has a character that cannot be printed"),
    (('archive_dir',), 'a\rb', r"'a\rb' has a character that cannot be printed"),
    (('presets', 'demo', 'extra'), nested(40), 'nested deeper than 32 levels'),
])
def test_values_that_must_be_refused_name_their_key(path, value, problem):
    config = copy.deepcopy(PARAMS)
    set_at(config, path, value)
    lines = params.problems(config)
    assert_documented(lines)
    key = '.'.join(map(str, path))
    if problem is None:
        assert lines == ['params.yaml: seeds.0: 4294967296 is greater than the maximum of 4294967295']
    else:
        assert any(line.startswith(f'params.yaml: {key}') and problem in line for line in lines), lines


def test_config_text_too_deep_for_yaml_is_reported_shortened():
    config = copy.deepcopy(PARAMS)
    config['presets']['demo']['crop'] = '[' * 5000 + ']' * 5000   # PyYAML recurses past the limit
    lines = params.problems(params.coerce(config))
    assert_documented(lines)
    [line] = lines
    assert line.startswith(f"params.yaml: presets.demo.crop: '{'[' * (params.MAX_MESSAGE - 1)}... (")
    assert line.endswith(' characters)') and len(line) < 2 * params.MAX_MESSAGE


def test_a_key_with_a_newline_stays_on_one_line():
    config = copy.deepcopy(PARAMS)
    config['presets']['de\nmo'] = {'gpus': 0, 'iters': 0}
    lines = params.problems(config)
    assert_documented(lines)
    assert r"presets.'de\nmo'" in lines[0]


def test_the_dag_stops_with_the_lines(capsys):
    config = copy.deepcopy(PARAMS)
    config['presets']['demo'].update(crop='.nan', iters='4294967296000')
    with pytest.raises(SystemExit) as stop:
        wf.or_exit(wf.effective_params, config)
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "params.yaml: presets.demo.crop: nan is not of type 'integer', 'null'; nan is not a multiple "
        'of 32; nan is not a finite number',
        'params.yaml: presets.demo.iters: 4294967296000 is greater than the maximum of 2147483647']


BOMB = textwrap.dedent('''\
    a: &a [x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    seeds: [*h, *h, *h, *h, *h, *h, *h, *h, *h]
    ''')


def test_an_alias_bomb_is_refused_before_it_is_walked(tmp_path):
    """9**9 values by reference: walking them (jsonschema, coerce) would never end."""
    (tmp_path / 'params.yaml').write_text((REPO / 'params.yaml').read_text().replace('seeds: [0]', '')
                                          + BOMB)
    probe = ('import resource, sys, yaml\n'
             'resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n'
             'from cgrseg import params\n'
             'config = yaml.safe_load(open("params.yaml"))\n'
             'print("\\n".join(params.problems(params.coerce(config))))\n')
    env = dict(os.environ, PYTHONPATH=str(REPO / 'src'))
    done = subprocess.run([sys.executable, '-c', probe], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        f'params.yaml: seeds: more than {params.MAX_VALUES} values (YAML aliases?)'], done.stdout
