"""Multi-process training for ``cgrseg train``, and the model as the authors' GPUs trained it.

``--gpus N`` (N > 1) re-launches the command under torchrun: N processes, NCCL, one GPU each, as the
authors' ``dist_train.sh``. ``--cpu-processes N`` launches the same N processes on the CPU with gloo,
so that the multi-GPU path runs (and is tested) without GPUs. Both go through mmseg's
``train_segmentor``, which wraps the model in mmcv's MMDistributedDataParallel with
``broadcast_buffers=False``.

``bn_group`` (config key, ``configs/_base_/default_runtime.py``): the authors' images per GPU. When a
process holds more, the head's plain BatchNorm2d layers normalise per group of that many images, so
1 GPU x 16, 2 x 8 and 4 x 4 are one optimisation (docs/training.md, tests/runner/test_ddp.py).
"""
import contextlib
import sys

from cgrseg import ranges as R
from cgrseg.errors import CGRSegError

DTYPES = ('float32', 'float64')


def torchrun(nproc):
    """The command prefix that starts ``nproc`` local processes (torchrun, one node)."""
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}']


def cpu_processes(args):
    """``--cpu-processes N``: N, with ``args.gpus`` set to 0 (no GPU); None without it."""
    if args.cpu_processes is None:
        return None
    R.require(args.cpu_processes, R.PROCESSES, '--cpu-processes')
    if args.gpus:
        raise CGRSegError(f'--cpu-processes {args.cpu_processes} trains on the CPU; '
                          f'it excludes --gpus {args.gpus}')
    args.gpus = 0
    return args.cpu_processes


def init_process_group(cfg, gpus):
    """Join the torchrun process group: mmcv's NCCL set-up on GPUs, gloo on the CPU."""
    if gpus:
        from mmcv.runner import init_dist
        init_dist('pytorch', **cfg.dist_params)
    else:
        import torch.distributed as dist
        dist.init_process_group('gloo')


@contextlib.contextmanager
def mmseg_ddp_on_cpu(enabled):
    """Let mmseg's ``train_segmentor`` wrap a CPU model for DDP (its ``build_ddp`` accepts only GPUs).

    The wrapper gets mmseg's own arguments (``broadcast_buffers=False``, ``find_unused_parameters``),
    without device ids, which a CPU module cannot have.
    """
    if not enabled:
        yield
        return
    import mmseg.apis.train as mmseg_train

    from cgrseg.runner.cpu_ddp import CpuDistributedDataParallel

    def build_ddp(model, device, *args, device_ids=None, **kwargs):
        return CpuDistributedDataParallel(model, *args, **kwargs)

    original, mmseg_train.build_ddp = mmseg_train.build_ddp, build_ddp
    try:
        yield
    finally:
        mmseg_train.build_ddp = original


def bn_group(cfg):
    """The group size for the plain BatchNorm2d layers, or None when a process holds at most one group."""
    group = cfg.get('bn_group')
    if group is None:
        return None
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise CGRSegError(f'{cfg.filename}: bn_group must be a positive integer or None, not {group!r}')
    per_process = cfg.data.samples_per_gpu
    if per_process <= group:
        return None
    if per_process % group:
        raise CGRSegError(f'{cfg.filename}: {per_process} images per process do not split into groups of '
                          f'bn_group={group} (the images per GPU of the run it reproduces); use a multiple '
                          f'of {group} or set bn_group=None')
    return group


def check_config(cfg):
    """Fail before anything is written on a bad ``bn_group`` or ``train_dtype``."""
    bn_group(cfg)
    _dtype(cfg)


def _dtype(cfg):
    dtype = cfg.get('train_dtype', 'float32')
    if dtype not in DTYPES:
        raise CGRSegError(f'{cfg.filename}: train_dtype must be one of {", ".join(DTYPES)}, not {dtype!r}')
    return dtype


def prepare_model(model, cfg, gpus, distributed):
    """The model as this run trains it: grouped plain BNs, synchronised BN on CPU processes, its dtype.

    Returns a line for the log. Call after building the model and before mmseg wraps it.
    """
    notes = []
    group = bn_group(cfg)
    if group:
        from cgrseg.models.grouped_bn import group_plain_batchnorm
        count = group_plain_batchnorm(model, group)
        notes.append(f'{count} plain BatchNorm2d layers normalise per group of {group} images '
                     f'(bn_group; {cfg.data.samples_per_gpu} images per process)')
    if distributed and not gpus:
        from cgrseg.runner.cpu_ddp import convert_sync_batchnorm
        notes.append(f'{convert_sync_batchnorm(model)} SyncBN layers synchronised over gloo')
    dtype = _dtype(cfg)
    if dtype != 'float32':
        cast_model(model, dtype)
        notes.append(f'parameters and inputs in {dtype}')
    return '; '.join(notes)


def cast_model(model, dtype):
    """Parameters and buffers in ``dtype``, and the images cast to it on their way into the backbone.

    float64 takes float32 rounding out of numerical comparisons (tests/runner/test_ddp.py).
    """
    import torch
    dtype = getattr(torch, dtype)
    model.to(dtype)
    model.backbone.register_forward_pre_hook(lambda _, inputs: tuple(x.to(dtype) for x in inputs))
