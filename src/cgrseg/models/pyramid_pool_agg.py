"""PyramidPoolAgg: pool every pyramid level to 1/64 of the input and concatenate along channels."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class PyramidPoolAgg(nn.Module):

    def __init__(self, stride=2):
        super().__init__()
        self.stride = stride

    def forward(self, inputs):
        H, W = inputs[-1].shape[-2:]
        size = ((H - 1) // self.stride + 1, (W - 1) // self.stride + 1)
        return torch.cat([F.adaptive_avg_pool2d(x, size) for x in inputs], dim=1)
