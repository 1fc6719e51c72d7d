"""The numbers the model and the tools accept, for the command line, as params.yaml's schema defines them.

Each range is a JSON-schema fragment in the ``definitions`` of workflow/schemas/params.schema.yaml,
the one place a bound is written (its comments say why each is what it is): params.yaml's properties
use them by YAML anchor (a bad value stops the DAG when it is built), and ``option(RANGE)`` makes one
an argparse ``type=`` (a bad option stops the command while its arguments are parsed), so ``--crop 48``
and ``crop: 48`` are refused with the same words: ``48 is not a multiple of 32``. ``problem`` reads the
few keywords used there exactly as jsonschema does (tests/test_ranges.py holds it to jsonschema),
without importing jsonschema into every command.
"""
import argparse
import math

from cgrseg import schemas
from cgrseg.errors import CGRSegError

_definitions = schemas.load('params')['definitions']
SIDE = _definitions['side']
SEED = _definitions['seed']
COUNT = _definitions['count']
OPTIONAL_COUNT = _definitions['optional_count']
BATCH = _definitions['batch']
REPEAT = _definitions['repeat']
WORKERS = _definitions['workers']
GPUS = _definitions['gpus']
PROCESSES = _definitions['processes']
SYNTH_IMAGES = _definitions['synth_images']
RETRIES = _definitions['retries']
WAIT = _definitions['wait']
TIMEOUT = _definitions['timeout']
RATE = _definitions['rate']


def problem(value, schema):
    """Why ``value`` is outside ``schema`` (jsonschema's words), or None when it is inside."""
    if isinstance(value, float) and not math.isfinite(value):
        return f'{value!r} is not a finite number'
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or (schema['type'] == 'integer' and not isinstance(value, int)):
        return f"{value!r} is not of type '{schema['type']}'"
    if 'minimum' in schema and value < schema['minimum']:
        return f"{value!r} is less than the minimum of {schema['minimum']!r}"
    if 'exclusiveMinimum' in schema and value <= schema['exclusiveMinimum']:
        return f"{value!r} is less than or equal to the minimum of {schema['exclusiveMinimum']!r}"
    if 'maximum' in schema and value > schema['maximum']:
        return f"{value!r} is greater than the maximum of {schema['maximum']!r}"
    if 'multipleOf' in schema and value % schema['multipleOf']:
        return f"{value!r} is not a multiple of {schema['multipleOf']}"
    return None


def require(value, schema, name):
    """``value``, or a one-line ``CGRSegError`` naming the option (for the Python API)."""
    why = problem(value, schema)
    if why:
        raise CGRSegError(f'{name}: {why}')
    return value


def option(schema):
    """An argparse ``type=`` that reads a number and refuses it outside ``schema``: argparse then
    reports ``argument --crop: 48 is not a multiple of 32`` (or ``invalid integer value: 'x'``)."""
    def parse(text):
        value = int(text) if schema['type'] == 'integer' else float(text)
        why = problem(value, schema)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value

    parse.__name__ = schema['type']   # argparse: "invalid integer value: 'x'"
    parse.schema = schema
    return parse
