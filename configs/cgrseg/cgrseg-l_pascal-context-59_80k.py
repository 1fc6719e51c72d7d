custom_imports = dict(imports=['cgrseg.models'], allow_failed_imports=False)
# CGRSeg-L (EfficientFormerV2-L) on Pascal Context 59: 59 classes, 80k iterations, 480x480 crops.
# Where the values come from (each base file cites its sources line by line):
#   model    ../_base_/models/cgrseg-l.py                 official CGRSeg-L config
#   data     ../_base_/datasets/pascal_context_59.py      mmseg 0.30 base; MS+flip test: official base
#   schedule ../_base_/schedules/adamw_poly_80k.py        official ADE20K recipe, 80k iters (assumption)
#   runtime  ../_base_/default_runtime.py                 mmseg 0.30 base + official DDP flag
# Paper number it reproduces: Pascal Context 59 val, 6 scales + flip ("MS", the official protocol;
# `cgrseg evaluate` also records single scale).
_base_ = [
    '../_base_/models/cgrseg-l.py',
    '../_base_/datasets/pascal_context_59.py',
    '../_base_/schedules/adamw_poly_80k.py',
    '../_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=59))  # classes of the data set
# Read by `cgrseg evaluate` and the workflow; ignored by mmseg.
experiment = dict(model='cgrseg-l', variant='l', dataset='pascal_context', paper_mode='ms_flip')
