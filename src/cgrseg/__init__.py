"""cgrseg: reproduce CGRSeg (Ni et al., ECCV 2024) end to end.

Importing the package registers the CGRSeg backbone and decode head in mmseg's registries,
so mmseg configs can use them (``custom_imports = dict(imports=['cgrseg'])``).
"""
__version__ = '0.1.0'

try:
    from . import models  # noqa: F401  (registers EfficientFormerV2 + CGRSeg head)
except ImportError as err:  # the data/table commands work without the mmseg stack
    if err.name not in ('mmcv', 'mmseg', 'torch'):
        raise
