"""The authors' computation, op for op, on our modules: the yardstick for the training step.

``official_mirror(model)`` returns a copy of a CGRSeg segmentor in which every part computes what the
official code (github.com/nizhenliang/CGRSeg) computes, in its order: every attention gathers its
bias matrix and resizes it bicubically on every call (also when the size already matches), RCA runs
its square conv before the axial attention, the head walks its pyramid as the authors wrote it, and
the decode head keeps mmseg's loss with its top-k pixel accuracy. Weights, buffers and module names
are shared with our model, so the two can be compared and timed on the same numbers.

Backbone batch norms train on the batch, as in the authors' runs with ImageNet weights (their backbone
converts its BNs to SyncBN, which mmseg's single-GPU ``train.py`` reverts to ``_BatchNormXd``; the
backbone's "BN always in eval" trick only applies to plain ``nn.BatchNorm2d``, i.e. to runs without
pretrained weights). The mirror is a reference, not a fast path: docs/benchmarks.md, tests/models/test_mirror.py.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead

from .attention import Attention4D, Attention4DDownsample, LGQuery
from .cgrseg_head import CGRSegHead, ContextRCMs
from .dpg_head import DPGHead, SpatialGatherModule
from .efficientformer_v2 import FFN, AttnFFN, EfficientFormerV2, Embedding, Mlp
from .fuse_block import FuseBlockMulti
from .pyramid_pool_agg import PyramidPoolAgg
from .rca import RCA
from .rcm import RCM, ConvMlp


def _gathered_bias(attn, size):
    """The official bias: the table gathered to the 512x512 matrix, resized bicubically to ``size``."""
    bias = attn.attention_biases_seg[:, attn.attention_bias_idxs_seg]
    return F.interpolate(bias.unsqueeze(0), size=size, mode='bicubic')


def _heads(t, B, heads, n):
    """(B, heads*c, H, W) -> (B, heads, c, n), through the official flatten/reshape."""
    return t.flatten(2).reshape(B, heads, -1, n)


class MirrorAttention4D(Attention4D):

    def forward(self, x):
        B, _, H, W = x.shape
        if self.stride_conv is not None:
            x = self.stride_conv(x)
            H, W = H // 2, W // 2
        q = _heads(self.q(x), B, self.num_heads, H * W).permute(0, 1, 3, 2)
        k = _heads(self.k(x), B, self.num_heads, H * W)
        v = self.v(x)
        v_local = self.v_local(v)
        v = _heads(v, B, self.num_heads, H * W).permute(0, 1, 3, 2)
        attn = (q @ k) * self.scale
        attn = attn + _gathered_bias(self, attn.shape[-2:])
        attn = self.talking_head1(attn)
        attn = attn.softmax(dim=-1)
        attn = self.talking_head2(attn)
        out = (attn @ v).transpose(2, 3).reshape(B, self.dh, H, W) + v_local
        if self.upsample is not None:
            out = self.upsample(out)
        return self.proj(out)


class MirrorAttention4DDownsample(Attention4DDownsample):

    def forward(self, x):
        B, _, H, W = x.shape
        q = _heads(self.q(x), B, self.num_heads, H * W // 4).permute(0, 1, 3, 2)
        k = _heads(self.k(x), B, self.num_heads, H * W)
        v = self.v(x)
        v_local = self.v_local(v)
        v = _heads(v, B, self.num_heads, H * W).permute(0, 1, 3, 2)
        attn = (q @ k) * self.scale
        attn = (attn + _gathered_bias(self, attn.shape[-2:])).softmax(dim=-1)
        out = (attn @ v).transpose(2, 3).reshape(B, self.dh, H // 2, W // 2) + v_local
        return self.proj(out)


class MirrorLGQuery(LGQuery):

    def forward(self, x):
        local_q = self.local(x)
        pool_q = self.pool(x)
        return self.proj(local_q + pool_q)


class MirrorEmbedding(Embedding):

    def forward(self, x):
        if not self.asub:
            return self.norm(self.proj(x))
        out_conv = self.bn(self.conv(x))  # the official order: the conv branch first
        return self.attn(x) + out_conv


class MirrorMlp(Mlp):

    def forward(self, x):
        x = self.act(self.norm1(self.fc1(x)))
        x = self.act(self.mid_norm(self.mid(x)))
        x = self.drop(x)
        x = self.norm2(self.fc2(x))
        return self.drop(x)


class MirrorFFN(FFN):

    def forward(self, x):
        return x + self.drop_path(self.layer_scale_2 * self.mlp(x))


class MirrorAttnFFN(AttnFFN):

    def forward(self, x):
        x = x + self.drop_path(self.layer_scale_1 * self.token_mixer(x))
        return x + self.drop_path(self.layer_scale_2 * self.mlp(x))


class MirrorEfficientFormerV2(EfficientFormerV2):

    def forward(self, x):
        x = self.patch_embed(x)
        outs = []
        for idx, block in enumerate(self.network):
            x = block(x)
            if idx in (0, 2, 4, 6):
                outs.append(x)
        return outs


class MirrorRCA(RCA):

    def forward(self, x):
        loc = self.dwconv_hw(x)
        att = self.excite(self.pool_h(x) + self.pool_w(x))
        return att * loc


class MirrorConvMlp(ConvMlp):

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


class MirrorRCM(RCM):

    def forward(self, x):
        shortcut = x
        x = self.mlp(self.norm(self.token_mixer(x)))
        x = x.mul(self.gamma.reshape(1, -1, 1, 1))
        return self.drop_path(x) + shortcut


class MirrorContextRCMs(ContextRCMs):

    def forward(self, x):
        for i in range(len(self.transformer_blocks)):
            x = self.transformer_blocks[i](x)
        return x


class MirrorPyramidPoolAgg(PyramidPoolAgg):

    def forward(self, inputs):
        H, W = inputs[-1].shape[-2:]
        H = (H - 1) // self.stride + 1
        W = (W - 1) // self.stride + 1
        return torch.cat([F.adaptive_avg_pool2d(x, (H, W)) for x in inputs], dim=1)


class MirrorFuseBlockMulti(FuseBlockMulti):

    def forward(self, x_l, x_h):
        H, W = x_l.shape[-2:]
        inp = self.fuse1(x_l)
        sig_act = self.fuse2(x_h)
        sig_act = F.relu6(sig_act + 3, inplace=True) / 6  # the official h_sigmoid, in place on x + 3
        sig_act = F.interpolate(sig_act, size=(H, W), mode='bilinear', align_corners=False)
        return inp * sig_act


class MirrorSpatialGatherModule(SpatialGatherModule):

    def forward(self, feats, probs):
        B, K, H, W = probs.size()
        C = feats.size(1)
        probs = probs.view(B, K, -1)
        feats = feats.view(B, C, -1).permute(0, 2, 1)
        probs = F.softmax(self.scale * probs, dim=2)
        context = torch.matmul(probs, feats)
        return context.permute(0, 2, 1).contiguous().unsqueeze(3)


class MirrorDPGHead(DPGHead):

    def forward(self, x, y):
        B, C, H, W = y.size()
        values = y.view(B, C, H * W).unsqueeze(1)
        mask = self.conv_mask(y).view(B, 1, H * W).softmax(dim=2).unsqueeze(3)
        context = torch.matmul(values, mask).view(B, C, 1, 1)
        return x * torch.sigmoid(self.channel_mul_conv(context))


class MirrorCGRSegHead(CGRSegHead):

    # mmseg's decode-head loss (ours may compute its logged pixel accuracy differently)
    losses = BaseDecodeHead.losses

    def forward(self, inputs):
        xx = self._transform_inputs(inputs)
        f_cat = self.trans(self.ppa(xx)).split(self.in_channels, dim=1)
        results = []
        last = len(self.in_channels) - 1
        for i in range(last, -1, -1):
            local = xx[i]
            if i != last:
                up = F.interpolate(results[-1], size=xx[i].shape[2:], mode='bilinear', align_corners=False)
                local = xx[i] + self.conv[i](up)
            results.append(self.SIM[i](self.meta[i](local), f_cat[i]))
        x = results[-1]
        prev_output = self.cls_seg(self.linear_fuse(x))
        context = self.spatial_gather_module(x, prev_output)
        return self.cls_seg(self.lgc(x, context) + x)


MIRRORS = {cls.__mro__[1]: cls for cls in (
    MirrorAttention4D, MirrorAttention4DDownsample, MirrorLGQuery, MirrorEmbedding, MirrorMlp, MirrorFFN,
    MirrorAttnFFN, MirrorEfficientFormerV2, MirrorRCA, MirrorConvMlp, MirrorRCM, MirrorContextRCMs,
    MirrorPyramidPoolAgg, MirrorFuseBlockMulti, MirrorSpatialGatherModule, MirrorDPGHead,
    MirrorCGRSegHead)}


def official_mirror(model):
    """A deep copy of ``model`` (a segmentor or any part of it) computing as the official code does.

    Every module of one of our CGRSeg classes becomes its ``Mirror*`` subclass (same attributes, same
    state dict); torch's own layers stay. A module of a class the mirror does not know (say, a
    subclass of ours) is refused rather than left computing our way.
    """
    mirror = copy.deepcopy(model)
    ours = {cls.__module__ for cls in MIRRORS}
    for name, module in mirror.named_modules():
        cls = type(module)
        if cls in MIRRORS:
            module.__class__ = MIRRORS[cls]
        elif cls.__module__ in ours:
            raise TypeError(f'{name or "model"}: no official mirror of {cls.__name__}')
    return mirror
