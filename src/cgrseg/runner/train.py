"""``cgrseg train``: train a CGRSeg config with mmseg 0.x, resuming from its work directory.

One process on the CPU (``--gpus 0``) or one GPU (``--gpus 1``); ``--gpus N`` > 1 re-launches this
command under torchrun (DDP, SyncBN kept), ``--cpu-processes N`` likewise on the CPU (gloo). A rerun
with the same work directory continues from the newest checkpoint there. See docs/training.md.
"""
import argparse
import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cgrseg import ranges as R
from cgrseg.cli import add_switch, optional
from cgrseg.errors import CGRSegError, Interrupted
from cgrseg.io import output_dir, write_text
from cgrseg.mmseg_config import parse_options
from cgrseg.runner import ddp

RESOLVED_CONFIG = 'config.py'


def add_parser(subparsers):
    p = subparsers.add_parser(
        'train', help='train a config with mmseg (resumes from --work-dir)',
        description=__doc__.splitlines()[0])
    p.add_argument('config', help='mmseg config, e.g. configs/cgrseg/cgrseg-t_ade20k_160k.py')
    p.add_argument('--work-dir', required=True,
                   help='checkpoints, logs and the resolved config; a rerun resumes from here')
    p.add_argument('--data-root', help="prepared data directory, replacing the configs' data/prepared")
    # `none` keeps the config's value (params.yaml null)
    p.add_argument('--iters', type=optional(R.option(R.COUNT)), metavar='N|none',
                   help='train N iterations; warm-up, eval and checkpoint intervals scale with it')
    p.add_argument('--crop', type=optional(R.option(R.SIDE)), metavar='SIZE|none',
                   help='train crop size; train and test image scales scale with it')
    p.add_argument('--samples-per-gpu', type=optional(R.option(R.BATCH)), metavar='N|none',
                   help='batch size per GPU (process)')
    p.add_argument('--train-repeat', type=optional(R.option(R.REPEAT)), metavar='TIMES|none',
                   help="one epoch = TIMES passes over the train set (mmseg's RepeatDataset): mmcv "
                        'pauses 2 s at every epoch end, which dominates runs on a few images')
    p.add_argument('--checkpoint-interval', type=optional(R.option(R.COUNT)), metavar='N|none',
                   help='save a checkpoint every N iterations (default: the config\'s, scaled by --iters)')
    p.add_argument('--workers', type=R.option(R.WORKERS),
                   help='data-loader workers per GPU (default: the config, at most the CPU count)')
    p.add_argument('--gpus', type=R.option(R.GPUS),
                   help='0: CPU; 1: one GPU; N>1: DDP under torchrun (default: 1 if CUDA works, else 0)')
    p.add_argument('--cpu-processes', type=R.option(R.PROCESSES), metavar='N',
                   help='N DDP processes on the CPU (gloo), launched as --gpus N launches N GPUs')
    p.add_argument('--seed', type=R.option(R.SEED), default=0, help='random seed (default: 0)')
    add_switch(p, 'pretrained', default=True,
               help='start the backbone from its ImageNet checkpoint (false: random weights)')
    add_switch(p, 'validate', default=True, help="the config's periodic validation (false: skip it)")
    p.add_argument('--cfg-options', nargs='*', default=[], metavar='KEY=VALUE',
                   help='override config entries, e.g. optimizer.lr=6e-5 data.workers_per_gpu=2')
    p.add_argument('--launcher', choices=('none', 'pytorch'), default='none', help=argparse.SUPPRESS)
    p.set_defaults(func=run)
    return p


def _cuda_available():
    import torch
    return torch.cuda.is_available()


def _relaunch(args, prefix, held, extra=(), env=None):
    """Run this same train command (its own argv) as ``prefix -m cgrseg.cli ...`` and wait for it.

    The child shares this process's work-dir lock; preemption signals are passed on to it.
    """
    from cgrseg.runner import preempt
    cmd = [*prefix, '-m', 'cgrseg.cli', *args.argv, *extra]
    rc, signum = preempt.run_child(cmd, env=held.child_env(env), pass_fds=(held.fd,))
    if rc and signum == signal.SIGINT:
        raise Interrupted(signum)
    if rc and (signum or rc == preempt.EX_TEMPFAIL):
        raise preempt.Preempted(f'{args.work_dir}: training stopped on a preemption signal; run the '
                                f'same command again to continue from its last checkpoint')
    if rc:
        raise CGRSegError(f'training of {args.config} failed in a child process (exit code {rc}); '
                       f'logs in {args.work_dir}')
    return 0


def run(args):
    from cgrseg.runner import preempt
    with preempt.handling():  # first: a job may be signalled while it is still starting
        return _run(args)


def _run(args):
    from cgrseg.runner import lock
    cuda = _cuda_available()
    cpu_processes = ddp.cpu_processes(args)
    gpus = args.gpus if args.gpus is not None else int(cuda)
    R.require(gpus, R.GPUS, '--gpus')
    if gpus > 0 and not cuda:
        raise CGRSegError(f'--gpus {gpus}: no CUDA device is available here (use --gpus 0 for the CPU)')
    args.gpus = gpus
    distributed = args.launcher != 'none'
    # built once per process; a bad config or data root fails before the work dir is touched
    cfg = build_config(args, gpus, distributed)
    if lock.held_by_parent(args.work_dir):
        return train(args, cfg, gpus, distributed)
    output_dir(args.work_dir, 'train', inputs=(args.config, args.data_root), recognised=_work_dir_of_ours)
    with lock.WorkDirLock(args.work_dir) as held:
        procs = cpu_processes or gpus
        if procs > 1 and not distributed:
            hide = {} if gpus or not cuda else dict(CUDA_VISIBLE_DEVICES='')
            return _relaunch(args, ddp.torchrun(procs), held, extra=['--launcher', 'pytorch'],
                             env=dict(os.environ, **hide))
        if gpus == 0 and cuda:
            # mmcv's data-parallel wrapper targets a GPU whenever one is visible: hide them.
            return _relaunch(args, [sys.executable], held, env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
        return train(args, cfg, gpus, distributed)


def _work_dir_of_ours(folder):
    """A work dir written before the output marker existed: it has our lock or resolved config."""
    return any((folder / name).exists() for name in ('train.lock', RESOLVED_CONFIG))


def build_config(args, gpus, distributed):
    """The config as trained: the file, --cfg-options, then the command-line rewrites."""
    from cgrseg.mmseg_config import TRAIN
    from cgrseg.runner import config_rewrites as C
    cfg = C.load_config(args.config, parse_options(args.cfg_options), needs=TRAIN)
    C.rewrite(cfg, data_root=args.data_root, crop=args.crop, iters=args.iters,
              train_repeat=args.train_repeat, checkpoint_interval=args.checkpoint_interval,
              samples_per_gpu=args.samples_per_gpu)
    workers = args.workers if args.workers is not None else min(cfg.data.workers_per_gpu,
                                                                os.cpu_count() or 1)
    cfg.data.workers_per_gpu = workers
    # torch refuses persistent workers without workers
    cfg.data.persistent_workers = workers > 0
    if not args.pretrained:
        C.drop_pretrained(cfg)
    else:
        path = C.pretrained_path(cfg)
        if path and not Path(path).is_file():
            raise CGRSegError(f'{path}: backbone checkpoint not found; run `cgrseg pretrained` to fetch it '
                           f'or pass --pretrained false')
    C.check_data(cfg, ('train', 'val') if args.validate else ('train',))
    ddp.check_config(cfg)
    cfg.work_dir = str(args.work_dir)
    cfg.seed = args.seed
    cfg.device = 'cuda' if gpus else 'cpu'
    cfg.gpu_ids = list(range(int(os.environ.get('WORLD_SIZE', 1)))) if distributed else [0]
    cfg.auto_resume = False  # we pick the checkpoint ourselves (checkpoints.resumable)
    return cfg


def _add_runtime_hooks(cfg, resume_from):
    hooks = list(cfg.get('custom_hooks', []))
    hooks.append(dict(type='NonFiniteLossHook', priority='VERY_HIGH'))
    cfg.custom_hooks = hooks
    # atomic checkpoints, exact resume, stop on preemption (runner/iter_runner.py)
    cfg.runner['constructor'] = 'ExactResumeRunnerConstructor'
    cfg.resume_from = str(resume_from) if resume_from is not None else None


def train(args, cfg, gpus, distributed):
    """Train ``cfg`` (``build_config``'s) in this process."""
    from cgrseg.runner import checkpoints, hooks, iter_runner, workdir  # noqa: F401  (registers the runner)
    from cgrseg.runner import config_rewrites as C

    import mmcv
    from mmcv.cnn.utils import revert_sync_batchnorm
    from mmcv.runner import get_dist_info
    from mmseg.apis import set_random_seed, train_segmentor
    from mmseg.datasets import build_dataset
    from mmseg.models import build_segmentor
    from mmseg.utils import get_root_logger, setup_multi_processes

    if distributed:
        ddp.init_process_group(cfg, gpus)
    rank, _ = get_dist_info()
    work_dir = Path(args.work_dir)
    mmcv.mkdir_or_exist(str(work_dir.resolve()))
    if rank == 0:
        checkpoints.remove_stale_temporaries(work_dir)
    skipped = []
    resume_from, resume_meta = checkpoints.resumable(work_dir, skipped.append)
    resolved = C.resolved_text(cfg)  # before the runtime hooks: they change from run to run
    workdir.check_owner(work_dir, resolved, args.config, resume_meta)  # before config.py is rewritten
    if rank == 0:
        write_text(work_dir / RESOLVED_CONFIG, resolved)
    _add_runtime_hooks(cfg, resume_from)

    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    logger = _run_logger(get_root_logger, work_dir / f'{timestamp}.log', cfg.log_level, rank)
    setup_multi_processes(cfg)
    for warning in skipped:
        logger.warning(warning)
    if resume_from is not None:
        logger.info(f'resuming from {resume_from}')
    set_random_seed(args.seed, deterministic=False)

    datasets = [build_dataset(cfg.data.train)]
    if len(datasets[0]) < cfg.data.samples_per_gpu:
        raise CGRSegError(f'{args.config}: the train set has {len(datasets[0])} images, fewer than one '
                       f'batch of {cfg.data.samples_per_gpu}')
    model = build_segmentor(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    model.init_weights()
    if not distributed:
        model = revert_sync_batchnorm(model)  # SyncBN needs a process group
    note = ddp.prepare_model(model, cfg, gpus, distributed)
    if note:
        logger.info(note)
    model.CLASSES = datasets[0].CLASSES
    meta = dict(seed=args.seed, exp_name=Path(args.config).name, config=resolved,
                CLASSES=datasets[0].CLASSES, PALETTE=datasets[0].PALETTE,
                # read back by `cgrseg evaluate` to test at the scale the model was trained for
                cgrseg=dict(crop=args.crop, iters=cfg.runner['max_iters'],
                            samples_per_gpu=cfg.data.samples_per_gpu, gpus=gpus))
    try:
        with ddp.mmseg_ddp_on_cpu(distributed and not gpus):
            train_segmentor(model, datasets, cfg, distributed=distributed,
                            validate=args.validate, timestamp=timestamp, meta=meta)
    except hooks.NonFiniteLossError as err:
        raise CGRSegError(f'{args.config}: training diverged: {err}; stopped before applying that step '
                       f'(earlier checkpoints, if any, are in {work_dir})') from None
    if rank == 0 and not (work_dir / 'latest.pth').exists():
        raise CGRSegError(f'{work_dir}/latest.pth was not written (is checkpoint_config disabled?)')
    return 0


def _run_logger(get_root_logger, log_file, level, rank):
    """mmseg's root logger set up for *this* run.

    mmcv configures a logger once per process, so a second run in the same process (the Python
    API, tests) would keep the first run's level and write to the first run's log file.
    """
    import logging
    logger = get_root_logger(log_file=str(log_file), log_level=level)
    if rank != 0:
        return logger
    logger.setLevel(level)
    target = os.path.abspath(log_file)
    for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
        if handler.baseFilename != target:
            logger.removeHandler(handler)
            handler.close()
    if not any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        handler = logging.FileHandler(target, 'w')
        handler.setFormatter(logging.Formatter('%(asctime)s - %(name)s - %(levelname)s - %(message)s'))
        logger.addHandler(handler)
    return logger

