custom_imports = dict(imports=['cgrseg.models'], allow_failed_imports=False)
# CGRSeg-B (EfficientFormerV2-S2) on ADE20K: 150 classes, 160k iterations, 512x512 crops.
# Where the values come from (each base file cites its sources line by line):
#   model    ../_base_/models/cgrseg-b.py                 official CGRSeg-B config
#   data     ../_base_/datasets/ade20k.py                 mmseg 0.30 ade20k base (+ official test Pad/32)
#   schedule ../_base_/schedules/adamw_poly_160k.py       official CGRSeg ADE20K config
#   runtime  ../_base_/default_runtime.py                 mmseg 0.30 base + official DDP flag
# Paper number it reproduces: ADE20K val, single scale.
_base_ = [
    '../_base_/models/cgrseg-b.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/adamw_poly_160k.py',
    '../_base_/default_runtime.py',
]
# Read by `cgrseg evaluate` and the workflow; ignored by mmseg.
experiment = dict(model='cgrseg-b', variant='b', dataset='ade20k', paper_mode='ss')
