"""params.yaml checked as a whole, after Snakemake's ``--config`` overrides (or as DVC reads it), and
``cgrseg params``, which records the checked values of a run.

The contract is a file, ``workflow/schemas/params.schema.yaml`` (JSON Schema with defaults). ``problems``
returns one line per bad key (``presets.demo.iters: 0 is less than the minimum of 1``), so that a bad
value stops the DAG when it is built instead of failing a job hours later; what a schema cannot say (the
selected preset exists, names are known data sets and variants, every dataset has a config and a
measure shape) is checked below it. Before it, every value is checked for what no schema keyword says
(``_value_problems``): numbers are finite, text is printable and the document small enough to walk, so
that nothing in a hostile document raises: every outcome is a list of lines. ``effective`` adds the schema's defaults: the values every rule
reads, and what ``results/<preset>/params.effective.yaml`` holds. Keys the pipeline does not know are
left alone.
"""
import copy
import functools
import math

from cgrseg import schemas
from cgrseg.errors import CGRSegError
from cgrseg.layout import DATASETS, REFERENCE, VARIANTS

# old spellings -> what replaced them
RENAMED = {
    'profile': 'renamed to "preset" (e.g. --config preset=paper)',
    'profiles': 'renamed to "presets"',
    'seed': 'replaced by "seeds", a list (e.g. seeds: [0])',
}
# What no schema keyword says, checked on every value first (``_value_problems``): numbers are
# finite, strings and keys printable (no NUL, newline...), and the document small enough to walk
# (a few YAML aliases can make a short file a huge tree).
MAX_DEPTH = 32
MAX_VALUES = 100_000
MAX_MESSAGE = 300   # characters of one problem: a huge value is shown shortened
RENAMED_IN_PRESET = {'lr': 'replaced by cfg_options (e.g. cfg_options: {optimizer.lr: 0.0006})'}


def schema():
    """The params schema (a fresh copy: callers may restrict it)."""
    return schemas.load('params')


def coerce(value, node=None):
    """Snakemake's ``--config key={a: 1}`` / ``key=[1, 2]`` gives nested values as strings
    ('1'); read a string as YAML wherever the schema expects no string, so that ``1`` is 1 and
    ``true`` is True while ``abc`` stays 'abc' (and is then reported). Values the schema says
    nothing about are left as they are."""
    from cgrseg.io import parse_yaml

    node = schema() if node is None else node
    if not node:
        return value
    if isinstance(value, dict):
        props = node.get('properties', {})
        extra = node.get('additionalProperties')
        return {k: coerce(v, props.get(k, extra if isinstance(extra, dict) else {}))
                for k, v in value.items()}
    if isinstance(value, list):
        return [coerce(v, node.get('items', {})) for v in value]
    types = node.get('type', 'string' if 'enum' in node else None)
    types = [types] if isinstance(types, str) else types or []
    if isinstance(value, str) and types and 'string' not in types:
        try:
            parsed = parse_yaml(value, '--config')
        except CGRSegError:   # not YAML (or a hostile one): stays text, and the schema reports it
            return value
        if not isinstance(parsed, str):
            return coerce(parsed, node) if isinstance(parsed, (dict, list)) else parsed
    return value


def problems(config, where='params.yaml', keys=None):
    """Every error in ``config`` as a line ``{where}: {key}: {problem}``; empty when it is usable.

    ``keys``: check only these top-level keys (a command that reads part of params.yaml)."""
    if not isinstance(config, dict):
        return [f'{where}: must be a YAML mapping']
    found, too_big = _value_problems(config)
    if too_big:   # not walked any further
        return [f'{where}: {name}: {"; ".join(problems)}' for name, problems in found.items()]
    by_key = {}  # one line per key, however many rules it breaks
    full = schema()
    node = full if keys is None else _restricted(full, keys)
    for name, problem in _renamed(config, keys):
        by_key.setdefault(name, []).append(problem)
    for err in _validator(node).iter_errors(config):
        message = err.schema.get('errorMessage', err.message) if err.validator == 'pattern' else err.message
        by_key.setdefault(_key(err.absolute_path) or '(top level)', []).append(_short(message))
    for name, problem in _unknown_names(config):
        by_key.setdefault(_short(name), []).append(_short(problem))
    for name, problems in found.items():
        by_key.setdefault(name, []).extend(problems)
    lines = [f'{where}: {name}: {"; ".join(by_key[name])}' for name in sorted(by_key)]
    if not lines and keys is None:
        lines += [f'{where}: {line}' for line in _cross_checks(config)]
    return lines


def check(config, where='params.yaml', keys=None):
    """Raise a one-line ``CGRSegError`` naming every problem (for the cgrseg commands)."""
    lines = problems(config, where, keys)
    if lines:
        rest = [line.removeprefix(f'{where}: ') for line in lines[1:]]
        raise CGRSegError('; '.join([lines[0], *rest]))
    return config


def effective(config, where='params.yaml', keys=None):
    """``config`` with --config's strings read as numbers where numbers belong, checked, and the
    schema's defaults added: the values every rule and command of a run reads.

    ``keys``: check only these top-level keys (a command that reads part of params.yaml)."""
    config = coerce(config)
    check(config, where, keys)
    return with_defaults(config, schema())


def with_defaults(value, node):
    """A copy of ``value`` with the schema's ``default`` of every absent property, at every level."""
    value = copy.deepcopy(value)
    if not isinstance(value, dict):
        return value
    props = node.get('properties', {})
    for name, sub in props.items():
        if name not in value and 'default' in sub:
            value[name] = copy.deepcopy(sub['default'])
    extra = node.get('additionalProperties')
    for name in value:
        sub = props.get(name, extra if isinstance(extra, dict) else None)
        if sub is not None:
            value[name] = with_defaults(value[name], sub)
    return value


def preset(config):
    """The block of ``presets`` the run uses."""
    return config['presets'][config['preset']]


def _restricted(full, keys):
    """The schema of ``keys`` (required where the full schema requires them), and of ``preset``
    when present: it names the results root."""
    return {**full, 'required': [k for k in full['required'] if k in keys],
            'properties': {k: v for k, v in full['properties'].items() if k in keys or k == 'preset'}}


def _validator(node):
    """Draft 7 with integers that are ints: ``crop: 64.0`` would reach ``--crop 64.0``."""
    return _validator_class()(node)


@functools.lru_cache(maxsize=None)
def _validator_class():
    import jsonschema

    checker = jsonschema.Draft7Validator.TYPE_CHECKER.redefine(
        'integer', lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=checker)


def _value_problems(config):
    """({key: [problem]}, too big) for what no schema keyword checks (see MAX_DEPTH); a document
    nested deeper than MAX_DEPTH or holding more than MAX_VALUES values is reported as soon as
    that is seen, before anything walks it recursively."""
    found, seen, stack = {}, 0, [((), config)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            return {_key(path[:MAX_DEPTH]): [f'nested deeper than {MAX_DEPTH} levels']}, True
        children = (list(value.items()) if isinstance(value, dict)
                    else list(enumerate(value)) if isinstance(value, (list, tuple)) else [])
        seen += 1 + len(children)
        if seen > MAX_VALUES:
            return {_key(path[:1]) or '(top level)': [f'more than {MAX_VALUES} values (YAML aliases?)']}, True
        for name, child in children:
            if isinstance(value, dict) and isinstance(name, str) and not name.isprintable():
                found.setdefault(_key(path + (name,)), []).append('the key has a character that '
                                                                  'cannot be printed (NUL, newline...)')
            stack.append((path + (name,), child))
        if isinstance(value, float) and not math.isfinite(value):
            found.setdefault(_key(path), []).append(f'{value!r} is not a finite number')
        elif isinstance(value, str) and not value.isprintable():
            found.setdefault(_key(path), []).append(
                f'{_short(repr(value))} has a character that cannot be printed (NUL, newline...)')
    return found, False


def _short(text):
    """One printable line of at most MAX_MESSAGE characters (more are counted, not shown)."""
    text = text if len(text) <= MAX_MESSAGE else f'{text[:MAX_MESSAGE]}... ({len(text)} characters)'
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _key(path):
    """``presets.demo.iters``; a part that cannot be printed as it is (a newline) is quoted."""
    return _short('.'.join(str(part) if str(part).isprintable() else repr(part) for part in path))


def _renamed(config, keys):
    for name, problem in RENAMED.items():
        if name in config and (keys is None or name in keys):
            yield name, problem
    presets = config.get('presets')
    for name, block in (presets.items() if isinstance(presets, dict) else ()):
        for key, problem in RENAMED_IN_PRESET.items():
            if isinstance(block, dict) and key in block:
                yield f'presets.{name}.{key}', problem


def _unknown_names(config):
    """Data set and variant names the code does not know (cgrseg.layout defines them)."""
    for field, known in (('datasets', DATASETS), ('variants', VARIANTS)):
        values = config.get(field)
        for i, value in enumerate(values if isinstance(values, list) else ()):
            if value not in known:
                yield f'{field}.{i}', f'{value!r} is not one of {list(known)}'
    judged = config.get('judged_complexity')
    if isinstance(judged, dict) and 'dataset' in judged and judged['dataset'] not in DATASETS:
        yield 'judged_complexity.dataset', f'{judged["dataset"]!r} is not one of {list(DATASETS)}'
    presets = config.get('presets')
    for name, block in (presets.items() if isinstance(presets, dict) else ()):
        iters = block.get('iters') if isinstance(block, dict) else None
        for variant in (iters if isinstance(iters, dict) else ()):
            if variant not in VARIANTS:
                yield f'presets.{name}.iters', f'{variant!r} is not one of {list(VARIANTS)}'


def _cross_checks(config):
    presets = config['presets']
    if config['preset'] not in presets:
        yield (f'preset: {_short(repr(config["preset"]))} is not one of the presets '
               f'({_short(", ".join(sorted(map(str, presets))))})')
    elif config['preset'] == REFERENCE:
        yield (f'preset: {REFERENCE!r} would write into the committed snapshot '
               f'results/{REFERENCE}/; rename it')
    judged = config['judged_complexity']['dataset']
    for dataset in dict.fromkeys([*config['datasets'], judged]):
        if dataset not in config['configs']:
            yield f'configs.{dataset}: missing (a config pattern for every dataset)'
    for name, block in presets.items():
        iters = block.get('iters')
        if isinstance(iters, dict):  # a variant left out would silently train the full schedule
            for variant in config['variants']:
                if variant not in iters:
                    yield f'presets.{name}.iters.{variant}: missing (one count for every variant)'
    for dataset in config['datasets']:
        if dataset not in config['measure_shape']:
            yield f'measure_shape.{dataset}: missing ([H, W] for every dataset)'


def load(path, keys=None):
    """A params file (params.yaml or a run's params.effective.yaml), checked, with defaults."""
    from cgrseg.io import load_yaml
    return effective(load_yaml(path, 'params'), str(path), keys)


# ---- cgrseg params ---------------------------------------------------------------------------

def add_parser(subparsers):
    p = subparsers.add_parser(
        'params', help="check params and record them as a run's effective params",
        description="Check params (params.yaml, or the values Snakemake's --config produced) against "
                    'workflow/schemas/params.schema.yaml, add its defaults and write them as YAML: '
                    'the one file the table stages read (results/<preset>/params.effective.yaml).')
    source = p.add_mutually_exclusive_group()
    source.add_argument('--params', default='params.yaml', help='params file (default: %(default)s)')
    source.add_argument('--values', metavar='JSON', help='the params as one JSON object (Snakemake)')
    p.add_argument('--out', required=True, help='the YAML file to write')
    p.set_defaults(func=run)
    return p


def run(args):
    import yaml
    from cgrseg.io import parse_json, write_text

    if args.values is None:
        values = load(args.params)
    else:
        values = effective(parse_json(args.values, '--values'), '--values')
    write_text(args.out, yaml.safe_dump(values, sort_keys=False, default_flow_style=None))
    print(f'{args.out}: preset {values["preset"]}')
