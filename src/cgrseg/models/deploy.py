"""Deploy mode: the same segmentor rewritten for inference, outputs equal within float rounding.

``deploy(model)`` returns a copy in which

- every eval-mode BatchNorm is folded into the convolution it follows (or, for the RCM ``norm``,
  precedes: a BN before a 1x1 conv folds into that conv's input channels),
- the layer scales (EfficientFormerV2 ``layer_scale_*``, RCM ``gamma``) and the attention
  ``scale`` are folded into the convolution that produces the tensor they multiply,
- every 1x1 convolution runs as one matrix product (``Pointwise``): on a channels-last tensor a
  GEMM over the pixels with no layout copy, otherwise a batched matmul over the channels (PyTorch's
  CPU conv takes a slower im2col path for 1x1 kernels at batch 1 on one thread),
- optionally the weights are stored channels-last.

Folding is explicit, per module of Fig. 2, not by the declaration order of the children that
mmcv's ``fuse_conv_bn`` follows: EfficientFormerV2's ``Mlp`` declares fc1, fc2, mid, mid_norm, norm1,
norm2, and the RCM's BN comes before its conv, so that function leaves most BatchNorms unfolded
(tests/models/test_deploy.py counts them).
The original model is not changed; training the deployed copy is refused.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .attention import RelPosAttention
from .efficientformer_v2 import FFN, AttnFFN, Embedding, Mlp
from .rcm import RCM


def bn_affine(bn):
    """(scale, shift) with ``bn(x) == scale * x + shift`` per channel in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
        1 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
    return scale, shift


def _bias(conv):
    return conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, device=conv.weight.device,
                                                               dtype=conv.weight.dtype)


def _with(conv, weight, bias):
    """A copy of ``conv`` with new weight and bias (``conv`` itself may be shared, so never mutated)."""
    new = copy.copy(conv)
    new._parameters = dict(conv._parameters)
    new.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
    new.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return new


def fold_conv_bn(conv, bn):
    """``bn(conv(x))`` as one convolution."""
    scale, shift = bn_affine(bn)
    return _with(conv, conv.weight * scale.view(-1, 1, 1, 1), _bias(conv) * scale + shift)


def fold_bn_conv(bn, conv):
    """``conv(bn(x))`` as one convolution; only for 1x1, ungrouped convs (zero padding of a larger
    kernel would see the BN shift where the folded conv sees zeros)."""
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.padding != (0, 0):
        raise ValueError('a BatchNorm folds into the following conv only when it is 1x1, ungrouped and unpadded')
    scale, shift = bn_affine(bn)
    weight = conv.weight * scale.view(1, -1, 1, 1)
    bias = _bias(conv) + conv.weight.flatten(1) @ shift
    return _with(conv, weight, bias)


def scale_conv(conv, factor):
    """``factor * conv(x)`` as one convolution; ``factor`` is a scalar or one value per output channel."""
    factor = torch.as_tensor(factor, dtype=conv.weight.dtype, device=conv.weight.device).flatten()  # 1 broadcasts
    return _with(conv, conv.weight * factor.view(-1, 1, 1, 1), _bias(conv) * factor)


def _is_bn(module):
    return isinstance(module, _BatchNorm)


def _fold_sequential(seq):
    """Every (Conv2d, BatchNorm) pair of consecutive children: a Sequential runs them in order."""
    names = list(seq._modules)
    for a, b in zip(names, names[1:]):
        conv, bn = seq._modules[a], seq._modules[b]
        if isinstance(conv, nn.Conv2d) and _is_bn(bn):
            seq._modules[a] = fold_conv_bn(conv, bn)
            seq._modules[b] = nn.Identity()


def _fold_mlp(mlp):
    """EfficientFormerV2 Mlp: norm1(fc1), mid_norm(mid), norm2(fc2)."""
    for conv, bn in (('fc1', 'norm1'), ('mid', 'mid_norm'), ('fc2', 'norm2')):
        setattr(mlp, conv, fold_conv_bn(getattr(mlp, conv), getattr(mlp, bn)))
        setattr(mlp, bn, nn.Identity())


def _fold_embedding(emb):
    conv, bn = ('conv', 'bn') if emb.asub else ('proj', 'norm')
    setattr(emb, conv, fold_conv_bn(getattr(emb, conv), getattr(emb, bn)))
    setattr(emb, bn, nn.Identity())


def _fold_conv_module(module):
    """mmcv ConvModule in its default order conv -> norm -> act."""
    if module.with_norm and tuple(module.order[:2]) == ('conv', 'norm') and _is_bn(module.norm):
        module.conv = fold_conv_bn(module.conv, module.norm)
        setattr(module, module.norm_name, nn.Identity())


class _DeployFFN(FFN):
    """FFN with layer_scale_2 folded into the Mlp's last conv."""

    def forward(self, x):
        return x + self.mlp(x)


class _DeployAttnFFN(AttnFFN):
    """AttnFFN with both layer scales folded (into the attention's and the Mlp's last convs)."""

    def forward(self, x):
        x = x + self.token_mixer(x)
        return x + self.mlp(x)


class _DeployRCM(RCM):
    """RCM with ``norm`` folded into mlp.fc1 and ``gamma`` into mlp.fc2."""

    def forward(self, x):
        return self.mlp(self.token_mixer(x)) + x


def _fold_layer_scales(module):
    if isinstance(module, FFN):
        module.mlp.fc2 = scale_conv(module.mlp.fc2, module.layer_scale_2)
        module.__class__ = _DeployFFN
    elif isinstance(module, AttnFFN):
        module.token_mixer.proj[1] = scale_conv(module.token_mixer.proj[1], module.layer_scale_1)
        module.mlp.fc2 = scale_conv(module.mlp.fc2, module.layer_scale_2)
        module.__class__ = _DeployAttnFFN
    elif isinstance(module, RCM):
        module.mlp.fc1 = fold_bn_conv(module.norm, module.mlp.fc1)
        module.norm = nn.Identity()
        module.mlp.fc2 = scale_conv(module.mlp.fc2, module.gamma)
        module.__class__ = _DeployRCM


def _fold_attention_scale(attn):
    """``(q @ k) * scale`` == ``(scale * q) @ k``: fold the scale into the query's last conv."""
    q = attn.q.proj if hasattr(attn.q, 'proj') else attn.q  # Attention4DDownsample: LGQuery.proj
    q[0] = scale_conv(q[0], attn.scale)
    attn.scale = 1.0


def fold(model):
    """Fold BatchNorms, layer scales and attention scales of ``model`` in place (eval mode only)."""
    from mmcv.cnn import ConvModule
    if model.training:
        raise ValueError('deploy mode folds running statistics: call model.eval() first')
    modules = list(model.modules())
    for module in modules:  # BN folds first: the layer scales fold into the already folded convs
        if isinstance(module, Mlp):
            _fold_mlp(module)
        elif isinstance(module, Embedding):
            _fold_embedding(module)
        elif isinstance(module, ConvModule):
            _fold_conv_module(module)
        elif type(module) is nn.Sequential:
            _fold_sequential(module)
    for module in modules:
        _fold_layer_scales(module)
        if isinstance(module, RelPosAttention):
            _fold_attention_scale(module)
    return model


class Pointwise(nn.Module):
    """A 1x1, stride-1, ungrouped convolution as a matrix product, in whichever layout ``x`` has."""

    def __init__(self, conv):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().flatten(1).clone(), requires_grad=False)
        self.bias = nn.Parameter(_bias(conv).detach().clone(), requires_grad=False)

    @staticmethod
    def applies(conv):
        return (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
                and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1)

    def forward(self, x):
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # NHWC memory: a GEMM over pixels; the result is channels-last again, without a copy
            return F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)
        B, C, H, W = x.shape
        out = torch.matmul(self.weight, x.reshape(B, C, H * W)) + self.bias.view(1, -1, 1)
        return out.view(B, -1, H, W)


def _pointwise(model):
    for module in list(model.modules()):
        for name, child in list(module._modules.items()):
            if child is not None and Pointwise.applies(child):
                module._modules[name] = Pointwise(child)


def _refuse_training(self, mode=True):
    if mode:
        raise RuntimeError('a deploy-mode model is for inference only (its BatchNorms are folded)')
    return nn.Module.train(self, False)


def deploy(model, channels_last=False):
    """A folded inference copy of the segmentor ``model`` (which must be in eval mode).

    ``channels_last`` stores the convolution weights channels-last; feed it channels-last input
    for the convolutions to run in that layout (``cgrseg.measure.throughput`` does).
    """
    model = fold(copy.deepcopy(model))
    _pointwise(model)
    for p in model.parameters():
        p.requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train = _refuse_training.__get__(model)
    return model


def remaining_batchnorms(model):
    """Names of BatchNorm modules left in ``model`` (none after ``deploy``)."""
    return [name for name, m in model.named_modules() if _is_bn(m)]
