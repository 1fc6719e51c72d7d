"""Rectangular Self-Calibration Module (RCM): RCA token mixer + BN + ConvMLP, layer-scaled residual."""
import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath

from .rca import RCA


class ConvMlp(nn.Module):
    """Two 1x1 convs with an activation between them (spatial size kept)."""

    def __init__(self, dim, hidden, act_layer=nn.GELU, drop=0.):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


class RCM(nn.Module):
    """x + gamma * ConvMlp(BN(RCA(x)))."""

    def __init__(self, dim, dw_size=11, square_kernel_size=3, ratio=1, mlp_ratio=2, ls_init_value=1e-6,
                 drop_path=0., token_mixer=RCA):
        super().__init__()
        self.token_mixer = token_mixer(dim, band_kernel_size=dw_size, square_kernel_size=square_kernel_size,
                                       ratio=ratio)
        self.norm = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(mlp_ratio * dim))
        self.gamma = nn.Parameter(ls_init_value * torch.ones(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        y = self.mlp(self.norm(self.token_mixer(x)))
        return self.drop_path(y * self.gamma.view(1, -1, 1, 1)) + x
