# COCO-Stuff-10k, 171 classes (9k train / 1k test), 512x512 crops.
# Source: mmseg 0.30 configs/_base_/datasets/coco-stuff10k.py (also the official CGRSeg base, except that
# the latter enables multi-scale test ratios there; the paper's COCO-Stuff numbers are single scale --
# the README marks only Pascal Context as "MS" -- so we keep mmseg's single-scale test).
# Test-time Pad(size_divisor=32): our assumption, as in the official ADE20K pipeline.
# data_root: our prepare layout (`cgrseg prepare coco_stuff10k`); `--data-root` replaces `data/prepared`.
dataset_type = 'COCOStuffDataset'
data_root = 'data/prepared/coco_stuff10k'
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', img_scale=(2048, 512), ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size=crop_size, pad_val=0, seg_pad_val=255),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_semantic_seg']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(2048, 512),
        flip=False,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='Pad', size_divisor=32),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ]),
]
data = dict(
    samples_per_gpu=4,   # as ADE20K: 4 per GPU x 4 GPUs = 16 (assumption, see schedule)
    workers_per_gpu=4,   # mmseg base
    train=dict(
        type=dataset_type, data_root=data_root, reduce_zero_label=True,
        img_dir='images/train2014', ann_dir='annotations/train2014',
        pipeline=train_pipeline),
    val=dict(
        type=dataset_type, data_root=data_root, reduce_zero_label=True,
        img_dir='images/test2014', ann_dir='annotations/test2014',
        pipeline=test_pipeline),
    test=dict(
        type=dataset_type, data_root=data_root, reduce_zero_label=True,
        img_dir='images/test2014', ann_dir='annotations/test2014',
        pipeline=test_pipeline))
