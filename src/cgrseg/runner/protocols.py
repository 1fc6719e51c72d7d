"""Test-time protocols: the data set's official one and single scale.

The official protocol of a data set is its config's test pipeline as it stands: mmseg 0.x's
``MultiScaleFlipAug`` runs every ``img_ratios`` scale (and the flip) whenever the pipeline sets them,
in ``tools/test.py`` without ``--aug-test`` and in the in-training evaluation alike. Our dataset
configs mirror the authors' (configs/_base_/datasets/*.py name the official file in
``test_protocol_source``). Single scale is the same pipeline without ratios and flip.
"""
import copy

from cgrseg.errors import CGRSegError

OFFICIAL, SINGLE_SCALE = 'official', 'single_scale'
NAMES = (OFFICIAL, SINGLE_SCALE)


def _test_augs(cfg):
    """The MultiScaleFlipAug steps of the test split's pipeline(s)."""
    from cgrseg.runner.config_rewrites import dataset_cfgs
    steps = [step for _, ds in dataset_cfgs(cfg, ('test',)) for step in ds['pipeline']
             if step['type'] == 'MultiScaleFlipAug']
    if not steps:
        raise CGRSegError('config test pipeline has no MultiScaleFlipAug step to read the test scales from')
    return steps


def describe(cfg, name=OFFICIAL):
    """What the test pipeline of ``cfg`` does: scales (ratios of img_scale), flip, mode, source."""
    step = _test_augs(cfg)[0]
    scales = [float(r) for r in step.get('img_ratios') or [1.0]]
    flip = bool(step.get('flip'))
    mode = ('ms' if len(scales) > 1 else 'ss') + ('_flip' if flip else '')
    scale_text = (f'{len(scales)} scales ({", ".join(f"{s:g}" for s in scales)}) of'
                  if len(scales) > 1 else 'single scale,')
    text = f'{scale_text} img_scale {tuple(step["img_scale"])}, {"with" if flip else "no"} flip'
    doc = {'name': name, 'mode': mode, 'scales': scales, 'flip': flip, 'description': text}
    if name == OFFICIAL:
        doc['source'] = cfg.get('test_protocol_source')
    return doc


def make_single_scale(cfg):
    """Reduce the test pipeline of ``cfg`` (in place) to one scale without flip."""
    for step in _test_augs(cfg):
        step.pop('img_ratios', None)
        step['flip'] = False
    return cfg


def protocol_configs(cfg):
    """{name: config} for the official protocol (``cfg`` itself) and single scale (a copy)."""
    return {OFFICIAL: cfg, SINGLE_SCALE: make_single_scale(copy.deepcopy(cfg))}


def same_protocol(a, b):
    return (a['scales'], a['flip']) == (b['scales'], b['flip'])
