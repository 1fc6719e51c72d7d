"""EfficientFormerV2 attention for dense prediction (the segmentation variant CGRSeg uses).

The relative-position bias table is sized for a 512x512 input (``resolution``); at run time the
gathered N0 x N0 bias matrix is resized bicubically to the actual N x N attention size, exactly as
the official implementation does (it resizes the bias *matrix*, not a spatial grid).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer


def conv_norm(in_ch, out_ch, norm_cfg, **conv_kwargs):
    """Conv2d followed by a norm layer, as an ``nn.Sequential`` (state-dict keys ``0.*``/``1.*``)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, **conv_kwargs), build_norm_layer(norm_cfg, out_ch)[1])


def bias_index(query_res, key_res, step):
    """Index of the relative-offset bias for every (query, key) pair.

    Offsets ``(|step*qy - ky|, |step*qx - kx|)`` are numbered in order of first appearance while
    iterating queries then keys row-major: the numbering of the official checkpoints.
    Returns ``(index[Nq, Nk], number_of_offsets)``.
    """
    qy, qx = np.divmod(np.arange(query_res * query_res), query_res)
    ky, kx = np.divmod(np.arange(key_res * key_res), key_res)
    dy = np.abs(step * qy[:, None] - ky[None, :])
    dx = np.abs(step * qx[:, None] - kx[None, :])
    code = (dy * (key_res * step + 1) + dx).ravel()  # unique integer per offset pair
    uniq, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind='stable')] = np.arange(len(uniq))
    return torch.from_numpy(rank[inverse].reshape(len(qy), len(ky))), len(uniq)


class RelPosAttention(nn.Module):
    """Base of the attention modules: head sizes, the learned bias table, its index and resizing."""

    def _init_heads(self, num_heads, key_dim, attn_ratio):
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim ** -0.5
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads

    def _init_bias(self, num_heads, query_res, key_res, step, legacy_shape):
        idx, num_offsets = bias_index(query_res, key_res, step)
        # legacy ImageNet-resolution tables: unused, kept so official checkpoints load strictly
        self.register_buffer('attention_biases', torch.zeros(num_heads, legacy_shape[1]))
        self.register_buffer('attention_bias_idxs', torch.ones(*legacy_shape, dtype=torch.long))
        self.attention_biases_seg = nn.Parameter(torch.zeros(num_heads, num_offsets))
        self.register_buffer('attention_bias_idxs_seg', idx)
        self._bias_cache = None

    def bias(self, nq, nk):
        """Bias of shape (1, heads, nq, nk); cached in eval mode until the table changes."""
        table = self.attention_biases_seg
        key = (nq, nk, table._version, table.device, table.dtype)
        if not self.training and self._bias_cache is not None and self._bias_cache[0] == key:
            return self._bias_cache[1]
        bias = table[:, self.attention_bias_idxs_seg].unsqueeze(0)
        if bias.shape[-2:] != (nq, nk):  # same size is an exact identity for bicubic: skip it
            bias = F.interpolate(bias, size=(nq, nk), mode='bicubic', align_corners=False)
        if not self.training:
            self._bias_cache = (key, bias.detach())
        return bias

    def train(self, mode=True):
        self._bias_cache = None
        return super().train(mode)


class Attention4D(RelPosAttention):
    """Multi-head self-attention with talking heads and a local value branch (EfficientFormerV2).

    With ``stride`` the tokens are first reduced by a strided depthwise conv and the output is
    upsampled back (the stage-3 blocks of the 1/16 stage).
    """

    def __init__(self, dim, key_dim=32, num_heads=8, attn_ratio=4, resolution=7, act_layer=nn.GELU,
                 stride=None, norm_cfg=dict(type='BN')):
        super().__init__()
        self._init_heads(num_heads, key_dim, attn_ratio)
        if stride is not None:
            resolution = math.ceil(resolution / stride)
            self.stride_conv = conv_norm(dim, dim, norm_cfg, kernel_size=3, stride=stride, padding=1,
                                         groups=dim)
            self.upsample = nn.Upsample(scale_factor=stride, mode='bilinear', align_corners=False)
        else:
            self.stride_conv = None
            self.upsample = None
        self.resolution = resolution
        nh_kd = key_dim * num_heads
        self.q = conv_norm(dim, nh_kd, norm_cfg, kernel_size=1)
        self.k = conv_norm(dim, nh_kd, norm_cfg, kernel_size=1)
        self.v = conv_norm(dim, self.dh, norm_cfg, kernel_size=1)
        self.v_local = conv_norm(self.dh, self.dh, norm_cfg, kernel_size=3, padding=1, groups=self.dh)
        self.talking_head1 = nn.Conv2d(num_heads, num_heads, kernel_size=1)
        self.talking_head2 = nn.Conv2d(num_heads, num_heads, kernel_size=1)
        self.proj = nn.Sequential(act_layer(), nn.Conv2d(self.dh, dim, 1), build_norm_layer(norm_cfg, dim)[1])
        self._init_bias(num_heads, resolution, resolution, 1, legacy_shape=(49, 49))

    def forward(self, x):
        B = x.shape[0]
        if self.stride_conv is not None:
            x = self.stride_conv(x)
        H, W = x.shape[-2:]
        n = H * W
        q = self.q(x).reshape(B, self.num_heads, -1, n).transpose(2, 3)
        k = self.k(x).reshape(B, self.num_heads, -1, n)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(B, self.num_heads, -1, n).transpose(2, 3)

        attn = (q @ k) * self.scale + self.bias(n, n)
        attn = self.talking_head2(self.talking_head1(attn).softmax(dim=-1))
        out = (attn @ v).transpose(2, 3).reshape(B, self.dh, H, W) + v_local
        if self.upsample is not None:
            out = self.upsample(out)
        return self.proj(out)


class LGQuery(nn.Module):
    """Local-global query of the attention downsampling: strided depthwise conv + strided pooling."""

    def __init__(self, in_dim, out_dim, norm_cfg=dict(type='BN')):
        super().__init__()
        self.pool = nn.AvgPool2d(1, 2, 0)
        self.local = nn.Sequential(nn.Conv2d(in_dim, in_dim, kernel_size=3, stride=2, padding=1, groups=in_dim))
        self.proj = conv_norm(in_dim, out_dim, norm_cfg, kernel_size=1)

    def forward(self, x):
        return self.proj(self.local(x) + self.pool(x))


class Attention4DDownsample(RelPosAttention):
    """Attention that halves the resolution: queries from ``LGQuery``, keys/values at full size."""

    def __init__(self, dim, key_dim=16, num_heads=8, attn_ratio=4, resolution=7, out_dim=None,
                 act_layer=nn.GELU, norm_cfg=dict(type='BN')):
        super().__init__()
        self._init_heads(num_heads, key_dim, attn_ratio)
        out_dim = dim if out_dim is None else out_dim
        self.resolution = resolution
        self.resolution2 = math.ceil(resolution / 2)
        nh_kd = key_dim * num_heads
        self.q = LGQuery(dim, nh_kd, norm_cfg)
        self.k = conv_norm(dim, nh_kd, norm_cfg, kernel_size=1)
        self.v = conv_norm(dim, self.dh, norm_cfg, kernel_size=1)
        self.v_local = conv_norm(self.dh, self.dh, norm_cfg, kernel_size=3, stride=2, padding=1, groups=self.dh)
        self.proj = nn.Sequential(act_layer(), nn.Conv2d(self.dh, out_dim, 1),
                                  build_norm_layer(norm_cfg, out_dim)[1])
        step = math.ceil(self.resolution / self.resolution2)
        self._init_bias(num_heads, self.resolution2, resolution, step, legacy_shape=(49, 196))

    def forward(self, x):
        B, _, H, W = x.shape
        q = self.q(x)
        h2, w2 = q.shape[-2:]
        q = q.reshape(B, self.num_heads, -1, h2 * w2).transpose(2, 3)
        k = self.k(x).reshape(B, self.num_heads, -1, H * W)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(B, self.num_heads, -1, H * W).transpose(2, 3)

        attn = ((q @ k) * self.scale + self.bias(h2 * w2, H * W)).softmax(dim=-1)
        out = (attn @ v).transpose(2, 3).reshape(B, self.dh, h2, w2) + v_local
        return self.proj(out)

