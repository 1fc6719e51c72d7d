"""Dynamic Prototype Guided head (Sec. 3.3): class prototypes from a coarse prediction guide the features."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import constant_init, kaiming_init


class SpatialGatherModule(nn.Module):
    """Class prototypes: features averaged under each class's softmax-over-space probability map.

    Returns (B, C, K, 1) for K classes.
    """

    def __init__(self, scale=1):
        super().__init__()
        self.scale = scale

    def forward(self, feats, probs):
        B, K = probs.shape[:2]
        probs = F.softmax(self.scale * probs.reshape(B, K, -1), dim=2)
        protos = probs @ feats.reshape(B, feats.shape[1], -1).transpose(1, 2)  # B, K, C
        return protos.transpose(1, 2).unsqueeze(3)


class DPGHead(nn.Module):
    """Attention-pool the prototypes into one context vector and turn it into channel weights.

    ``forward(x, prototypes)`` returns ``x * sigmoid(MLP(pool(prototypes)))``.
    """

    def __init__(self, in_ch, mid_ch):
        super().__init__()
        self.conv_mask = nn.Conv2d(in_ch, 1, kernel_size=1)
        self.channel_mul_conv = nn.Sequential(
            nn.Conv2d(in_ch, mid_ch, kernel_size=1),
            nn.LayerNorm([mid_ch, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_ch, in_ch, kernel_size=1))
        kaiming_init(self.conv_mask, mode='fan_in')
        constant_init(self.channel_mul_conv[-1], val=0)  # starts as a constant 0.5 gate
        self.conv_mask.inited = True  # keep mmcv's init_weights from re-initialising them
        self.channel_mul_conv[-1].inited = True

    def attention_pool(self, y):
        B, C = y.shape[:2]
        weights = self.conv_mask(y).reshape(B, 1, -1).softmax(dim=2)  # B, 1, N
        return (y.reshape(B, C, -1) @ weights.transpose(1, 2)).reshape(B, C, 1, 1)

    def forward(self, x, prototypes):
        return x * torch.sigmoid(self.channel_mul_conv(self.attention_pool(prototypes)))
