"""DDP on the CPU (gloo): mmcv's wrapper and a synchronised batch norm that run without a GPU.

Only for ``cgrseg train --cpu-processes N``, the multi-GPU code path without GPUs; on GPUs mmseg's
own wrapper and torch's SyncBatchNorm are used unchanged.
"""
import torch
import torch.distributed as dist
import torch.nn as nn
from mmcv.parallel import MMDistributedDataParallel
from torch.distributed.nn.functional import all_reduce
from torch.nn.modules.batchnorm import _BatchNorm


class CpuDistributedDataParallel(MMDistributedDataParallel):
    """mmcv's DDP wrapper for a CPU module.

    mmcv unwraps the batch's DataContainers only when the wrapper has device ids, which a CPU module
    cannot have; scatter to the CPU first (device -1), as mmcv's MMDataParallel does on the CPU.
    """

    def train_step(self, *inputs, **kwargs):
        inputs, kwargs = self.scatter(inputs, kwargs, [-1])
        return super().train_step(*inputs[0], **kwargs[0])

    def val_step(self, *inputs, **kwargs):
        inputs, kwargs = self.scatter(inputs, kwargs, [-1])
        return super().val_step(*inputs[0], **kwargs[0])


class CpuSyncBatchNorm(_BatchNorm):
    """SyncBN for CPU tensors (torch's SyncBatchNorm, and DDP with it, refuse them).

    Mean and biased variance over every image of every process (two all-reduces, differentiable), the
    running variance unbiased over the same count, as torch's SyncBatchNorm does on GPUs. Outside
    training or without a process group it is plain batch norm.
    """

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f'expected at least 2D input (got {x.dim()}D input)')

    def forward(self, x):
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype)
        dist.all_reduce(count)
        mean = all_reduce(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * count / (count - 1))
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean, unbiased_var):
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        self.running_mean.mul_(1 - momentum).add_(momentum * mean)
        self.running_var.mul_(1 - momentum).add_(momentum * unbiased_var)


def convert_sync_batchnorm(module):
    """Make every ``nn.SyncBatchNorm`` (mmcv's ``SyncBN`` subclasses it) in ``module`` a
    ``CpuSyncBatchNorm``; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm) and not isinstance(child, CpuSyncBatchNorm):
            cpu = CpuSyncBatchNorm(child.num_features, eps=child.eps, momentum=child.momentum,
                                   affine=child.affine, track_running_stats=child.track_running_stats)
            cpu.load_state_dict(child.state_dict())
            cpu.train(child.training)
            setattr(module, name, cpu)
            count += 1
        else:
            count += convert_sync_batchnorm(child)
    return count
