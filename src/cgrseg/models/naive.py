"""A naive forward of the same model: the yardstick for our optimisations.

``naive_bias_index`` numbers offsets by the literal first-appearance loop of the EfficientFormerV2
definition, and ``naive_mode(model)`` makes every attention gather and resize its bias on every
call (no cache, no skip of same-size resizes). Outputs must equal the optimised path.
"""
import contextlib
import itertools

import torch
import torch.nn.functional as F

from .attention import RelPosAttention


def naive_bias_index(query_res, key_res, step):
    offsets, idxs = {}, []
    for qy, qx in itertools.product(range(query_res), range(query_res)):
        for ky, kx in itertools.product(range(key_res), range(key_res)):
            offset = (abs(qy * step - ky), abs(qx * step - kx))
            idxs.append(offsets.setdefault(offset, len(offsets)))
    return torch.tensor(idxs).view(query_res ** 2, key_res ** 2), len(offsets)


def _naive_bias(self, nq, nk):
    bias = self.attention_biases_seg[:, self.attention_bias_idxs_seg].unsqueeze(0)
    return F.interpolate(bias, size=(nq, nk), mode='bicubic', align_corners=False)


@contextlib.contextmanager
def naive_mode():
    """Within the block, every RelPosAttention module computes its bias the naive way."""
    optimised = RelPosAttention.bias
    RelPosAttention.bias = _naive_bias
    try:
        yield
    finally:
        RelPosAttention.bias = optimised
