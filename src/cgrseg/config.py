"""Loading an mmseg config file: the one entry point for train, evaluate, measure and the model builder."""
from pathlib import Path

from cgrseg.errors import CGRSegError


def first_line(err):
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def load_config(path, options=None):
    """``Config.fromfile`` plus ``--cfg-options``; importing the config imports cgrseg's models."""
    from mmcv import Config
    path = Path(path)
    if not path.is_file():
        raise CGRSegError(f'{path}: no such config file')
    try:
        cfg = Config.fromfile(str(path))
    except Exception as err:  # syntax errors, missing bases, failed custom_imports
        raise CGRSegError(f'{path}: cannot load config: {first_line(err)}') from err
    if options:
        try:
            cfg.merge_from_dict(options)
        except Exception as err:
            raise CGRSegError(f'{path}: bad --cfg-options {options}: {first_line(err)}') from err
    return cfg
