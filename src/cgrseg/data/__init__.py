"""Datasets: download the official archives, verify them, convert them to mmseg 0.x layouts, and
make small synthetic archives in the same formats (``cgrseg synth|download|prepare``)."""

DATASETS = ('ade20k', 'coco_stuff10k', 'pascal_context')
