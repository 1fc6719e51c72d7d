"""Which experiment a work directory belongs to: a rerun may continue it, never replace it.

The identity of a run is its config's ``experiment`` entry (model, variant, dataset) and its model
definition (minus the pretrained-weights path and the test settings, which ``--no-pretrained`` and
``--crop`` change legitimately). It is read from the resumed checkpoint's meta and from the
``config.py`` an earlier run wrote, before anything in the directory is overwritten. Both texts
are untrusted (a work directory or checkpoint may come from anywhere): they are parsed as data
(``literal_config``), never executed as mmcv's ``Config.fromstring`` would.
"""
import ast
from pathlib import Path

from cgrseg.mmseg_config import first_line
from cgrseg.errors import CGRSegError

RESOLVED_CONFIG = 'config.py'


def _plain(node):
    """ConfigDicts, tuples and lists as plain dicts and lists, for comparison."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def identity(cfg):
    exp = cfg.get('experiment') if isinstance(cfg.get('experiment'), dict) else {}
    model = _plain(cfg.get('model') or {})
    if not isinstance(model, dict):
        model = {'not a dict': model}
    for key in ('pretrained', 'train_cfg', 'test_cfg'):
        model.pop(key, None)
    if isinstance(model.get('backbone'), dict):
        model['backbone'].pop('init_cfg', None)
    return {'experiment': {k: exp.get(k) for k in ('model', 'variant', 'dataset')}, 'model': model}


MAX_CONFIG_BYTES = 1 << 20
MAX_RANGE = 1 << 10   # gpu_ids: one per process


def _int(node):
    value = _literal(node)
    if type(value) is not int or abs(value) > MAX_RANGE:
        raise ValueError(f'line {node.lineno}: range of {ast.unparse(node)[:20]!r} is not a small integer')
    return value  # a resolved CGRSeg config has about 5 kB


def _literal(node):
    """A config value as data: ``dict(k=v)`` calls, containers and constants; anything else
    (a name, another call, an attribute) is refused."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict' \
            and not node.args and all(k.arg for k in node.keywords):
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(v) for v in node.elts]
    if isinstance(node, ast.Name) and node.id in ('nan', 'inf'):   # how mmcv's dump writes those floats
        return float(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Name):
        return -_literal(node.operand)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'range' \
            and not node.keywords and len(node.args) <= 3:   # gpu_ids of runs before it became a list
        return list(range(*(_int(a) for a in node.args)))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f'line {node.lineno}: {ast.unparse(node)[:60]!r} is not plain data') from None


def _assignment(stmt):
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)):
        raise ValueError(f'line {stmt.lineno}: not a `name = value` assignment')
    return stmt.targets[0].id, _literal(stmt.value)


def literal_config(text, origin):
    """The ``name = value`` assignments of a resolved config text as plain data, without running it."""
    if len(text) > MAX_CONFIG_BYTES:
        raise CGRSegError(f'{origin}: the config of the run in this work directory has {len(text)} '
                          f'characters, more than {MAX_CONFIG_BYTES}')
    try:
        return dict(_assignment(stmt) for stmt in ast.parse(text).body)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as err:
        raise CGRSegError(f'{origin}: cannot read the config of the run in this work directory as '
                          f'data: {first_line(err)}') from None


def _describe(ident):
    exp = ident['experiment']
    return ' '.join(str(v) for v in (exp['model'], exp['dataset']) if v) or 'another experiment'


def _read_resolved(path):
    try:
        with open(path, 'rb') as f:
            return f.read(MAX_CONFIG_BYTES + 1).decode()
    except (OSError, UnicodeDecodeError) as err:
        raise CGRSegError(f'{path}: cannot read the config of the run in this work directory: '
                          f'{first_line(err)}') from None


def check_owner(work_dir, resolved, config_path, meta=None):
    """Refuse to train the config whose resolved text is ``resolved`` in a work dir that holds a
    run of another experiment or model. Both sides are compared as data (``literal_config``)."""
    work_dir = Path(work_dir)
    sources = []
    if meta and isinstance(meta.get('config'), str):
        sources.append(('its newest checkpoint', meta['config']))
    written = work_dir / RESOLVED_CONFIG
    if written.is_file():
        sources.append((str(written), _read_resolved(written)))
    mine = identity(literal_config(resolved, config_path))
    for origin, text in sources:
        theirs = identity(literal_config(text, origin))
        if theirs == mine:
            continue
        if theirs['experiment'] != mine['experiment']:
            what = f'a {_describe(theirs)} run, not {_describe(mine)}'
        else:
            what = 'a run of another model definition'
        raise CGRSegError(f'{config_path}: {work_dir} holds {what} (per {origin}); refusing to mix '
                          f'them: use another --work-dir')
