"""Build a segmentor from an mmseg config file for inference and measurement."""
from pathlib import Path

from cgrseg.cli import CLIError


def load_config(config):
    from mmcv import Config
    path = Path(config)
    if not path.is_file():
        raise CLIError(f'{path}: config file not found')
    try:
        return Config.fromfile(str(path))
    except Exception as err:  # mmcv raises many kinds on a broken config
        raise CLIError(f'{path}: cannot read config: {err}') from err


def build_model(config, num_classes=None):
    """The config's ``EncoderDecoder`` with SyncBN reverted to BN (single process), not initialised.

    ``config`` is a path or an ``mmcv.Config``.
    """
    from mmcv.cnn.utils import revert_sync_batchnorm
    from mmseg.models import build_segmentor
    import cgrseg.models  # noqa: F401  (registry)

    cfg = config if not isinstance(config, (str, Path)) else load_config(config)
    model_cfg = cfg.model.copy()
    model_cfg.pretrained = None
    model_cfg.train_cfg = None
    if num_classes is not None:
        model_cfg.decode_head.num_classes = num_classes
    return revert_sync_batchnorm(build_segmentor(model_cfg))
