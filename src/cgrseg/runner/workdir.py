"""Which experiment a work directory belongs to: a rerun may continue it, never replace it.

The identity of a run is its config's ``experiment`` entry (model, variant, dataset) and its model
definition (minus the pretrained-weights path and the test settings, which ``--no-pretrained`` and
``--crop`` change legitimately). It is read from the resumed checkpoint's meta and from the
``config.py`` an earlier run wrote, before anything in the directory is overwritten.
"""
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
    exp = cfg.get('experiment') or {}
    model = _plain(cfg.get('model') or {})
    for key in ('pretrained', 'train_cfg', 'test_cfg'):
        model.pop(key, None)
    if isinstance(model.get('backbone'), dict):
        model['backbone'].pop('init_cfg', None)
    return {'experiment': {k: exp.get(k) for k in ('model', 'variant', 'dataset')}, 'model': model}


def _from_text(text, origin):
    from mmcv import Config
    try:
        return Config.fromstring(text, '.py')
    except Exception as err:
        raise CGRSegError(f'{origin}: cannot read the config of the run in this work directory: '
                          f'{first_line(err)}') from None


def _describe(ident):
    exp = ident['experiment']
    return ' '.join(str(v) for v in (exp['model'], exp['dataset']) if v) or 'another experiment'


def check_owner(work_dir, cfg, config_path, meta=None):
    """Refuse to train ``cfg`` in a work dir that holds a run of another experiment or model."""
    work_dir = Path(work_dir)
    sources = []
    if meta and isinstance(meta.get('config'), str):
        sources.append(('its newest checkpoint', meta['config']))
    resolved = work_dir / RESOLVED_CONFIG
    if resolved.is_file():
        sources.append((str(resolved), resolved.read_text()))
    mine = identity(cfg)
    for origin, text in sources:
        theirs = identity(_from_text(text, origin))
        if theirs == mine:
            continue
        if theirs['experiment'] != mine['experiment']:
            what = f'a {_describe(theirs)} run, not {_describe(mine)}'
        else:
            what = 'a run of another model definition'
        raise CGRSegError(f'{config_path}: {work_dir} holds {what} (per {origin}); refusing to mix '
                          f'them: use another --work-dir')
