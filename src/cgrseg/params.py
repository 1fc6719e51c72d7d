"""params.yaml checked as a whole, after Snakemake's ``--config`` overrides (or as DVC reads it).

``problems(config)`` returns one line per error, each naming the key (``profiles.demo.iters: 0 is
less than the minimum of 1``), so that a bad value stops the DAG when it is built instead of failing
a job hours later. Types and ranges are a JSON schema (jsonschema, already installed with
Snakemake); what a schema cannot say (the selected profile exists, every dataset has a config and a
measure shape) is checked below it. Keys the pipeline does not know are left alone.
"""
from cgrseg.errors import CGRSegError

DATASETS = ('ade20k', 'coco_stuff10k', 'pascal_context')
VARIANTS = ('t', 'b', 'l')
TABLE_FORMATS = ('md', 'csv', 'tex')
GFLOPS_CONVENTIONS = ('mmcv', 'conv_linear_macs')
# An input side the model takes: the backbone downsamples by 32, and a side that is not a multiple
# of 32 breaks the head's fusion of 1/8..1/32 features (measured: 48, 80, 112 fail; 32, 64, 96,
# 480 work); `cgrseg train --crop` refuses less than 32.
_SIDE = {'type': 'integer', 'minimum': 32, 'multipleOf': 32}

_POS_INT = {'type': 'integer', 'minimum': 1}
_SHAPE = {'type': 'array', 'minItems': 2, 'maxItems': 2, 'items': _SIDE}
_NAME = {'type': 'string', 'minLength': 1}
_RULE_RESOURCES = {'type': 'object', 'properties': {
    'threads': _POS_INT, 'mem_mb': _POS_INT, 'runtime': _POS_INT}}
_PROFILE = {'type': 'object', 'properties': {
    'gpus': {'type': 'integer', 'minimum': 0},
    # one count for every variant, or one per variant ({t: 250, b: 4, l: 4})
    'iters': {'type': ['integer', 'null', 'object'], 'minimum': 1,
              'propertyNames': {'enum': list(VARIANTS)}, 'additionalProperties': _POS_INT},
    'crop': {**_SIDE, 'type': ['integer', 'null']},
    'samples_per_gpu': {'type': ['integer', 'null'], 'minimum': 1},
    'lr': {'type': ['number', 'null'], 'exclusiveMinimum': 0},
    'validate': {'type': 'boolean'},
    'train_repeat': _POS_INT,
    'checkpoint_interval': _POS_INT,
    'throughput_repeats': _POS_INT,
    'throughput_images': {'type': 'integer', 'minimum': 6},  # the first 5 are not timed
    'throughput_iters': _POS_INT,
    'pretrained': {'type': 'boolean'},
}}


def _list_of(items, min_items=1):
    return {'type': 'array', 'minItems': min_items, 'uniqueItems': True, 'items': items}


SCHEMA = {
    'type': 'object',
    'required': ['profile', 'profiles', 'data_root', 'sources', 'variants', 'datasets', 'seeds',
                 'configs', 'measure_shape', 'judged_complexity', 'tables'],
    'properties': {
        'profile': _NAME,
        'profiles': {'type': 'object', 'additionalProperties': _PROFILE},
        'data_root': _NAME,
        'sources': {'enum': ['synthetic', 'real']},
        'archive_dir': {'type': ['string', 'null'], 'minLength': 1},
        'synth_images': _POS_INT,
        'variants': _list_of({'enum': list(VARIANTS)}),
        'datasets': _list_of({'enum': list(DATASETS)}),
        'seeds': _list_of({'type': 'integer', 'minimum': 0}),
        'configs': {'type': 'object', 'additionalProperties': {'type': 'string',
                                                               'pattern': '{variant}'}},
        'measure_shape': {'type': 'object', 'additionalProperties': _SHAPE},
        'judged_complexity': {
            'type': 'object', 'required': ['dataset', 'shape', 'gflops'],
            'additionalProperties': False,
            'properties': {'dataset': {'enum': list(DATASETS)}, 'shape': _SHAPE,
                           'gflops': {'enum': list(GFLOPS_CONVENTIONS)}}},
        'tables': {'type': 'object', 'required': ['formats'], 'additionalProperties': False,
                   'properties': {'formats': _list_of({'enum': list(TABLE_FORMATS)}),
                                  'strict': {'type': 'boolean'}}},
        'slurm_gpu_partition': _NAME,
        'resources': {'type': 'object', 'additionalProperties': {
            'type': 'object', 'additionalProperties': _RULE_RESOURCES}},
    },
}


def coerce(value, schema=SCHEMA):
    """Snakemake's ``--config key={a: 1}`` / ``key=[1, 2]`` gives nested values as strings
    ('1'); read a string as YAML wherever the schema expects no string, so that ``1`` is 1 and
    ``true`` is True while ``abc`` stays 'abc' (and is then reported)."""
    import yaml

    if isinstance(value, dict):
        props = schema.get('properties', {})
        extra = schema.get('additionalProperties')
        return {k: coerce(v, props.get(k, extra if isinstance(extra, dict) else {}))
                for k, v in value.items()}
    if isinstance(value, list):
        return [coerce(v, schema.get('items', {})) for v in value]
    types = schema.get('type', 'string' if 'enum' in schema else None)
    types = [types] if isinstance(types, str) else types or []
    if isinstance(value, str) and types and 'string' not in types:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if not isinstance(parsed, str):
            return coerce(parsed, schema) if isinstance(parsed, (dict, list)) else parsed
    return value


def problems(config, where='params.yaml', keys=None):
    """Every error in ``config`` as a line ``{where}: {key}: {problem}``; empty when it is usable.

    ``keys``: check only these top-level keys (a command that reads part of params.yaml)."""
    import jsonschema

    if not isinstance(config, dict):
        return [f'{where}: must be a YAML mapping']
    schema = SCHEMA if keys is None else _restricted(keys)
    lines = []
    if 'seed' in config and keys is None:
        lines.append(f'{where}: seed: replaced by "seeds", a list (e.g. seeds: [0])')
    by_key = {}  # one line per key, however many rules it breaks
    for err in jsonschema.Draft7Validator(schema).iter_errors(config):
        by_key.setdefault(_key(err.absolute_path) or '(top level)', []).append(err.message)
    for name in sorted(by_key):
        lines.append(f'{where}: {name}: {"; ".join(by_key[name])}')
    if not lines:
        lines += [f'{where}: {line}' for line in _cross_checks(config)]
    return lines


def check(config, where='params.yaml', keys=None):
    """Raise a one-line ``CGRSegError`` naming every problem (for the cgrseg commands)."""
    lines = problems(config, where, keys)
    if lines:
        rest = [line.removeprefix(f'{where}: ') for line in lines[1:]]
        raise CGRSegError('; '.join([lines[0], *rest]))
    return config


def _restricted(keys):
    return {**SCHEMA, 'required': [k for k in SCHEMA['required'] if k in keys],
            'properties': {k: v for k, v in SCHEMA['properties'].items() if k in keys}}


def _key(path):
    return '.'.join(str(part) for part in path)


def _cross_checks(config):
    if 'profile' in config and config['profile'] not in config.get('profiles', {}):
        yield (f'profile: {config["profile"]!r} is not one of the profiles '
               f'({", ".join(sorted(config.get("profiles", {})))})')
    datasets = config.get('datasets', [])
    judged = config.get('judged_complexity', {}).get('dataset')
    if 'configs' in config:
        for dataset in dict.fromkeys([*datasets, *([judged] if judged else [])]):
            if dataset not in config['configs']:
                yield f'configs.{dataset}: missing (a config pattern for every dataset)'
    for name, sched in (config.get('profiles') or {}).items():
        iters = sched.get('iters') if isinstance(sched, dict) else None
        if isinstance(iters, dict):  # a variant left out would silently train the full schedule
            for variant in config.get('variants', []):
                if str(variant) not in iters:
                    yield f'profiles.{name}.iters.{variant}: missing (one count for every variant)'
    if 'measure_shape' in config:
        for dataset in datasets:
            if dataset not in config['measure_shape']:
                yield f'measure_shape.{dataset}: missing ([H, W] for every dataset)'
