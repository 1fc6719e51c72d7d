"""The contracts of the pipeline's files, kept as files in workflow/schemas/: params.yaml
(``params.schema.yaml``) and the result files (``metrics``, ``flops``, ``throughput``, ``diff``
``.schema.json``; docs/results-schema.md shows examples). ``problem`` checks a document against one and
returns its first problem as a line naming the field, in the words of the property's ``errorMessage``
(a key validators ignore)."""
import copy
import functools
import json
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parents[2] / 'workflow' / 'schemas'
RESULTS = ('metrics', 'flops', 'throughput', 'diff')


def load(name):
    """The schema ``name`` (a fresh copy: callers may change it)."""
    return copy.deepcopy(_parsed(name))


@functools.lru_cache(maxsize=None)
def _parsed(name):
    """Parsed once per process: every params and result check reads a schema (pure-Python YAML, ~0.1 s)."""
    import yaml  # the repository's own files; the params schema's anchors are trusted
    for suffix in ('.schema.json', '.schema.yaml'):
        path = SCHEMAS / f'{name}{suffix}'
        if path.is_file():
            text = path.read_text()
            return json.loads(text) if suffix == '.schema.json' else yaml.safe_load(text)
    raise FileNotFoundError(f'{SCHEMAS}/{name}.schema.*: no such schema')


@functools.lru_cache(maxsize=None)
def _validator(name):
    import jsonschema
    return jsonschema.Draft7Validator(load(name))


def problem(doc, name):
    """The first way ``doc`` breaks schema ``name``, as ``"field" must be ..., got VALUE``; None if none."""
    errors = sorted(_validator(name).iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    err = errors[0]
    path, node, value = list(err.absolute_path), err.schema, err.instance
    if err.validator == 'required':
        missing = next(key for key in err.validator_value if key not in err.instance)
        path, node = [*path, missing], err.schema.get('properties', {}).get(missing, {})
        if 'errorMessage' not in node:
            return f'"{_dotted(path)}" is missing'
        value = None
    return f'"{_dotted(path)}" {node.get("errorMessage", err.message)}, got {value!r}'


def _dotted(path):
    return '.'.join(str(part) for part in path) or '(document)'
