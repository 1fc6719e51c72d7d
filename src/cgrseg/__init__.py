"""cgrseg: reproduce CGRSeg (Ni et al., ECCV 2024) end to end.

Importing the package is light (no torch, no mmseg), so the data and table commands start at once.
The model registers in mmseg's registries when ``cgrseg.models`` is imported, which is what our
configs ask for in mmseg's own way: ``custom_imports = dict(imports=['cgrseg.models'])``.
"""

__version__ = '0.1.0'
