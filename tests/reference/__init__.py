"""The official CGRSeg implementation's evidence, kept in this folder (see README.md here).

- ``cgrseg-{t,b,l}_ade20k.keys.tsv``: the official segmentor's ``state_dict()`` as rows
  ``key<TAB>shape<TAB>dtype`` (shape ``AxBxC``, empty for a scalar), in order;
- ``cgrseg-{t,b,l}_ade20k.seed0.npz``: its four backbone outputs and head logits for the weights
  ``official_weights(rows, 0)`` and the input ``official_input((1, 3, 256, 256), 1)``;
- ``SHA256SUMS``: the digests the files were copied with.

The weights are not shipped: both sides draw them from one seeded generator in key-list order, by
the rule the reference was made with (``official_weights``). A missing or altered file raises
(a test failure), it never skips.
"""
import hashlib
import math
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VARIANTS = ('t', 'b', 'l')
BACKBONE_OF = {'t': 's1', 'b': 's2', 'l': 'l'}  # CGRSeg variant -> EfficientFormerV2 arch
FLOATS = ('float16', 'float32', 'float64')


def _digests():
    lines = (HERE / 'SHA256SUMS').read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def reference_file(name):
    """Path of a reference file, checked against SHA256SUMS; raises if it is missing or altered."""
    path = HERE / name
    if not path.is_file():
        raise FileNotFoundError(f'reference file missing from the repository: {path}')
    expected = _digests().get(name)
    if expected is None:
        raise FileNotFoundError(f'{name} is not listed in {HERE / "SHA256SUMS"}')
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise AssertionError(f'{path}: sha256 {actual} differs from SHA256SUMS ({expected})')
    return path


def official_keys(variant):
    """[(key, shape tuple, dtype name)] of the official CGRSeg-{variant} ADE20K state dict."""
    return read_keys(reference_file(f'cgrseg-{variant}_ade20k.keys.tsv'))


def read_keys(path):
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith('#'):
            continue
        key, shape, dtype = line.split('\t')
        rows.append((key, tuple(int(n) for n in shape.split('x')) if shape else (), dtype))
    return rows


def official_outputs(variant):
    import numpy as np
    with np.load(reference_file(f'cgrseg-{variant}_ade20k.seed0.npz')) as npz:
        return {name: npz[name] for name in npz.files}


def _scaled(leaf, shape, draw):
    """Map a standard-normal draw to a plausible value for the tensor's role."""
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    if leaf == 'running_var':
        return 0.5 + 0.5 * draw.abs()      # positive variances
    if leaf == 'running_mean':
        return 0.1 * draw
    if leaf == 'weight':                   # norm scales and 1x1 depthwise kernels sit around 1
        return 1.0 + 0.1 * draw if fan_in == 1 else draw / math.sqrt(fan_in)
    return 0.1 * draw                      # biases, layer scales, attention-bias tables


def official_weights(rows, seed):
    """Deterministic weights for every floating-point row, drawn in row order from one generator.

    Each tensor takes ``randn(shape)`` in float64 (rounded to float32) from a ``torch.Generator``
    seeded with ``seed``, then ``_scaled``; integer rows (bias indices, ``num_batches_tracked``)
    draw nothing and are left to the model.
    """
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key, shape, dtype in rows:
        if dtype not in FLOATS:
            continue
        draw = torch.randn(shape, generator=generator, dtype=torch.float64).float()
        weights[key] = _scaled(key.rsplit('.', 1)[-1], shape, draw)
    return weights


def official_state_dict(rows, seed):
    """A complete state dict with the official names, shapes and dtypes: ``official_weights`` plus
    zero-filled integer tensors (their values are not under test where this is used)."""
    state = official_weights(rows, seed)
    for key, shape, dtype in rows:
        if key not in state:
            state[key] = torch.zeros(shape, dtype=getattr(torch, dtype))
    return {key: state[key] for key, _, _ in rows}


def official_input(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64).float()


def ade20k_config(variant):
    return REPO / 'configs' / 'cgrseg' / f'cgrseg-{variant}_ade20k_160k.py'


def weights_module():
    """The generator under the names of the shared folder's ``weights.py``, for tests written
    against it: ``read_keys(path)``, ``make_weights(rows, seed)``, ``make_input(shape, seed)``."""
    from types import SimpleNamespace
    return SimpleNamespace(read_keys=read_keys, make_weights=official_weights, make_input=official_input)
