# Runtime shared by all CGRSeg runs (mmseg 0.x).
# Source: mmseg 0.30 configs/_base_/default_runtime.py (identical in the official CGRSeg repo), plus
# find_unused_parameters from the official CGRSeg configs (local_configs/cgrseg/*.py).
log_config = dict(
    interval=50,
    hooks=[dict(type='TextLoggerHook', by_epoch=False)])
dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
cudnn_benchmark = True
# Official CGRSeg configs: DDP must tolerate parameters that get no gradient in a step.
find_unused_parameters = True
# The authors' images per GPU (official README/configs: 4 GPUs x samples_per_gpu=4, SyncBN). SyncBN
# layers normalise over all 16 images, the head's plain nn.BatchNorm2d layers (RCM norm, RCA excite)
# over each GPU's 4. `cgrseg train` keeps that on any GPU count: a process with more than bn_group
# images normalises those layers per group of bn_group (1 x 16, 2 x 8, 4 x 4 train alike; None: over
# the process's whole batch). Source: our reading of the official code; docs/training.md.
bn_group = 4
