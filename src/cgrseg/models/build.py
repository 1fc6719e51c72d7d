"""Build a segmentor from an mmseg config for inference and measurement."""
from pathlib import Path

from cgrseg.config import load_config


def build_model(config):
    """The config's ``EncoderDecoder`` with SyncBN reverted to BN (single process), not initialised.

    ``config`` is a path or an ``mmcv.Config``; the config itself is not changed.
    """
    from mmcv.cnn.utils import revert_sync_batchnorm
    from mmseg.models import build_segmentor
    import cgrseg.models  # noqa: F401  (registry)

    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    model_cfg = cfg.model.copy()
    model_cfg.pretrained = None
    model_cfg.train_cfg = None
    return revert_sync_batchnorm(build_segmentor(model_cfg))
