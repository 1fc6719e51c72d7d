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
