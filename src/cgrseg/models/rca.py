"""Rectangular Self-Calibration Attention (RCA), Sec. 3.2 of the paper."""
import torch.nn as nn


class RCA(nn.Module):
    """Rectangular self-calibration attention.

    Axial pooling (H x 1 and 1 x W, broadcast-summed) captures a rectangular context; a 1 x k then
    k x 1 band of depthwise convs calibrates its shape, and the sigmoid attention gates a square
    depthwise conv of the input.
    """

    def __init__(self, dim, band_kernel_size=11, square_kernel_size=3, ratio=1):
        super().__init__()
        hidden = dim // ratio
        k = band_kernel_size
        self.dwconv_hw = nn.Conv2d(dim, dim, square_kernel_size, padding=square_kernel_size // 2, groups=dim)
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        self.excite = nn.Sequential(
            nn.Conv2d(dim, hidden, (1, k), padding=(0, k // 2), groups=hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, dim, (k, 1), padding=(k // 2, 0), groups=hidden),
            nn.Sigmoid())

    def attention(self, x):
        return self.excite(self.pool_h(x) + self.pool_w(x))

    def forward(self, x):
        return self.attention(x) * self.dwconv_hw(x)
