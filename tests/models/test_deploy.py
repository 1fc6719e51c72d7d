"""Deploy mode (cgrseg.models.deploy): folded BatchNorms and scales, outputs equal to the unfused model."""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

pytest.importorskip('mmseg')

from cgrseg.models.build import build_model  # noqa: E402
from cgrseg.models.deploy import deploy, fold_bn_conv, remaining_batchnorms  # noqa: E402
from reference import ade20k_config  # noqa: E402

TOLERANCE = 1e-4  # relative to the largest output magnitude


def trained_like(variant, seed=0):
    """The variant with random BN statistics/affines and layer scales: at initialisation they are
    identities, and a wrong fold would go unnoticed."""
    model = build_model(ade20k_config(variant))
    gen = torch.Generator().manual_seed(seed)

    def rand(tensor, low, high):
        tensor.copy_(torch.rand(tensor.shape, generator=gen) * (high - low) + low)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                rand(module.running_mean, -0.5, 0.5)
                rand(module.running_var, 0.3, 2.0)
                rand(module.weight, 0.5, 1.5)
                rand(module.bias, -0.3, 0.3)
        for name, param in model.named_parameters():
            if 'layer_scale' in name or name.endswith('gamma'):
                rand(param, 0.2, 1.0)
    return model.eval()


def relative_error(out, ref):
    return ((out - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize('variant', ['t', 'b', 'l'])
def test_deploy_output_equals_the_unfused_model(variant):
    model = trained_like(variant)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.encode_decode(x, None)
        fused = deploy(model)
        out = fused.encode_decode(x, None)
        fused_cl = deploy(model, channels_last=True)
        out_cl = fused_cl.encode_decode(x.contiguous(memory_format=torch.channels_last), None)
        again = model.encode_decode(x, None)
    assert relative_error(out, ref) < TOLERANCE and relative_error(out_cl, ref) < TOLERANCE
    assert remaining_batchnorms(fused) == [] and remaining_batchnorms(fused_cl) == []
    assert not any(type(m) is torch.nn.Conv2d and m.kernel_size == (1, 1) and m.groups == 1 and m.stride == (1, 1)
                   for m in fused.modules())  # every 1x1 conv runs as a Pointwise matmul
    assert torch.equal(again, ref) and remaining_batchnorms(model)  # the original is untouched


@pytest.mark.parametrize('bug', ['variance without sqrt', 'layer scales dropped'])
def test_a_wrong_fold_fails_the_comparison(monkeypatch, bug):
    """Negative control: the comparison above catches a wrong fold (the trained-like statistics
    make every BN and scale matter)."""
    from cgrseg.models import deploy as D
    if bug == 'variance without sqrt':
        monkeypatch.setattr(D, 'bn_affine', lambda bn: (bn.weight / (bn.running_var + bn.eps),
                                                        bn.bias - bn.running_mean * bn.weight / (bn.running_var + bn.eps)))
    else:
        monkeypatch.setattr(D, 'scale_conv', lambda conv, factor: conv)
    model = trained_like('t')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(D.deploy(model).encode_decode(x, None), model.encode_decode(x, None)) > 100 * TOLERANCE


def test_mmcv_fuse_conv_bn_leaves_most_batchnorms():
    """Why deploy folds per module: mmcv's declaration-order fuse misses the Mlp's norm1/norm2 and
    the RCM norms (it is right where it folds, but folds a minority)."""
    import copy
    from mmcv.cnn import fuse_conv_bn
    model = trained_like('t')
    before = len(remaining_batchnorms(model))
    left = remaining_batchnorms(fuse_conv_bn(copy.deepcopy(model)))
    assert len(left) > before / 3
    assert any(name.endswith('mlp.norm1') for name in left) and any(name.endswith('.norm') for name in left)


@pytest.mark.parametrize('channels_last', [False, True])
def test_pointwise_is_the_1x1_conv_in_either_layout(channels_last):
    from cgrseg.models.deploy import Pointwise
    conv = torch.nn.Conv2d(6, 5, 1)
    x = torch.randn(2, 6, 7, 9)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = Pointwise(conv)(x)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.allclose(out, conv(x), rtol=1e-5, atol=1e-6)
    assert not Pointwise.applies(torch.nn.Conv2d(6, 5, 1, stride=2))
    assert not Pointwise.applies(torch.nn.Conv2d(6, 6, 1, groups=2))


def test_a_bn_before_a_padded_conv_is_not_folded():
    bn, conv = torch.nn.BatchNorm2d(4).eval(), torch.nn.Conv2d(4, 4, 3, padding=1)
    with pytest.raises(ValueError, match='1x1'):
        fold_bn_conv(bn, conv)


def test_deploy_needs_eval_mode_and_refuses_training():
    model = build_model(ade20k_config('t'))
    with pytest.raises(ValueError, match=r'^deploy mode folds running statistics: call model\.eval\(\) first$'):
        deploy(model.train())
    fused = deploy(model.eval())
    assert fused.eval() is fused and not any(m.training for m in fused.modules())  # allowed, stays eval
    with pytest.raises(RuntimeError, match=r'^a deploy-mode model is for inference only \(its BatchNorms are folded\)$'):
        fused.train()
