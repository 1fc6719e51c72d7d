"""Test protocols: each data set's official one (the authors' test pipeline) and single scale."""
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('mmseg')

from cgrseg.mmseg_config import load_config  # noqa: E402
from cgrseg.runner import evaluate as E  # noqa: E402
from cgrseg.runner import protocols as P  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    'ade20k': 'configs/cgrseg/cgrseg-{v}_ade20k_160k.py',
    'coco_stuff10k': 'configs/cgrseg/cgrseg-{v}_coco-stuff10k_80k.py',
    'pascal_context': 'configs/cgrseg/cgrseg-{v}_pascal-context-59_80k.py',
}
MS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
# The authors' test pipelines, read from github.com/nizhenliang/CGRSeg at 85d5a92,
# local_configs/_base_/datasets/{ade20k,coco-stuff10k,pascal_context_59}.py:
# (img_scale, img_ratios, flip, transform types inside MultiScaleFlipAug).
OFFICIAL = {
    'ade20k': ((2048, 512), None, False,
               ['Resize', 'RandomFlip', 'Normalize', 'Pad', 'ImageToTensor', 'Collect']),
    'coco_stuff10k': ((2048, 512), MS, False,
                      ['Resize', 'RandomFlip', 'Normalize', 'ImageToTensor', 'Collect']),
    'pascal_context': ((520, 520), MS, True,
                       ['Resize', 'ResizeToMultiple', 'RandomFlip', 'Normalize', 'ImageToTensor', 'Collect']),
}
# Our one documented deviation (configs/_base_/datasets/coco-stuff10k.py): Pad(size_divisor=32).
DEVIATIONS = {'coco_stuff10k': ['Resize', 'RandomFlip', 'Normalize', 'Pad', 'ImageToTensor', 'Collect']}


def config(dataset, variant='t'):
    return load_config(ROOT / CONFIGS[dataset].format(v=variant))


def aug_step(cfg, split):
    return next(s for s in cfg.data[split].pipeline if s['type'] == 'MultiScaleFlipAug')


@pytest.mark.parametrize('dataset', OFFICIAL)
@pytest.mark.parametrize('variant', ['t', 'b', 'l'])
def test_test_pipelines_are_the_authors(dataset, variant):
    img_scale, ratios, flip, transforms = OFFICIAL[dataset]
    cfg = config(dataset, variant)
    for split in ('val', 'test'):  # val: the in-training evaluation runs the official protocol too
        step = aug_step(cfg, split)
        assert tuple(step['img_scale']) == img_scale
        assert step.get('img_ratios') == ratios and step['flip'] is flip
        assert [t['type'] for t in step['transforms']] == DEVIATIONS.get(dataset, transforms)
    assert 'CGRSeg@85d5a92' in cfg.test_protocol_source
    assert cfg.experiment.paper_mode == P.describe(cfg)['mode']  # what the paper's table reports


@pytest.mark.parametrize('dataset,mode,scales,flip', [
    ('ade20k', 'ss', [1.0], False), ('coco_stuff10k', 'ms', MS, False), ('pascal_context', 'ms_flip', MS, True)])
def test_official_and_single_scale_descriptions(dataset, mode, scales, flip):
    cfg = config(dataset)
    official = P.describe(cfg)
    assert (official['name'], official['mode'], official['scales'], official['flip']) == \
        ('official', mode, scales, flip)
    assert official['source'] == cfg.test_protocol_source
    configs = P.protocol_configs(cfg)
    single = P.describe(configs[P.SINGLE_SCALE], P.SINGLE_SCALE)
    assert (single['mode'], single['scales'], single['flip']) == ('ss', [1.0], False)
    assert P.describe(cfg) == official  # the official config is left as it was
    assert 'source' not in single


def _png(path, h, w):
    import mmcv
    mmcv.imwrite(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8), str(path))


def test_mmseg_runs_every_ratio_of_the_pipeline_without_aug_test(tmp_path):
    """Why the configs carry the official ratios: mmseg's MultiScaleFlipAug applies them whenever
    they are set (6 inputs for COCO-Stuff, 12 with the flips for Pascal Context), and single scale
    leaves one."""
    from mmseg.datasets.pipelines import Compose
    _png(tmp_path / 'a.jpg', 480, 640)
    counts = {}
    for dataset in ('coco_stuff10k', 'pascal_context'):
        for name, cfg in P.protocol_configs(config(dataset)).items():
            out = Compose(cfg.data.test.pipeline)({'img_info': {'filename': 'a.jpg'}, 'img_prefix': str(tmp_path)})
            counts[dataset, name] = len(out['img'])
            if name == P.OFFICIAL and dataset == 'coco_stuff10k':  # short sides 256 .. 896, padded to /32
                assert [tuple(m.data['img_shape'][:2]) for m in out['img_metas']] == \
                    [(int(512 * r), round(640 * int(512 * r) / 480)) for r in MS]
                assert all(t.shape[-2] % 32 == 0 and t.shape[-1] % 32 == 0 for t in out['img'])
    assert counts == {('coco_stuff10k', 'official'): 6, ('coco_stuff10k', 'single_scale'): 1,
                      ('pascal_context', 'official'): 12, ('pascal_context', 'single_scale'): 1}


def test_the_model_needs_padding_where_a_side_over_16_rounds_up_odd():
    """The evidence for COCO-Stuff's Pad: the stage-3 strided attention upsamples to an even size,
    so 48 (48/16 = 3) fails, 64 runs; the official model is the same (tests/models/test_fidelity.py)."""
    from cgrseg.models.build import build_model
    model = build_model(config('coco_stuff10k')).eval()
    with torch.no_grad():
        assert model.encode_decode(torch.randn(1, 3, 64, 96), None).shape[-2:] == (64, 96)
        with pytest.raises(RuntimeError):
            model.encode_decode(torch.randn(1, 3, 48, 96), None)


def fake_scores(miou):
    return {'mIoU': miou, 'mAcc': 0.5, 'aAcc': 0.75, 'IoU.a': miou, 'IoU.b': float('nan')}


@pytest.mark.parametrize('dataset,runs', [('ade20k', 1), ('coco_stuff10k', 2), ('pascal_context', 2)])
def test_each_protocol_is_evaluated_with_its_own_pipeline(monkeypatch, dataset, runs):
    seen = []

    def predict(cfg, model, device, workers):
        step = aug_step(cfg, 'test')
        seen.append((step.get('img_ratios'), step['flip']))
        return fake_scores(0.4 if step.get('img_ratios') else 0.3)

    monkeypatch.setattr(E, 'predict_and_score', predict)
    cfg = config(dataset)
    result = E.evaluate_protocols(cfg, None, 'cpu', 0)
    assert len(seen) == runs and seen[-1] == (None, False)  # single scale: no ratios, no flip
    assert list(result) == ['official', 'single_scale']
    official, single = result['official'], result['single_scale']
    assert official['scales'] == P.describe(cfg)['scales']
    assert official['mIoU'] == (40.0 if runs == 2 else 30.0) and single['mIoU'] == 30.0
    assert single['per_class_iou'] == {'a': 30.0, 'b': None}
