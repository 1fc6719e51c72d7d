"""Datasets: download the official archives, verify them, convert them to mmseg 0.x layouts, and
make small synthetic archives in the same formats (``cgrseg synth|download|prepare``)."""

from cgrseg.layout import DATASETS  # noqa: F401
