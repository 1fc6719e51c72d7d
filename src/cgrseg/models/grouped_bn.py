"""Batch norm over groups of images: one GPU's statistics of multi-GPU training, in a bigger batch.

The authors trained on 4 GPUs x 4 images. Their SyncBN layers normalise over all 16 images, but the
head's plain ``nn.BatchNorm2d`` layers (RCM ``norm``, RCA ``excite``; plain in the official code too)
normalise over the 4 images of each GPU. ``GroupedBatchNorm2d`` does the same in a process that holds
several GPUs' worth of images: each consecutive group of ``group_size`` images is normalised on its own.

Running statistics follow rank 0. mmseg wraps DDP with ``broadcast_buffers=False``: each rank updates
its running statistics from its own images, rank 0 writes the checkpoints, and mmseg's DistEvalHook
copies rank 0's statistics to every rank before evaluating. So only the first group updates them here.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class GroupedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics come from groups of ``group_size`` images.

    A batch of at most ``group_size`` images (and evaluation) is plain batch norm; a larger batch must
    be a multiple of ``group_size``. The state dict is the same as ``nn.BatchNorm2d``'s.
    """

    def __init__(self, num_features, group_size, **kwargs):
        super().__init__(num_features, **kwargs)
        if group_size < 1:
            raise ValueError(f'group_size must be at least 1, not {group_size}')
        self.group_size = group_size

    def forward(self, x):
        if not self.training or x.shape[0] <= self.group_size:
            return super().forward(x)
        if x.shape[0] % self.group_size:
            raise ValueError(f'a batch of {x.shape[0]} images does not split into groups of '
                             f'{self.group_size}')
        first, *others = x.split(self.group_size)
        out = [super().forward(first)]  # the only group that updates the running statistics (rank 0)
        out += [F.batch_norm(group, None, None, self.weight, self.bias, True, 0.0, self.eps)
                for group in others]
        return torch.cat(out)

    def extra_repr(self):
        return f'{super().extra_repr()}, group_size={self.group_size}'

    @classmethod
    def from_batchnorm(cls, bn, group_size):
        """A copy of ``bn`` (a float32 module on the CPU, before the model is moved or cast)."""
        grouped = cls(bn.num_features, group_size, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                      track_running_stats=bn.track_running_stats)
        grouped.load_state_dict(bn.state_dict())
        grouped.train(bn.training)
        return grouped


def group_plain_batchnorm(module, group_size):
    """Make every plain ``nn.BatchNorm2d`` in ``module`` a ``GroupedBatchNorm2d``; returns how many.

    Only the exact type is converted: SyncBN layers (and mmcv's reverted SyncBN, ``_BatchNormXd``)
    normalise over the whole batch, as SyncBN does over all GPUs.
    """
    count = 0
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            setattr(module, name, GroupedBatchNorm2d.from_batchnorm(child, group_size))
            count += 1
        else:
            count += group_plain_batchnorm(child, group_size)
    return count
