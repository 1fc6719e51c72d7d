"""Deploy folding where BatchNorm's eps matters: running variances of the order of eps.

tests/models/test_deploy.py draws variances in [0.3, 2], where eps = 1e-5 moves a scale by 1e-5 and a fold
that drops eps stays under its tolerance. Here every variance is eps * [0.5, 2] (and the BN weight
keeps the scale near 1, so activations stay finite), which makes eps half of each denominator.
"""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

pytest.importorskip('mmseg')

from cgrseg.models import deploy as D  # noqa: E402
from test_deploy import TOLERANCE, relative_error, trained_like  # noqa: E402


def near_eps_variances(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, _BatchNorm)):
            bn.running_var.copy_(bn.eps * (0.5 + 1.5 * torch.rand(bn.running_var.shape, generator=gen)))
            bn.weight.copy_(torch.sqrt(bn.running_var + bn.eps) * (0.5 + torch.rand(bn.weight.shape, generator=gen)))
    return model


@pytest.fixture(scope='module')
def small_variance_model():
    return near_eps_variances(trained_like('t'))


def test_deploy_keeps_eps_where_the_variances_are_tiny(small_variance_model):
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = small_variance_model.encode_decode(x, None)
        out = D.deploy(small_variance_model).encode_decode(x, None)
    assert torch.isfinite(ref).all()
    assert relative_error(out, ref) < TOLERANCE


def test_dropping_eps_fails_that_comparison(small_variance_model, monkeypatch):
    """Negative control: the fold without eps is far outside the tolerance on these statistics."""
    def without_eps(bn):
        scale = bn.weight / torch.sqrt(bn.running_var)
        return scale, bn.bias - bn.running_mean * scale

    monkeypatch.setattr(D, 'bn_affine', without_eps)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        error = relative_error(D.deploy(small_variance_model).encode_decode(x, None),
                               small_variance_model.encode_decode(x, None))
    assert error > 100 * TOLERANCE


@pytest.mark.parametrize('affine', [True, False])
def test_bn_affine_is_the_eval_batchnorm(affine):
    """``bn(x) == scale * x + shift``, with or without BN weights, against torch's own BatchNorm."""
    bn = torch.nn.BatchNorm2d(5, affine=affine, eps=1e-3).double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(5, generator=gen, dtype=torch.float64))
        bn.running_var.copy_(1e-3 * (0.5 + torch.rand(5, generator=gen, dtype=torch.float64)))
        if affine:
            bn.weight.copy_(torch.randn(5, generator=gen, dtype=torch.float64))
            bn.bias.copy_(torch.randn(5, generator=gen, dtype=torch.float64))
    x = torch.randn(2, 5, 3, 4, generator=gen, dtype=torch.float64)
    scale, shift = D.bn_affine(bn.eval())
    torch.testing.assert_close(scale.view(1, -1, 1, 1) * x + shift.view(1, -1, 1, 1), bn(x),
                               rtol=1e-12, atol=1e-12)


def test_each_fold_equals_the_modules_it_replaces():
    """fold_conv_bn, fold_bn_conv and scale_conv against the unfolded modules, variances near eps."""
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False).double()
    pointwise = torch.nn.Conv2d(4, 6, 1).double()
    bn_out, bn_in = torch.nn.BatchNorm2d(6).double().eval(), torch.nn.BatchNorm2d(4).double().eval()
    with torch.no_grad():
        for bn in (bn_out, bn_in):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen, dtype=torch.float64))
            bn.running_var.copy_(bn.eps * (0.5 + torch.rand(bn.num_features, generator=gen, dtype=torch.float64)))
            bn.weight.copy_(torch.randn(bn.num_features, generator=gen, dtype=torch.float64))
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen, dtype=torch.float64))
    x = torch.randn(2, 4, 5, 7, generator=gen, dtype=torch.float64)
    factor = torch.randn(6, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(D.fold_conv_bn(conv, bn_out)(x), bn_out(conv(x)), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(D.fold_bn_conv(bn_in, pointwise)(x), pointwise(bn_in(x)), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(D.scale_conv(pointwise, factor)(x), factor.view(1, -1, 1, 1) * pointwise(x),
                                   rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(D.scale_conv(conv, 0.5)(x), 0.5 * conv(x), rtol=1e-10, atol=1e-10)
    assert conv.bias is None and D.fold_conv_bn(conv, bn_out).bias is not None  # the original is untouched
