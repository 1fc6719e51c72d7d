"""Our training step against the mirror of the official computation (cgrseg.models.mirror).

The benchmark (benchmarks/train_speed.py) times the two; these tests make sure a speed-up can never
change the optimisation: same loss, same logged accuracy, same gradients, in float64.
"""
import copy

import pytest
import torch

from cgrseg.models import mirror
from cgrseg.models.build import build_model
from reference import ade20k_config, official_keys, official_weights

pytestmark = pytest.mark.slow   # float64 training steps of CGRSeg-T: minutes on a loaded 2-core machine

TOLERANCE = 1e-10   # float64: rounding of differently ordered ops; any changed op is far above it
CROP, BATCH = 64, 4  # batch 4: one group of the head's GroupedBatchNorm2d, as in the official runs


@pytest.fixture(scope='module')
def model():
    model = build_model(ade20k_config('t'))
    model.load_state_dict(official_weights(official_keys('t'), seed=0), strict=False)
    return model.double().train()


def batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    img = torch.randn(BATCH, 3, CROP, CROP, generator=gen, dtype=torch.float64)
    label = torch.randint(0, 150, (BATCH, 1, CROP, CROP), generator=gen)
    label[:, :, :8] = 255                                    # ignored pixels, as padding gives
    metas = [dict(img_shape=(CROP, CROP, 3), ori_shape=(CROP, CROP, 3), pad_shape=(CROP, CROP, 3),
                  flip=False)] * BATCH
    return img, metas, label


def step(model):
    """Loss, logged values, gradients and BN statistics after one training step (the head's dropout
    drawing the same mask on both sides)."""
    torch.manual_seed(0)
    model.zero_grad()
    losses = model.forward_train(*batch())
    loss, log = model._parse_losses(losses)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    buffers = {n: b.clone() for n, b in model.named_buffers() if b.is_floating_point()}
    return loss.detach(), log, grads, buffers


def max_rel_diff(a, b):
    """Largest per-tensor |a - b| / |b|; tensors whose exact value is ~0 (a conv bias before a batch
    norm has a zero gradient, up to rounding) are measured against 1e-6 of the largest norm."""
    floor = 1e-4 * max(v.norm().item() for v in b.values())
    return max(((a[k] - b[k]).norm() / max(b[k].norm().item(), floor)).item() for k in b)


@pytest.fixture(scope='module')
def ours(model):
    return step(copy.deepcopy(model))                       # a copy: the step moves BN statistics


def compare(ours, model, mirror_model):
    loss, log, grads, buffers = ours
    m_loss, m_log, m_grads, m_buffers = step(mirror_model)
    assert grads.keys() == m_grads.keys() and len(grads) == len(list(model.parameters()))
    return (abs(loss - m_loss).item() / abs(m_loss).item(), abs(log['decode.acc_seg'] - m_log['decode.acc_seg']),
            max_rel_diff(grads, m_grads), max_rel_diff(buffers, m_buffers))


def test_training_step_equals_the_official_mirror(model, ours):
    loss, acc, grads, buffers = compare(ours, model, mirror.official_mirror(model))
    assert loss < TOLERANCE and grads < TOLERANCE and buffers < TOLERANCE
    assert acc < 1e-9                                        # mmseg's top-k accuracy, logged


def test_the_mirror_computes_its_own_way(model):
    twin = mirror.official_mirror(model)
    assert all(type(m).__name__.startswith('Mirror') for m in twin.modules()
               if type(m) in mirror.MIRRORS.values() or type(m) in mirror.MIRRORS)
    assert type(twin.decode_head) is mirror.MirrorCGRSegHead and type(model.decode_head) is not type(twin.decode_head)


def _bilinear_bias(attn, size):
    bias = attn.attention_biases_seg[:, attn.attention_bias_idxs_seg]
    return torch.nn.functional.interpolate(bias.unsqueeze(0), size=size, mode='bilinear')


def _rca_sum(self, x):
    return self.dwconv_hw(x) + self.excite(self.pool_h(x) + self.pool_w(x))


@pytest.mark.parametrize('patch', [
    ('_gathered_bias', _bilinear_bias),                      # the bias resized bilinearly, not bicubically
    ('MirrorRCA.forward', _rca_sum),                         # RCA adds its branches instead of gating
])
def test_a_changed_op_is_caught(model, ours, monkeypatch, patch):
    name, replacement = patch
    owner, attr = (mirror, name) if '.' not in name else (getattr(mirror, name.split('.')[0]), name.split('.')[1])
    monkeypatch.setattr(owner, attr, replacement)
    _, _, grads, _ = compare(ours, model, mirror.official_mirror(model))
    assert grads > 1e-6


def test_an_unknown_subclass_is_refused(model):
    odd = copy.deepcopy(model)
    odd.decode_head.__class__ = type('OddHead', (type(model.decode_head), ), {})
    odd.decode_head.__class__.__module__ = type(model.decode_head).__module__
    with pytest.raises(TypeError, match='no official mirror of OddHead'):
        mirror.official_mirror(odd)
