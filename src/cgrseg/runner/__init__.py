"""Training and evaluation of CGRSeg configs through mmseg 0.x (``cgrseg train`` / ``cgrseg evaluate``).

``config`` holds the config rewrites both commands share (data root, crop size, schedule length,
test-time augmentation); ``hooks`` the mmcv hook training adds (stop on a non-finite loss);
``provenance`` what an evaluation records about where its number came from. Surviving faults
(docs/robustness.md): ``iter_runner`` (atomic checkpoints, exact resume, preemption; built on
``checkpoints``, ``resume`` and ``preempt``), ``lock`` (one trainer per work dir) and ``workdir``
(a work dir is continued only by its own experiment).
"""
