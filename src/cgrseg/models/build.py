"""Build a segmentor from an mmseg config for inference and measurement."""
from pathlib import Path

from cgrseg.mmseg_config import MODEL, first_line, load_config
from cgrseg.errors import CGRSegError


def build_model(config):
    """The config's ``EncoderDecoder`` with SyncBN reverted to BN (single process), not initialised.

    ``config`` is a path or an ``mmcv.Config``; the config itself is not changed.
    """
    from mmcv.cnn.utils import revert_sync_batchnorm
    from mmseg.models import build_segmentor
    import cgrseg.models  # noqa: F401  (registry)

    cfg = load_config(config, needs=MODEL) if isinstance(config, (str, Path)) else config
    model_cfg = cfg.model.copy()
    model_cfg.pretrained = None
    model_cfg.train_cfg = None
    try:
        return revert_sync_batchnorm(build_segmentor(model_cfg))
    except (TypeError, ValueError, KeyError, AssertionError) as err:  # arguments the model refuses
        raise CGRSegError(f'{cfg.filename}: cannot build the model: {first_line(err)}') from None
