"""Inference throughput (img/s) of a config's segmentor, by two named protocols.

- ``mmseg_benchmark`` -- the paper protocol, the top-level ``img_per_s``: mmseg 0.x
  ``tools/benchmark.py``, the tool of the authors' code base. Batch 1; the test split's real images
  through the config's test pipeline (the data set's official test protocol); each timed call is
  ``model(return_loss=False, rescale=True, **data)`` under no_grad, fp32, cudnn.benchmark off, CUDA
  synchronised before and after; loading is not timed. Of ``--images`` (200) images the first
  ``--skip`` (5) are not counted; img/s = counted images / their summed time. Weights are the
  config's initialisation unless ``--checkpoint`` is given (speed does not depend on them).
- ``fixed_size``: random input of ``--shape`` through ``forward_dummy`` (no resize back), batch
  ``--batch-size``, ``--dtype``; ``--warmup`` untimed passes, then the median over ``--repeats``
  runs of ``--iters`` passes.

``--deploy`` adds both protocols on the deploy-mode model (cgrseg.models.deploy: BatchNorms and
scales folded, 1x1 convs as matrix products; channels-last on CPU), labelled as such; the
top-level figure stays the unfused paper protocol.
The JSON records device, versions and threads: throughput compares only on identical devices.
This is a benchmark, not a test.
"""
import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from cgrseg import ranges as R
from cgrseg.cli import optional
from cgrseg.errors import CGRSegError
from cgrseg.io import check_output_file, sha256_file, write_json

PAPER_PROTOCOL, FIXED_SIZE = 'mmseg_benchmark', 'fixed_size'
DESCRIPTIONS = {
    PAPER_PROTOCOL: ("mmseg 0.x tools/benchmark.py (the authors' code base): batch 1, real test images "
                     'through the test pipeline, model(return_loss=False, rescale=True), fp32, '
                     'cudnn.benchmark off; img/s over the images after the first {skip}'),
    FIXED_SIZE: 'random {h}x{w} input, forward_dummy (no resize back), median of {repeats} runs of {iters} passes',
}


def resolve_device(name):
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise CGRSegError(f'--device {name}: no CUDA device is available here')
    return torch.device(name)


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _sync(device):
    return torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)


def timed_runs(fn, device, warmup, repeats, iters):
    sync = _sync(device)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def fixed_size(model, device, shape, batch_size, dtype, warmup, repeats, iters):
    """The fixed-size protocol on ``model`` (already on ``device``, eval mode)."""
    x = torch.randn(batch_size, 3, *shape, device=device)

    def forward():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=dtype == 'float16'):
            model.forward_dummy(x)

    per_run = [batch_size * iters / t for t in timed_runs(forward, device, warmup, repeats, iters)]
    return {'img_per_s': round(statistics.median(per_run), 2), 'img_per_s_runs': [round(v, 2) for v in per_run],
            'input_shape': [3, *shape], 'batch_size': batch_size, 'dtype': dtype, 'warmup': warmup,
            'repeats': repeats, 'iters_per_repeat': iters,
            'description': DESCRIPTIONS[FIXED_SIZE].format(h=shape[0], w=shape[1], repeats=repeats, iters=iters)}


def _endless(loader):
    """The loader's batches, from the start again when it runs out (a test set under --images)."""
    while True:
        yield from loader


def mmseg_benchmark(model, device, loader, images, skip):
    """tools/benchmark.py's loop: time each batch-1 call, sum the times after the first ``skip``."""
    from mmcv.parallel import MMDataParallel
    sync = _sync(device)
    wrapped = MMDataParallel(model, device_ids=[0])  # no GPU: runs on the CPU
    timed, shapes = 0.0, set()
    for i, data in enumerate(_endless(loader)):
        sync()
        start = time.perf_counter()
        with torch.no_grad():
            wrapped(return_loss=False, rescale=True, **data)
        sync()
        elapsed = time.perf_counter() - start
        if i >= skip:
            timed += elapsed
        shapes.add(tuple(data['img'][0].data[0].shape[-2:]))
        if i + 1 == images:
            break
    return {'img_per_s': round((images - skip) / timed, 2), 'images': images, 'skipped': skip,
            'batch_size': 1, 'dtype': 'float32', 'rescale': True,
            'input_sizes': sorted([list(s) for s in shapes])[:20],
            'description': DESCRIPTIONS[PAPER_PROTOCOL].format(skip=skip)}


def _test_config(config, data_root, crop):
    from cgrseg.mmseg_config import MODEL, load_config
    from cgrseg.runner import config_rewrites as C
    cfg = C.rewrite(load_config(config, needs=MODEL), data_root=data_root, crop=crop)
    C.drop_pretrained(cfg)
    cfg.data.test.test_mode = True
    C.check_data(cfg, ('test',))
    return cfg


def _loader(cfg, workers):
    from mmseg.datasets import build_dataloader, build_dataset
    dataset = build_dataset(cfg.data.test)
    if len(dataset) == 0:
        raise CGRSegError(f'the test set under {cfg.data.test.data_root} has no images')
    return build_dataloader(dataset, samples_per_gpu=1, workers_per_gpu=workers, dist=False, shuffle=False,
                            persistent_workers=False), len(dataset)


def _model(cfg, checkpoint, device):
    from cgrseg.models.build import build_model
    if checkpoint is None:
        return build_model(cfg).eval().to(device)
    from cgrseg.runner.evaluate import load_model
    return load_model(cfg, checkpoint)[0].to(device)


def _workers(requested, cfg, device):
    """tools/benchmark.py uses the config's workers; on CPU they would compete with the timed
    forward for the same cores, so there the default is to load in the main process."""
    import os
    if requested is not None:
        return requested
    return min(cfg.data.get('workers_per_gpu', 2), os.cpu_count() or 1) if device.type == 'cuda' else 0


def _check(args):
    if args.images <= args.skip:
        raise CGRSegError(f'--images {args.images}: must exceed --skip {args.skip}')
    for label, path in (('checkpoint', args.checkpoint), ('manifest', args.manifest)):
        if path is not None and not Path(path).is_file():
            raise CGRSegError(f'{path}: no such {label} file')
    if args.dtype == 'float16' and resolve_device(args.device).type != 'cuda':
        raise CGRSegError('--dtype float16 needs a CUDA device (autocast)')


def measure(args):
    from cgrseg.measure.flops import dataset_of, model_name, variant_of
    from cgrseg.models.deploy import deploy
    from cgrseg.runner.protocols import describe
    _check(args)
    torch.backends.cudnn.benchmark = False  # as tools/benchmark.py
    dev = resolve_device(args.device)
    cfg = _test_config(args.config, args.data_root, args.crop)
    loader, n_images = _loader(cfg, _workers(args.workers, cfg, dev))
    models = {'': _model(cfg, args.checkpoint, dev)}
    if args.deploy:  # channels-last measured faster on CPU only (docs/benchmarks.md)
        models['_deploy'] = deploy(models[''], channels_last=dev.type == 'cpu')
    protocols = {}
    for suffix, model in models.items():
        bench = mmseg_benchmark(model, dev, loader, args.images, args.skip)
        protocols[PAPER_PROTOCOL + suffix] = {**bench, 'distinct_images': min(n_images, args.images),
                                              'test_protocol': describe(cfg), 'deploy': bool(suffix)}
        if suffix:
            protocols[PAPER_PROTOCOL + suffix]['channels_last'] = dev.type == 'cpu'
        fixed = fixed_size(model, dev, args.shape, args.batch_size, args.dtype, args.warmup, args.repeats,
                           args.iters)
        protocols[FIXED_SIZE + suffix] = {**fixed, 'deploy': bool(suffix)}
    paper = protocols[PAPER_PROTOCOL]
    return {
        'model': model_name(args.config), 'variant': variant_of(args.config), 'dataset': dataset_of(cfg),
        'config': str(args.config), 'img_per_s': paper['img_per_s'], 'protocol': PAPER_PROTOCOL,
        'batch_size': 1, 'dtype': 'float32', 'protocols': protocols,
        'device': dev.type, 'device_name': device_name(dev),
        'torch': torch.__version__, 'cuda': torch.version.cuda if dev.type == 'cuda' else None,
        'threads': torch.get_num_threads(), 'checkpoint': args.checkpoint,
        'dataset_manifest_sha256': sha256_file(args.manifest) if args.manifest else None,
        'note': None if dev.type == 'cuda' else 'measured on CPU: not comparable with the paper (GPU)',
    }


def run(args):
    if args.out:
        check_output_file(args.out, [args.config, args.checkpoint, args.manifest])
    result = measure(args)
    if args.out:
        write_json(args.out, result)
    line = ', '.join(f"{name} {p['img_per_s']:.1f}" for name, p in result['protocols'].items())
    print(f"{result['model']} {result['dataset']} on {result['device_name']}: img/s {line}")
    return 0


def add_parser(sub):
    p = sub.add_parser('throughput', help='img/s of a config model (benchmark)', description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--data-root', help="prepared data directory, replacing the configs' data/prepared")
    p.add_argument('--manifest', help="the prepared data set's manifest; its sha256 is recorded")
    p.add_argument('--crop', type=optional(R.option(R.SIDE)), metavar='SIZE|none',
                   help='scale the test resize as `cgrseg train --crop` does (demo; none: unchanged)')
    p.add_argument('--checkpoint', help='weights to load (default: the initialisation)')
    p.add_argument('--device', default='auto', help='auto (cuda if available), cpu, cuda, cuda:N')
    p.add_argument('--images', type=R.option(R.COUNT), default=200, help='mmseg_benchmark: images passed (default 200)')
    p.add_argument('--skip', type=R.option(R.OPTIONAL_COUNT), default=5, help='mmseg_benchmark: first images not counted (5)')
    p.add_argument('--workers', type=R.option(R.WORKERS),
                   help="mmseg_benchmark: loader workers (default: the config's on CUDA, 0 on CPU)")
    p.add_argument('--deploy', action='store_true', help='also measure the deploy-mode model (labelled)')
    p.add_argument('--shape', nargs=2, type=R.option(R.SIDE), default=(512, 512), metavar=('H', 'W'),
                   help='fixed_size: input size (default 512 512)')
    p.add_argument('--batch-size', type=R.option(R.BATCH), default=1, help='fixed_size: batch size')
    p.add_argument('--dtype', choices=('float32', 'float16'), default='float32', help='fixed_size: dtype')
    p.add_argument('--warmup', type=R.option(R.OPTIONAL_COUNT), default=10, help='fixed_size: untimed passes')
    p.add_argument('--repeats', type=R.option(R.COUNT), default=10, help='fixed_size: timed runs')
    p.add_argument('--iters', type=R.option(R.COUNT), default=20, help='fixed_size: forward passes per timed run')
    p.add_argument('--out', help='write the result JSON here (atomically)')
    p.set_defaults(func=run)
