"""Training and evaluation of CGRSeg configs through mmseg 0.x (``cgrseg train`` / ``cgrseg evaluate``).

``config`` holds the config rewrites both commands share (data root, crop size, schedule length,
test-time augmentation); ``hooks`` the mmcv hooks training adds (resume on any device, stop on a
non-finite loss); ``provenance`` what an evaluation records about where its number came from.
"""
