# CGRSeg optimisation schedule for ADE20K.
# Source: official CGRSeg configs (nizhenliang/CGRSeg, local_configs/cgrseg/cgrseg-*_ade20k_160k.py),
# which override the mmseg 160k SGD schedule with AdamW + poly(power 1.0) + linear warm-up.
optimizer = dict(
    type='AdamW', lr=0.00012, betas=(0.9, 0.999), weight_decay=0.01,
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.),
        'head': dict(lr_mult=10.),       # decode head learns 10x faster than the backbone
        'norm': dict(decay_mult=0.)}))
optimizer_config = dict()
lr_config = dict(
    policy='poly', warmup='linear', warmup_iters=1500, warmup_ratio=1e-6,
    power=1.0, min_lr=0.0, by_epoch=False)
# 160k iterations: official config (mmseg schedule_160k).
runner = dict(type='IterBasedRunner', max_iters=160000)
# Evaluation every 4000 iterations: official config.
evaluation = dict(interval=4000, metric='mIoU', pre_eval=True)
# Checkpoints: our choice. The official config inherits interval=160000 (one checkpoint at the end);
# we save every 4000 iterations (aligned with evaluation) so a preempted job loses at most 4000
# iterations, and keep the newest 3 to bound disk use. mmcv also writes latest.pth -> newest one.
checkpoint_config = dict(by_epoch=False, interval=4000, max_keep_ckpts=3)
