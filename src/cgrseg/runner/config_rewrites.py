"""The rewrites ``cgrseg train``, ``evaluate`` and ``throughput`` apply to a loaded mmseg config.

``rewrite`` is the one route from a command's named settings into the config (after
``--cfg-options``, which ``cgrseg.mmseg_config.load_config`` merges); each setting changes every key
it concerns (``--iters`` the warm-up, evaluation and checkpoint intervals too). All functions change
an mmcv ``Config`` in place; bad input raises ``CGRSegError``.
"""
from pathlib import Path, PurePosixPath

from cgrseg import ranges as R
from cgrseg.mmseg_config import load_config  # noqa: F401  (train and evaluate call it as C.load_config)
from cgrseg.errors import CGRSegError

# The prefix our configs' data roots start with (the layout `cgrseg prepare` writes).
DEFAULT_DATA_PREFIX = 'data/prepared'
SPLITS = ('train', 'val', 'test')


def rewrite(cfg, data_root=None, crop=None, iters=None, train_repeat=None, checkpoint_interval=None,
            samples_per_gpu=None):
    """Apply the settings that are not None, in this order (the checkpoint interval is clamped to
    the new schedule; the crop scales the config's own image sizes)."""
    if data_root:
        set_data_prefix(cfg, data_root)
    if crop is not None:
        set_crop(cfg, crop)
    if iters is not None:
        scale_schedule(cfg, iters)
    if train_repeat is not None:
        repeat_train_set(cfg, train_repeat)
    if checkpoint_interval is not None:
        set_checkpoint_interval(cfg, checkpoint_interval)
    if samples_per_gpu is not None:
        cfg.data.samples_per_gpu = R.require(samples_per_gpu, R.BATCH, '--samples-per-gpu')
    return cfg


def experiment(cfg, path):
    """The ``experiment`` dict our configs carry (model, variant, dataset, paper_mode)."""
    exp = cfg.get('experiment')
    keys = ('model', 'variant', 'dataset', 'paper_mode')
    if exp is None or any(k not in exp for k in keys):
        raise CGRSegError(f'{path}: config has no experiment=dict({", ".join(keys)}) entry')
    return dict(exp)


def _leaves(node):
    """Dataset dicts under ``node``, looking through wrappers (RepeatDataset, concatenation)."""
    if node is None:
        return
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from _leaves(item)
    elif 'dataset' in node:
        yield from _leaves(node['dataset'])
    elif 'datasets' in node:
        yield from _leaves(node['datasets'])
    else:
        yield node


def dataset_cfgs(cfg, splits=SPLITS):
    for split in splits:
        for ds in _leaves(cfg.data.get(split)):
            yield split, ds


def set_data_prefix(cfg, prefix):
    """Move every data root from under the config's prefix (``data/prepared``) to under ``prefix``."""
    old = PurePosixPath(cfg.get('data_prefix', DEFAULT_DATA_PREFIX))
    for split, ds in dataset_cfgs(cfg):
        root = ds.get('data_root')
        if root is None:
            continue
        try:
            rel = PurePosixPath(root).relative_to(old)
        except ValueError:
            raise CGRSegError(f'{split} data_root {root} is not under {old}; '
                           f'--data-root cannot relocate it') from None
        ds['data_root'] = str(Path(prefix) / rel)
    cfg.data_prefix = str(prefix)


def check_data(cfg, splits):
    """Fail early, naming the directory, when a split's images or annotations are missing."""
    for split, ds in dataset_cfgs(cfg, splits):
        root = Path(ds.get('data_root') or '.')
        for key in ('img_dir', 'ann_dir', 'split'):
            if ds.get(key) is None:
                continue
            path = root / ds[key]
            if not path.exists():
                raise CGRSegError(f'{path}: {key} of the {split} set does not exist '
                               f'(run `cgrseg prepare`, or point --data-root at the prepared data)')


def _scale(size, factor):
    """Scale an mmseg size: an (w, h) pair or a list of pairs."""
    if isinstance(size[0], (list, tuple)):
        return [_scale(s, factor) for s in size]
    return tuple(max(1, round(s * factor)) for s in size)


def _pipelines(cfg, splits):
    for _, ds in dataset_cfgs(cfg, splits):
        yield ds['pipeline']


def train_crop(cfg):
    for pipeline in _pipelines(cfg, ('train',)):
        for step in pipeline:
            if step['type'] == 'RandomCrop':
                return tuple(step['crop_size'])
    raise CGRSegError('config has no RandomCrop step in its train pipeline')


def set_crop(cfg, crop):
    """Train on ``crop`` x ``crop`` patches and scale every resize by the same factor.

    The image scales (train Resize and test MultiScaleFlipAug) keep their ratio to the crop, so a
    small demo crop sees the same field of view as the paper's, only at lower resolution.
    """
    R.require(crop, R.SIDE, '--crop')
    factor = crop / train_crop(cfg)[0]
    for pipeline in _pipelines(cfg, ('train',)):
        for step in pipeline:
            if step['type'] == 'RandomCrop':
                step['crop_size'] = (crop, crop)
            elif step['type'] == 'Pad' and step.get('size') is not None:
                step['size'] = (crop, crop)
            elif step['type'] == 'Resize' and step.get('img_scale') is not None:
                step['img_scale'] = _scale(step['img_scale'], factor)
    for pipeline in _pipelines(cfg, ('val', 'test')):
        for step in pipeline:
            if step['type'] == 'MultiScaleFlipAug' and step.get('img_scale') is not None:
                step['img_scale'] = _scale(step['img_scale'], factor)
    test_cfg = cfg.model.get('test_cfg') or {}
    if test_cfg.get('mode') == 'slide':
        test_cfg['crop_size'] = _scale(test_cfg['crop_size'], factor)
        test_cfg['stride'] = _scale(test_cfg['stride'], factor)


# A checkpoint is ~118 MB (weights + AdamW state), written and fsynced: scaled down to short runs,
# the official interval would save one every few iterations (every one below 40 iterations) and
# writing would dominate the run. Every 100 iterations it costs <1 % of a CPU run (~0.8 s/iter) and
# a resume repeats at most 100 iterations; --checkpoint-interval still sets any interval.
MIN_SCALED_CHECKPOINT_INTERVAL = 100


def scale_schedule(cfg, iters):
    """Run ``iters`` iterations with the config's schedule compressed by iters / max_iters.

    Warm-up, evaluation and checkpoint intervals are scaled by the same factor and clamped to
    [1, iters], so a 4-iteration demo still warms up and evaluates, and ``--iters`` equal to the
    config's own length changes nothing. A scaled checkpoint interval is at least
    ``MIN_SCALED_CHECKPOINT_INTERVAL`` (or ``iters``: the last iteration is always saved).
    """
    R.require(iters, R.COUNT, '--iters')
    factor = iters / cfg.runner['max_iters']

    def scaled(n):
        return max(1, min(iters, round(n * factor)))

    cfg.runner['max_iters'] = iters
    if cfg.lr_config.get('warmup'):
        cfg.lr_config['warmup_iters'] = scaled(cfg.lr_config['warmup_iters'])
    if cfg.get('evaluation'):
        cfg.evaluation['interval'] = scaled(cfg.evaluation['interval'])
    if cfg.get('checkpoint_config'):
        interval = max(MIN_SCALED_CHECKPOINT_INTERVAL, scaled(cfg.checkpoint_config['interval']))
        cfg.checkpoint_config['interval'] = min(iters, interval)
    # Logging is not part of the schedule: log about ten times per short run, never less often.
    cfg.log_config['interval'] = min(cfg.log_config['interval'], max(1, iters // 10))


def repeat_train_set(cfg, times):
    """Wrap the train set in mmseg's RepeatDataset: one epoch becomes ``times`` passes over it
    (1: the config unchanged)."""
    R.require(times, R.REPEAT, '--train-repeat')
    if times == 1:
        return
    cfg.data.train = dict(type='RepeatDataset', times=times, dataset=cfg.data.train)


def set_checkpoint_interval(cfg, interval):
    """Checkpoint every ``interval`` iterations; the last iteration is always saved (clamped)."""
    R.require(interval, R.COUNT, '--checkpoint-interval')
    cfg.checkpoint_config['interval'] = min(interval, cfg.runner['max_iters'])


def pretrained_path(cfg):
    init = cfg.model.backbone.get('init_cfg')
    if init and init.get('type') == 'Pretrained':
        return init.get('checkpoint')
    return None


def drop_pretrained(cfg):
    cfg.model.backbone['init_cfg'] = None
    cfg.model['pretrained'] = None


# Helper variables of the base files; the datasets and model hold their own (rewritten) copies,
# so leaving these in a resolved config would show stale crop sizes and data roots.
TEMPLATE_VARS = ('dataset_type', 'data_root', 'img_norm_cfg', 'crop_size', 'img_scale',
                 'train_pipeline', 'test_pipeline', 'norm_cfg')


def resolved_text(cfg):
    """The config as Python source, without the base files' template variables."""
    from mmcv import Config
    kept = Config({k: cfg[k] for k in cfg if k not in TEMPLATE_VARS})
    try:
        return kept.pretty_text
    except Exception:  # mmcv quotes strings unescaped: with a ' in a path (--data-root) its text is no Python
        return ''.join(f'{key} = {value!r}\n' for key, value in kept.to_dict().items())
