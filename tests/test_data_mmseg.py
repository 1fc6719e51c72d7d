"""The prepared synthetic datasets load with mmseg 0.30's own dataset classes and pipelines."""
import json
import logging

import numpy as np
import pytest

mmseg_datasets = pytest.importorskip('mmseg.datasets')

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
CROP = (64, 64)
# mmseg 0.30's standard pipelines (configs/_base_/datasets/*), at a small scale
TRAIN = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', img_scale=(256, 64), ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=CROP, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **NORM),
    dict(type='Pad', size=CROP, pad_val=0, seg_pad_val=255),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_semantic_seg']),
]
TEST = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(256, 64), flip=False, transforms=[
        dict(type='Resize', keep_ratio=True),
        dict(type='RandomFlip'),
        dict(type='Normalize', **NORM),
        dict(type='ImageToTensor', keys=['img']),
        dict(type='Collect', keys=['img']),
    ]),
]
DATASETS = {
    'ade20k': dict(type='ADE20KDataset'),
    'coco_stuff10k': dict(type='COCOStuffDataset', reduce_zero_label=True),
    'pascal_context': dict(type='PascalContextDataset59'),
}


def config(root, dataset, split, pipeline):
    manifest = json.loads((root / f'{dataset}.manifest.json').read_text())
    layout = manifest['splits'][split]
    cfg = dict(DATASETS[dataset], data_root=str(root / manifest['data_root']),
               img_dir=layout['img_dir'], ann_dir=layout['ann_dir'], pipeline=pipeline)
    if layout['split']:
        cfg['split'] = layout['split']
    return cfg, manifest


@pytest.mark.parametrize('dataset', sorted(DATASETS))
def test_mmseg_dataset_loads_and_scores_ground_truth_as_perfect(prepared_datasets, dataset, caplog):
    caplog.set_level(logging.WARNING, logger='mmseg')  # quiet, and restored for later tests
    cfg, manifest = config(prepared_datasets, dataset, 'train', TRAIN)
    train = mmseg_datasets.build_dataset(cfg)
    assert len(train) == manifest['splits']['train']['count']
    for index in range(len(train)):
        sample = train[index]
        assert tuple(sample['img'].data.shape) == (3, *CROP)
        labels = np.unique(sample['gt_semantic_seg'].data.numpy())
        assert set(labels) <= set(range(len(train.CLASSES))) | {255}
    assert len(train.CLASSES) == manifest['num_classes']

    cfg, manifest = config(prepared_datasets, dataset, 'val', TEST)
    val = mmseg_datasets.build_dataset(cfg)
    assert len(val) == manifest['splits']['val']['count']
    assert val[0]['img'][0].data.shape[0] == 3
    # predicting the ground truth (train ids = stored value - 1) must score 100 %, which only holds
    # if the on-disk convention matches reduce_zero_label
    perfect = [gt.astype(np.int64) - 1 for gt in val.get_gt_seg_maps()]
    metrics = val.evaluate(perfect, metric='mIoU')
    assert metrics['mIoU'] == pytest.approx(1.0)
    present = ~np.isnan([metrics[f'IoU.{name}'] for name in val.CLASSES])
    assert np.flatnonzero(present).tolist() == manifest['splits']['val']['classes_present']
