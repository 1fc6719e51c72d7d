"""FuseBlockMulti: the local features gated by the upsampled, hard-sigmoided global semantics."""
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule


class FuseBlockMulti(nn.Module):

    def __init__(self, in_channels, out_channels, norm_cfg=dict(type='BN', requires_grad=True)):
        super().__init__()
        self.fuse1 = ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
        self.fuse2 = ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)

    def forward(self, x_local, x_global):
        gate = F.relu6(self.fuse2(x_global) + 3) / 6  # hard sigmoid
        gate = F.interpolate(gate, size=x_local.shape[-2:], mode='bilinear', align_corners=False)
        return self.fuse1(x_local) * gate
