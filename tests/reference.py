"""Access to ../shared/reference: the official implementation's key lists and outputs."""
import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get('CGRSEG_REFERENCE', REPO.parent / 'shared' / 'reference'))
VARIANTS = ('t', 'b', 'l')


def reference_file(name):
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f'reference material not found: {path} (set CGRSEG_REFERENCE)')
    return path


def weights_module():
    spec = importlib.util.spec_from_file_location('reference_weights', reference_file('weights.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ade20k_config(variant):
    return REPO / 'configs' / 'cgrseg' / f'cgrseg-{variant}_ade20k_160k.py'
