"""Inference throughput (img/s) of a config's ``EncoderDecoder``.

Protocol: eval mode, no grad, random input at the test resolution, ``--warmup`` untimed passes,
then ``--repeats`` timed runs of ``--iters`` passes each (CUDA synchronised around each run);
the reported img/s is the median over runs. The device, dtype, batch size and library versions go
into the JSON: throughput is comparable only between identical devices. This is a benchmark,
not a test.
"""
import argparse
import platform
import statistics
import time

import torch

from cgrseg.errors import CGRSegError
from cgrseg.io import write_json


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


def timed_runs(fn, device, warmup, repeats, iters):
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
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


def measure(config, height, width, device='auto', batch_size=1, dtype='float32', warmup=10, repeats=10, iters=20):
    from cgrseg.models.build import build_model
    from cgrseg.config import MODEL, load_config
    from cgrseg.measure.flops import dataset_of, model_name, variant_of
    cfg = load_config(config, needs=MODEL)
    dev = resolve_device(device)
    if dtype == 'float16' and dev.type != 'cuda':
        raise CGRSegError('--dtype float16 needs a CUDA device (autocast)')
    model = build_model(cfg).eval().to(dev)
    x = torch.randn(batch_size, 3, height, width, device=dev)

    def forward():
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=dtype == 'float16'):
            model.forward_dummy(x)

    times = timed_runs(forward, dev, warmup, repeats, iters)
    per_run = [batch_size * iters / t for t in times]
    return {
        'model': model_name(config), 'variant': variant_of(config), 'dataset': dataset_of(cfg),
        'config': str(config), 'img_per_s': round(statistics.median(per_run), 2),
        'img_per_s_runs': [round(v, 2) for v in per_run],
        'device': dev.type, 'device_name': device_name(dev), 'dtype': dtype, 'batch_size': batch_size,
        'input_shape': [3, height, width], 'warmup': warmup, 'repeats': repeats, 'iters_per_repeat': iters,
        'torch': torch.__version__, 'cuda': torch.version.cuda if dev.type == 'cuda' else None,
        'threads': torch.get_num_threads(),
        'note': None if dev.type == 'cuda' else 'measured on CPU: not comparable with the paper (GPU)',
    }


def run(args):
    result = measure(args.config, *args.shape, device=args.device, batch_size=args.batch_size, dtype=args.dtype,
                     warmup=args.warmup, repeats=args.repeats, iters=args.iters)
    if args.out:
        write_json(args.out, result)
    print(f"{result['model']} {args.shape[0]}x{args.shape[1]} batch {args.batch_size} {args.dtype} on "
          f"{result['device_name']}: {result['img_per_s']:.1f} img/s (median of {args.repeats})")
    return 0


def add_parser(sub):
    p = sub.add_parser('throughput', help='img/s of a config model (benchmark)', description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--shape', nargs=2, type=int, default=(512, 512), metavar=('H', 'W'))
    p.add_argument('--device', default='auto', help='auto (cuda if available), cpu, cuda, cuda:N')
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--dtype', choices=('float32', 'float16'), default='float32')
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--iters', type=int, default=20, help='forward passes per timed run')
    p.add_argument('--out', help='write the result JSON here (atomically)')
    p.set_defaults(func=run)
