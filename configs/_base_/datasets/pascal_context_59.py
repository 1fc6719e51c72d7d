# Pascal Context, 59 classes (background ignored), 480x480 crops from images resized around 520.
# Source: mmseg 0.30 configs/_base_/datasets/pascal_context_59.py for training; the test pipeline is the
# official CGRSeg pascal_context_59 base: 6 scales (0.5-1.75) + flip, ResizeToMultiple(32) -- the
# paper reports Pascal Context as "MS". It is the official protocol of `cgrseg evaluate` (which also
# records single scale) and, as in the authors' runs, of the in-training evaluation.
# data_root: our prepare layout (`cgrseg prepare pascal_context`); `--data-root` replaces `data/prepared`.
dataset_type = 'PascalContextDataset59'
data_root = 'data/prepared/VOCdevkit/VOC2010'
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
img_scale = (520, 520)
crop_size = (480, 480)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),   # 0 = background -> ignored
    dict(type='Resize', img_scale=img_scale, ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size=crop_size, pad_val=0, seg_pad_val=255),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_semantic_seg']),
]
test_protocol_source = ('nizhenliang/CGRSeg@85d5a92 local_configs/_base_/datasets/pascal_context_59.py, '
                        'test_pipeline: img_ratios 0.5-1.75, flip=True, ResizeToMultiple(size_divisor=32)')
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=img_scale,
        img_ratios=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
        flip=True,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='ResizeToMultiple', size_divisor=32),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ]),
]
data = dict(
    samples_per_gpu=4,   # as ADE20K: 4 per GPU x 4 GPUs = 16 (assumption, see schedule)
    workers_per_gpu=4,   # mmseg base
    train=dict(
        type=dataset_type, data_root=data_root,
        img_dir='JPEGImages', ann_dir='SegmentationClassContext',
        split='ImageSets/SegmentationContext/train.txt',
        pipeline=train_pipeline),
    val=dict(
        type=dataset_type, data_root=data_root,
        img_dir='JPEGImages', ann_dir='SegmentationClassContext',
        split='ImageSets/SegmentationContext/val.txt',
        pipeline=test_pipeline),
    test=dict(
        type=dataset_type, data_root=data_root,
        img_dir='JPEGImages', ann_dir='SegmentationClassContext',
        split='ImageSets/SegmentationContext/val.txt',
        pipeline=test_pipeline))
