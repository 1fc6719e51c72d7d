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


@pytest.mark.parametrize('device, dtype', [('meta', torch.float16), ('cpu', torch.float64)])
def test_folded_parameters_keep_the_convs_device_and_dtype_and_need_no_grad(device, dtype):
    """A bias-free conv gets a zero bias on its own device and in its own dtype (a half model stays
    half, a model on a GPU stays there; 'meta' stands in for a device other than the CPU here)."""
    conv = torch.nn.Conv2d(4, 6, 1, bias=False, device=device, dtype=dtype)
    bn_out = torch.nn.BatchNorm2d(6, device=device, dtype=dtype).eval()
    bn_in = torch.nn.BatchNorm2d(4, device=device, dtype=dtype).eval()
    for folded in (D.fold_conv_bn(conv, bn_out), D.fold_bn_conv(bn_in, conv), D.scale_conv(conv, 0.5),
                   D.scale_conv(conv, torch.ones(6, 1, 1, dtype=torch.float64, device=device)), D.Pointwise(conv)):
        for name, p in folded.named_parameters():
            assert (p.device.type, p.dtype, p.requires_grad) == (device, dtype, False), (type(folded), name)


@pytest.mark.parametrize('conv, why', [
    (torch.nn.Conv2d(4, 4, 1, groups=2), 'grouped'),
    (torch.nn.Conv2d(4, 4, 3), 'a 3x3 kernel, even unpadded'),
    (torch.nn.Conv2d(4, 4, 1, padding=1), 'a padded 1x1'),
])
def test_a_bn_folds_into_a_following_conv_only_when_it_is_pointwise(conv, why):
    with pytest.raises(ValueError, match=r'^a BatchNorm folds into the following conv only when it is 1x1, '
                                         r'ungrouped and unpadded$'):
        D.fold_bn_conv(torch.nn.BatchNorm2d(4).eval(), conv)
    assert not D.Pointwise.applies(conv), why
    assert D.Pointwise.applies(torch.nn.Conv2d(4, 4, 1))


def _random_statistics(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, _BatchNorm)):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
            bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=gen))
            bn.weight.copy_(torch.randn(bn.num_features, generator=gen))
    return module.eval()


@pytest.mark.parametrize('norm, order, folded', [
    ('BN', ('conv', 'norm', 'act'), True),
    ('BN', ('norm', 'conv', 'act'), False),    # a BN before the conv (of 4 channels, not 6)
    ('GN', ('conv', 'norm', 'act'), False),    # not a BatchNorm: no running statistics to fold
])
def test_a_conv_module_folds_only_its_conv_then_batchnorm(norm, order, folded):
    from mmcv.cnn import ConvModule
    cfg = dict(type=norm, num_groups=2) if norm == 'GN' else dict(type=norm)
    model = _random_statistics(torch.nn.Sequential(ConvModule(4, 6, 3, padding=1, norm_cfg=cfg, order=order)))
    x = torch.randn(2, 4, 5, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        out = D.deploy(model)(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    left = D.remaining_batchnorms(D.deploy(model))
    assert left == ([] if folded or norm == 'GN' else ['0.bn'])


def test_deploy_stores_weights_channels_last_only_when_asked():
    model = _random_statistics(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)))
    plain, nhwc = D.deploy(model), D.deploy(model, channels_last=True)
    assert plain[0].weight.is_contiguous() and not plain[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc[0].weight.is_contiguous(memory_format=torch.channels_last) and not nhwc[0].weight.is_contiguous()
    assert not any(p.requires_grad for m in (plain, nhwc) for p in m.parameters())
    assert all(p.requires_grad for p in model.parameters())   # the original is a copy's source, untouched


def test_pointwise_keeps_a_strided_plain_input_in_the_plain_layout():
    conv = torch.nn.Conv2d(6, 5, 1)
    x = torch.randn(2, 6, 7, 18)[..., ::2]   # neither contiguous nor channels-last
    out = D.Pointwise(conv)(x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-6)
