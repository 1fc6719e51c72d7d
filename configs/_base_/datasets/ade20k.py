# ADE20K (SceneParse150), 150 classes, 512x512 crops.
# Source: mmseg 0.30 configs/_base_/datasets/ade20k.py; the test-time Pad(size_divisor=32) is from the
# official CGRSeg ade20k base (the backbone downsamples by 32; mmseg 0.30 crops the padding off the
# logits before resizing them back, so it does not change the metric's geometry).
# data_root: our prepare layout (`cgrseg prepare ade20k`); `--data-root` replaces `data/prepared`.
dataset_type = 'ADE20KDataset'
data_root = 'data/prepared/ade/ADEChallengeData2016'
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),   # 0 = "other" -> ignored (255)
    dict(type='Resize', img_scale=(2048, 512), ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size=crop_size, pad_val=0, seg_pad_val=255),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_semantic_seg']),
]
# Test protocol = the official one (cgrseg.runner.protocols): single scale, no flip ('whole' inference
# on the short side resized to 512); the official file leaves its img_ratios line commented out.
test_protocol_source = ('nizhenliang/CGRSeg@85d5a92 local_configs/_base_/datasets/ade20k.py, test_pipeline: '
                        'single scale (img_ratios commented out), flip=False, Pad(size_divisor=32)')
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
    samples_per_gpu=4,   # official: 4 per GPU on 4 GPUs = batch 16
    workers_per_gpu=8,   # official; `cgrseg train` caps it at the machine's CPU count
    train=dict(
        type=dataset_type, data_root=data_root,
        img_dir='images/training', ann_dir='annotations/training',
        pipeline=train_pipeline),
    val=dict(
        type=dataset_type, data_root=data_root,
        img_dir='images/validation', ann_dir='annotations/validation',
        pipeline=test_pipeline),
    test=dict(
        type=dataset_type, data_root=data_root,
        img_dir='images/validation', ann_dir='annotations/validation',
        pipeline=test_pipeline))
