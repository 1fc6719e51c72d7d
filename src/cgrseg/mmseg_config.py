"""Loading and checking an mmseg config: the one entry point for train, evaluate, measure and the
model builder.

``load_config`` reads the file (syntax errors, missing bases and failed imports become one line) and
merges ``--cfg-options`` into it, as mmseg's tools do; ``check_config`` then checks that the parts a
command needs are there and well-formed (``model`` with registered types and integer class counts,
``data`` splits, ``runner.max_iters``), so that a broken config fails before any work starts, naming
the file and the key. The named rewrites of ``cgrseg train`` (``--iters``, ``--crop``...) follow in
``cgrseg.runner.config_rewrites.rewrite``.
"""
import ast
import sys
from pathlib import Path

from cgrseg.errors import CGRSegError

# what each command needs from a config
MODEL = ('model',)
TRAIN = ('model', 'data.train', 'runner')
EVALUATE = ('model', 'data.test', 'runner')


def first_line(err):
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _fromfile(path):
    """(``Config.fromfile(path)``, None), or (None, the first line of its error).

    mmcv copies the config into a NamedTemporaryFile inside a TemporaryDirectory; when loading
    fails, the directory is gone before the file object (kept alive by the traceback) is finalised,
    and Python reports that failed unlink as "Exception ignored ... Traceback" after our error line.
    The traceback is therefore dropped here, while such reports are silenced.
    """
    from mmcv import Config
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        return Config.fromfile(str(path)), None
    except Exception as err:  # syntax errors, missing bases, failed custom_imports
        return None, first_line(err)
    finally:
        sys.unraisablehook = hook


def parse_options(items):
    """``--cfg-options`` ``KEY=VALUE`` strings -> dict; values are Python literals, floats ('nan',
    '1e-4') or text."""
    options = {}
    for item in items:
        key, sep, text = item.partition('=')
        if not sep or not key:
            raise CGRSegError(f'--cfg-options {item!r}: expected KEY=VALUE')
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            try:
                value = float(text)
            except ValueError:
                value = text
        options[key] = value
    return options


def option_args(options):
    """{key: value} -> the ``KEY=VALUE`` strings that ``parse_options`` reads back to the same values
    (params.yaml presets' and configs/paper/hypotheses.yaml's ``cfg_options``)."""
    return [f'{key}={value!r}' for key, value in options.items()]


def load_config(path, options=None, needs=()):
    """``Config.fromfile`` plus ``--cfg-options``, then ``check_config(needs)``; importing the config
    imports cgrseg's models."""
    path = Path(path)
    if not path.is_file():
        raise CGRSegError(f'{path}: no such config file')
    cfg, error = _fromfile(path)
    if error is not None:
        raise CGRSegError(f'{path}: cannot load config: {error}')
    if options:
        try:
            cfg.merge_from_dict(options)
        except Exception as err:
            raise CGRSegError(f'{path}: bad --cfg-options {options}: {first_line(err)}') from None
    check_config(cfg, path, needs)
    return cfg


def _section(cfg, path, key):
    value = cfg.get(key)
    if value is None:
        raise CGRSegError(f'{path}: config has no `{key}`')
    if not isinstance(value, dict):
        raise CGRSegError(f'{path}: `{key}` must be a dict, not {type(value).__name__}')
    return value


def _check_type(registry, node, path, key):
    kind = node.get('type') if isinstance(node, dict) else None
    if not isinstance(kind, str):
        raise CGRSegError(f'{path}: `{key}` has no type')
    if registry.get(kind) is None:
        raise CGRSegError(f'{path}: `{key}.type` {kind!r} is not a registered mmseg type')


def _heads(model):
    for key in ('decode_head', 'auxiliary_head'):
        heads = model.get(key)
        if isinstance(heads, (list, tuple)):
            yield from ((f'{key}[{i}]', h) for i, h in enumerate(heads))
        elif heads is not None:
            yield key, heads


def _check_model(cfg, path):
    from mmseg.models.builder import MODELS
    import cgrseg.models  # noqa: F401  (registers our types, as build_model does)
    model = _section(cfg, path, 'model')
    _check_type(MODELS, model, path, 'model')
    if model.get('backbone') is not None:
        _check_type(MODELS, model['backbone'], path, 'model.backbone')
    for key, head in _heads(model):
        _check_type(MODELS, head, path, f'model.{key}')
        classes = head.get('num_classes')
        if type(classes) is not int or classes < 1:
            raise CGRSegError(f'{path}: `model.{key}.num_classes` must be a positive integer, '
                              f'not {classes!r}')


def _check_data(cfg, path, split):
    from mmseg.datasets import DATASETS
    data = _section(cfg, path, 'data')
    if split not in data:
        raise CGRSegError(f'{path}: config has no `data.{split}`')
    node = data[split]
    while isinstance(node, dict) and 'dataset' in node:  # RepeatDataset and other wrappers
        node = node['dataset']
    for i, ds in enumerate(node if isinstance(node, (list, tuple)) else [node]):
        _check_type(DATASETS, ds, path, f'data.{split}' + (f'[{i}]' if isinstance(node, list) else ''))


def _check_runner(cfg, path):
    runner = _section(cfg, path, 'runner')
    iters = runner.get('max_iters')
    if iters is None:
        raise CGRSegError(f'{path}: config has no `runner.max_iters`')
    if type(iters) is not int or iters < 1:
        raise CGRSegError(f'{path}: `runner.max_iters` must be a positive integer, not {iters!r}')


def check_config(cfg, path, needs):
    """Raise ``CGRSegError`` naming ``path`` and the key when a part in ``needs`` is missing or malformed.

    ``needs`` holds ``model``, ``runner`` and ``data.<split>`` (see MODEL, TRAIN, EVALUATE).
    """
    for need in needs:
        if need == 'model':
            _check_model(cfg, path)
        elif need == 'runner':
            _check_runner(cfg, path)
        elif need.startswith('data.'):
            _check_data(cfg, path, need[len('data.'):])
        else:
            raise ValueError(f'unknown config requirement {need!r}')
