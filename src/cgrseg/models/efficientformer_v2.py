"""EfficientFormerV2 backbone (Li et al., ICCV 2023), the feature-pyramid variant CGRSeg uses.

Four outputs at strides 4/8/16/32. Module names follow the official checkpoints
(``patch_embed``, ``network.{0..6}``), so ImageNet and CGRSeg checkpoints load strictly.
"""
import math

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmcv.runner import BaseModule

from .attention import Attention4D, Attention4DDownsample, conv_norm

# arch -> (widths, depths, MLP expansion ratio per block, attention blocks in stages 3-4)
ARCHS = {
    's0': ((32, 48, 96, 176), (2, 2, 6, 4),
           ((4, 4), (4, 4), (4, 3, 3, 3, 4, 4), (4, 3, 3, 4)), 2),
    's1': ((32, 48, 120, 224), (3, 3, 9, 6),
           ((4, 4, 4), (4, 4, 4), (4, 4, 3, 3, 3, 3, 4, 4, 4), (4, 4, 3, 3, 4, 4)), 2),
    's2': ((32, 64, 144, 288), (4, 4, 12, 8),
           ((4,) * 4, (4,) * 4, (4, 4, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4), (4, 4, 3, 3, 3, 3, 4, 4)), 4),
    'l': ((40, 80, 192, 384), (5, 5, 15, 10),
          ((4,) * 5, (4,) * 5, (4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4), (4, 4, 4, 3, 3, 3, 3, 4, 4, 4)), 6),
}
# drop-path rates of the official *_feat backbones
DROP_PATH = {'s0': 0.0, 's1': 0.0, 's2': 0.02, 'l': 0.1}


def stem(in_ch, out_ch, norm_cfg, act_layer):
    """Two stride-2 3x3 convs: 1/4 resolution."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch // 2, 3, stride=2, padding=1), build_norm_layer(norm_cfg, out_ch // 2)[1],
        act_layer(),
        nn.Conv2d(out_ch // 2, out_ch, 3, stride=2, padding=1), build_norm_layer(norm_cfg, out_ch)[1],
        act_layer())


class Mlp(nn.Module):
    """1x1 conv MLP with a depthwise 3x3 conv in the hidden layer, every conv batch-normed."""

    def __init__(self, dim, hidden, act_layer, norm_cfg, drop=0.):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)
        for fc in (self.fc1, self.fc2):
            nn.init.trunc_normal_(fc.weight, std=.02)
            nn.init.zeros_(fc.bias)
        self.mid = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.mid_norm = build_norm_layer(norm_cfg, hidden)[1]
        self.norm1 = build_norm_layer(norm_cfg, hidden)[1]
        self.norm2 = build_norm_layer(norm_cfg, dim)[1]

    def forward(self, x):
        x = self.act(self.norm1(self.fc1(x)))
        x = self.drop(self.act(self.mid_norm(self.mid(x))))
        return self.drop(self.norm2(self.fc2(x)))


def layer_scale(dim, value):
    return nn.Parameter(value * torch.ones(dim, 1, 1))


class FFN(nn.Module):
    """Convolutional block: x + s * Mlp(x)."""

    def __init__(self, dim, mlp_ratio, act_layer, norm_cfg, drop_path=0., ls_init=1e-5):
        super().__init__()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer, norm_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale_2 = layer_scale(dim, ls_init)

    def forward(self, x):
        return x + self.drop_path(self.layer_scale_2 * self.mlp(x))


class AttnFFN(nn.Module):
    """Attention block: x + s1 * Attention4D(x), then x + s2 * Mlp(x)."""

    def __init__(self, dim, mlp_ratio, act_layer, norm_cfg, drop_path=0., ls_init=1e-5, resolution=7,
                 stride=None):
        super().__init__()
        self.token_mixer = Attention4D(dim, resolution=resolution, act_layer=act_layer, stride=stride,
                                       norm_cfg=norm_cfg)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer, norm_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale_1 = layer_scale(dim, ls_init)
        self.layer_scale_2 = layer_scale(dim, ls_init)

    def forward(self, x):
        x = x + self.drop_path(self.layer_scale_1 * self.token_mixer(x))
        return x + self.drop_path(self.layer_scale_2 * self.mlp(x))


class Embedding(nn.Module):
    """Stride-2 downsampling between stages; from stage 3 on it adds an attention branch."""

    def __init__(self, in_ch, out_ch, norm_cfg, act_layer, resolution, asub=False):
        super().__init__()
        self.asub = asub
        if asub:
            self.attn = Attention4DDownsample(in_ch, out_dim=out_ch, resolution=resolution, act_layer=act_layer,
                                              norm_cfg=norm_cfg)
            self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
            self.bn = build_norm_layer(norm_cfg, out_ch)[1]
        else:
            self.proj = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
            self.norm = build_norm_layer(norm_cfg, out_ch)[1]

    def forward(self, x):
        if self.asub:
            return self.attn(x) + self.bn(self.conv(x))
        return self.norm(self.proj(x))


class EfficientFormerV2(BaseModule):
    """EfficientFormerV2-{S0,S1,S2,L} returning the four stage outputs (strides 4, 8, 16, 32).

    Args:
        arch: 's0', 's1', 's2' or 'l'.
        resolution: input size the attention-bias tables are built for (512 in CGRSeg); other
            input sizes resize the biases bicubically.
        drop_path_rate: stochastic depth; ``None`` takes the official value of the arch.
    """
    out_indices = (0, 2, 4, 6)

    def __init__(self, arch='s1', resolution=512, drop_path_rate=None, layer_scale_init_value=1e-5,
                 norm_cfg=dict(type='BN', requires_grad=True), act_layer=nn.GELU, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        widths, depths, ratios, vit_num = ARCHS[arch]
        self.arch = arch
        self.widths = widths
        dpr = DROP_PATH[arch] if drop_path_rate is None else drop_path_rate
        self.patch_embed = stem(3, widths[0], norm_cfg, act_layer)
        network = []
        total = sum(depths)
        for i, depth in enumerate(depths):
            res = math.ceil(resolution / 2 ** (i + 2))
            blocks = []
            for j in range(depth):
                kwargs = dict(dim=widths[i], mlp_ratio=ratios[i][j], act_layer=act_layer, norm_cfg=norm_cfg,
                              drop_path=dpr * (j + sum(depths[:i])) / (total - 1), ls_init=layer_scale_init_value)
                if i >= 2 and j > depth - 1 - vit_num:
                    blocks.append(AttnFFN(resolution=res, stride=2 if i == 2 else None, **kwargs))
                else:
                    blocks.append(FFN(**kwargs))
            network.append(nn.Sequential(*blocks))
            if i < len(depths) - 1:
                network.append(Embedding(widths[i], widths[i + 1], norm_cfg, act_layer, res, asub=i >= 2))
        self.network = nn.ModuleList(network)

    def forward(self, x):
        x = self.patch_embed(x)
        outs = []
        for idx, block in enumerate(self.network):
            x = block(x)
            if idx in self.out_indices:
                outs.append(x)
        return outs
