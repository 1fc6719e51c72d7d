"""Every key of every split of each dataset config equals the authors' file, or is a listed deviation.

tests/test_configs.py and tests/runner/test_protocols.py check chosen keys (the train pipeline, the test
protocol); an option dropped elsewhere -- e.g. COCO-Stuff's ``reduce_zero_label`` in the val/test
split, where mmseg's default (False) differs -- went unnoticed. Here the whole ``data`` dict of each
of the nine configs is compared with the official one, key by key.
"""
from pathlib import Path

import pytest

mmcv = pytest.importorskip('mmcv')

ROOT = Path(__file__).resolve().parents[1]
SOURCE = 'github.com/nizhenliang/CGRSeg@85d5a92 local_configs/_base_/datasets/{}.py'
MS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
NORMALIZE = dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)


def official_train(img_scale, crop):
    """The train pipeline, written out identically in the three official files but for scale and crop."""
    return [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='Resize', img_scale=img_scale, ratio_range=(0.5, 2.0)),
            dict(type='RandomCrop', crop_size=crop, cat_max_ratio=0.75), dict(type='RandomFlip', prob=0.5),
            dict(type='PhotoMetricDistortion'), NORMALIZE,
            dict(type='Pad', size=crop, pad_val=0, seg_pad_val=255), dict(type='DefaultFormatBundle'),
            dict(type='Collect', keys=['img', 'gt_semantic_seg'])]


def official_test(img_scale, flip, transforms, ratios=None):
    aug = dict(type='MultiScaleFlipAug', img_scale=img_scale, flip=flip,
               transforms=[*transforms, dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])])
    if ratios:
        aug['img_ratios'] = ratios
    return [dict(type='LoadImageFromFile'), aug]


def official_data(dtype, root, train, test, splits, workers=4, **split_options):
    """The ``data`` dict: samples_per_gpu 4, and train/val/test as (img_dir, ann_dir[, split])."""
    def split(dirs, pipeline):
        img_dir, ann_dir, *listing = dirs
        out = dict(type=dtype, data_root=root, **split_options, img_dir=img_dir, ann_dir=ann_dir)
        if listing:
            out['split'] = listing[0]
        return dict(out, pipeline=pipeline)
    return dict(samples_per_gpu=4, workers_per_gpu=workers, train=split(splits['train'], train),
                val=split(splits['val'], test), test=split(splits['test'], test))


RESIZE, FLIP = dict(type='Resize', keep_ratio=True), dict(type='RandomFlip')
PASCAL_LISTS = 'ImageSets/SegmentationContext/{}.txt'
# The authors' dataset configs, transcribed (SOURCE); ADE20K's workers_per_gpu=8 is the override in
# their local_configs/cgrseg/cgrseg-{t,b,l}_ade20k_160k.py (COCO-Stuff/Pascal have no CGRSeg config).
OFFICIAL = {
    'ade20k': official_data(
        'ADE20KDataset', 'data/ade/ADEChallengeData2016', official_train((2048, 512), (512, 512)),
        official_test((2048, 512), False, [RESIZE, FLIP, NORMALIZE, dict(type='Pad', size_divisor=32)]),
        {'train': ('images/training', 'annotations/training'),
         'val': ('images/validation', 'annotations/validation'),
         'test': ('images/validation', 'annotations/validation')}, workers=8),
    'coco-stuff10k': official_data(
        'COCOStuffDataset', 'data/coco_stuff10k/', official_train((2048, 512), (512, 512)),
        official_test((2048, 512), False, [RESIZE, FLIP, NORMALIZE], MS),
        {'train': ('images/train2014', 'annotations/train2014'),
         'val': ('images/test2014', 'annotations/test2014'),
         'test': ('images/test2014', 'annotations/test2014')}, reduce_zero_label=True),
    'pascal_context_59': official_data(
        'PascalContextDataset59', 'data/VOCdevkit/VOC2010/', official_train((520, 520), (480, 480)),
        official_test((520, 520), True, [RESIZE, dict(type='ResizeToMultiple', size_divisor=32), FLIP, NORMALIZE], MS),
        {split: ('JPEGImages', 'SegmentationClassContext', PASCAL_LISTS.format(listing))
         for split, listing in (('train', 'train'), ('val', 'val'), ('test', 'val'))}),
}
CONFIG_SUFFIX = {'ade20k': 'ade20k_160k', 'coco-stuff10k': 'coco-stuff10k_80k',
                 'pascal_context_59': 'pascal-context-59_80k'}
OURS_ROOT = {'ade20k': 'data/prepared/ade/ADEChallengeData2016', 'coco-stuff10k': 'data/prepared/coco_stuff10k',
             'pascal_context_59': 'data/prepared/VOCdevkit/VOC2010'}
ROOT_REASON = "this project's prepare layout under data/prepared (docs/data.md); --data-root replaces it"
PAD_REASON = ('Pad(size_divisor=32) added: neither model runs sides whose /16 rounds up odd '
              '(configs/_base_/datasets/coco-stuff10k.py, tests/runner/test_protocols.py)')


def deviations(dataset):
    """path -> (ours, official, reason): every place where a config may differ from the authors'."""
    listed = {f'{split}.data_root': (OURS_ROOT[dataset], OFFICIAL[dataset][split]['data_root'], ROOT_REASON)
              for split in ('train', 'val', 'test')}
    if dataset == 'coco-stuff10k':
        for split in ('val', 'test'):
            official = OFFICIAL[dataset][split]['pipeline'][1]['transforms']
            listed[f'{split}.pipeline[1].transforms'] = (
                [*official[:3], dict(type='Pad', size_divisor=32), *official[3:]], official, PAD_REASON)
    return listed


def plain(value):
    """Config values as plain data: tuples as lists, ConfigDicts as dicts."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def differences(ours, official, path=''):
    """{path: (ours, official)} of every leaf (or list) that differs; missing keys as None."""
    if isinstance(ours, dict) and isinstance(official, dict):
        found = {}
        for k in sorted(set(ours) | set(official)):
            found.update(differences(ours.get(k), official.get(k), f'{path}.{k}' if path else k))
        return found
    if isinstance(ours, list) and isinstance(official, list) and len(ours) == len(official):
        found = {}
        for i, (a, b) in enumerate(zip(ours, official)):
            found.update(differences(a, b, f'{path}[{i}]'))
        return found
    return {} if ours == official else {path: (ours, official)}


@pytest.mark.parametrize('dataset', OFFICIAL)
@pytest.mark.parametrize('variant', 'tbl')
def test_every_dataset_key_is_the_authors_or_a_listed_deviation(dataset, variant):
    cfg = mmcv.Config.fromfile(str(ROOT / f'configs/cgrseg/cgrseg-{variant}_{CONFIG_SUFFIX[dataset]}.py'))
    found = differences(plain(cfg.data), plain(OFFICIAL[dataset]))
    listed = {path: (ours, official) for path, (ours, official, _) in deviations(dataset).items()}
    assert {p: plain(v) for p, v in found.items()} == plain(listed), SOURCE.format(dataset)


def test_the_comparison_sees_a_dropped_val_option():
    """Negative control: COCO-Stuff's val split without reduce_zero_label is a difference."""
    cfg = mmcv.Config.fromfile(str(ROOT / 'configs/cgrseg/cgrseg-t_coco-stuff10k_80k.py'))
    data = plain(cfg.data)
    del data['val']['reduce_zero_label']
    assert differences(data, plain(OFFICIAL['coco-stuff10k']))['val.reduce_zero_label'] == (None, True)
