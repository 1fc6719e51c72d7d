"""The CGRSeg decode head (Fig. 2): pyramid context from RCMs, spatial feature reconstruction, DPG head."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.runner import force_fp32
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.ops import resize

from .dpg_head import DPGHead, SpatialGatherModule
from .fuse_block import FuseBlockMulti
from .pyramid_pool_agg import PyramidPoolAgg
from .rca import RCA
from .rcm import RCM

TOKEN_MIXERS = {'RCA': RCA}


class CGRSegHead(BaseDecodeHead):
    """Context-guided spatial feature reconstruction head.

    1. PyramidPoolAgg pools the 1/8, 1/16, 1/32 features to 1/64 and concatenates them; a stack of
       ``next_repeat`` RCMs extracts pyramid context, split back per level (global semantics).
    2. Top-down, each level's local features (plus the coarser result, projected back) pass an RCM
       and are gated by their global semantics (FuseBlockMulti): spatial feature reconstruction.
    3. The finest result gives a coarse prediction; its class prototypes (SpatialGatherModule) guide
       a channel reweighting (DPGHead) whose residual output is classified.

    Args mirror the official head: ``dw_size`` is the RCA band kernel of the per-level RCMs,
    ``neck_size`` that of the context RCMs, ``mr`` the RCM MLP ratio, ``is_dw`` makes the fuse conv
    depthwise.
    """

    def __init__(self, is_dw=False, next_repeat=4, mr=2, dw_size=7, neck_size=3, square_kernel_size=1,
                 module='RCA', ratio=1, **kwargs):
        super().__init__(input_transform='multiple_select', **kwargs)
        mixer = TOKEN_MIXERS[module]
        ch = self.channels
        self.linear_fuse = ConvModule(ch, ch, 1, groups=ch if is_dw else 1, norm_cfg=self.norm_cfg,
                                      act_cfg=self.act_cfg)
        self.ppa = PyramidPoolAgg(stride=2)
        self.trans = ContextRCMs(next_repeat, sum(self.in_channels), neck_size, mr, square_kernel_size, mixer)
        self.SIM = nn.ModuleList(FuseBlockMulti(c, ch, norm_cfg=self.norm_cfg) for c in self.in_channels)
        self.meta = nn.ModuleList(
            RCM(c, dw_size=dw_size, square_kernel_size=square_kernel_size, ratio=ratio, mlp_ratio=mr,
                token_mixer=mixer) for c in self.in_channels)
        self.conv = nn.ModuleList(nn.Conv2d(ch, c, 1) for c in self.in_channels[:-1])
        self.spatial_gather_module = SpatialGatherModule(1)
        self.lgc = DPGHead(ch, ch)

    def reconstruct(self, feats):
        """Steps 1-2: the finest-level reconstructed feature map."""
        context = self.trans(self.ppa(feats)).split(self.in_channels, dim=1)
        out = None
        for i in reversed(range(len(feats))):
            local = feats[i]
            if out is not None:
                local = local + self.conv[i](F.interpolate(out, size=local.shape[-2:], mode='bilinear',
                                                           align_corners=False))
            out = self.SIM[i](self.meta[i](local), context[i])
        return out

    def forward(self, inputs):
        x = self.reconstruct(self._transform_inputs(inputs))
        coarse = self.cls_seg(self.linear_fuse(x))
        prototypes = self.spatial_gather_module(x, coarse)
        return self.cls_seg(self.lgc(x, prototypes) + x)

    @force_fp32(apply_to=('seg_logit', ))
    def losses(self, seg_logit, seg_label):
        """mmseg's decode-head loss; its logged ``acc_seg`` without mmseg's top-k sort (``pixel_accuracy``).

        Configurations with a pixel sampler, several losses or no ignore index take mmseg's own path.
        """
        if (self.sampler is not None or isinstance(self.loss_decode, nn.ModuleList)
                or self.ignore_index is None):
            return super().losses(seg_logit, seg_label)
        seg_logit = resize(input=seg_logit, size=seg_label.shape[2:], mode='bilinear',
                           align_corners=self.align_corners)
        seg_label = seg_label.squeeze(1)
        loss = self.loss_decode(seg_logit, seg_label, weight=None, ignore_index=self.ignore_index)
        return {self.loss_decode.loss_name: loss,
                'acc_seg': pixel_accuracy(seg_logit, seg_label, self.ignore_index)}


@torch.no_grad()
def pixel_accuracy(seg_logit, label, ignore_index):
    """Percentage of the labelled pixels whose class has the highest logit: mmseg's ``accuracy`` (top-1).

    mmseg takes the top-1 class of a top-k sort over the classes; comparing the label's logit with the
    maximum over classes is one vectorised reduction instead (~10x cheaper on the CPU at 150 classes and
    full resolution, where it was ~8 % of a training step). Same value, bit for bit, unless two classes
    tie exactly for the maximum at a pixel (then top-k picks either; here the pixel counts as correct).
    """
    valid = label != ignore_index
    target = torch.where(valid, label, torch.zeros_like(label)).unsqueeze(1)
    hit = seg_logit.gather(1, target).squeeze(1) >= seg_logit.amax(dim=1)
    eps = torch.finfo(torch.float32).eps
    correct = hit[valid].float().sum(0, keepdim=True) + eps  # the arithmetic of mmseg's accuracy
    total = valid.sum().item() + eps
    return correct.mul_(100.0 / total)


class ContextRCMs(nn.Module):
    """The stack of RCMs over the pooled pyramid (``trans`` in the official checkpoints)."""

    def __init__(self, depth, dim, dw_size, mlp_ratio, square_kernel_size, token_mixer):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(
            RCM(dim, dw_size=dw_size, mlp_ratio=mlp_ratio, square_kernel_size=square_kernel_size,
                token_mixer=token_mixer) for _ in range(depth))

    def forward(self, x):
        for block in self.transformer_blocks:
            x = block(x)
        return x
