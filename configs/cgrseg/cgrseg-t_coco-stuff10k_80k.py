custom_imports = dict(imports=['cgrseg.models'], allow_failed_imports=False)
# CGRSeg-T (EfficientFormerV2-S1) on COCO-Stuff-10k: 171 classes, 80k iterations, 512x512 crops.
# Where the values come from (each base file cites its sources line by line):
#   model    ../_base_/models/cgrseg-t.py                 official CGRSeg-T config
#   data     ../_base_/datasets/coco-stuff10k.py          mmseg 0.30 base; 6-scale test: official base
#   schedule ../_base_/schedules/adamw_poly_80k.py        official ADE20K recipe, 80k iters (assumption)
#   runtime  ../_base_/default_runtime.py                 mmseg 0.30 base + official DDP flag
# Paper number it reproduces: COCO-Stuff-10k test, 6 scales without flip (the official protocol;
# `cgrseg evaluate` also records single scale).
_base_ = [
    '../_base_/models/cgrseg-t.py',
    '../_base_/datasets/coco-stuff10k.py',
    '../_base_/schedules/adamw_poly_80k.py',
    '../_base_/default_runtime.py',
]
model = dict(decode_head=dict(num_classes=171))  # classes of the data set
# Read by `cgrseg evaluate` and the workflow; ignored by mmseg.
experiment = dict(model='cgrseg-t', variant='t', dataset='coco_stuff10k', paper_mode='ms')
