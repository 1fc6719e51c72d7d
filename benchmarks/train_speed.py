"""Time our training step against the mirror of the official computation, interleaved in one process.

One step = forward with losses, mmseg's loss parsing, zero_grad, backward, AdamW step (the config's
optimizer, built by mmcv as the runner builds it). "ours" is the model `cgrseg train` builds; "official"
is `cgrseg.models.mirror.official_mirror` of it (same weights, the authors' ops and order, mmseg's top-k
accuracy). Rounds alternate which side goes first; prints s/iter per round, the medians, the ratio
(official / ours: >= 1.0 means ours is at least as fast) and a torch.profiler breakdown of one step each.
tests/models/test_mirror.py checks that both give the same loss and gradients.

    .venv/bin/python benchmarks/train_speed.py [--variant t] [--crop 256] [--batch 4] [--threads 2]
                                               [--rounds 5] [--no-profile]
"""
import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from mmcv.runner import build_optimizer
from torch.profiler import ProfilerActivity, profile, record_function

from cgrseg.mmseg_config import load_config
from cgrseg.models.build import build_model
from cgrseg.models.mirror import official_mirror
from cgrseg.runner.config_rewrites import drop_pretrained

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {v: REPO / f'configs/cgrseg/cgrseg-{v}_ade20k_160k.py' for v in 't' 'b' 'l'}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--variant', choices=sorted(CONFIGS), default='t')
    p.add_argument('--crop', type=int, default=256)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--no-profile', action='store_true')
    return p.parse_args()


class Trainee:
    """A model, its optimizer and one fixed batch: ``step()`` runs one training iteration."""

    def __init__(self, model, cfg, batch):
        self.model, self.batch = model.train(), batch
        self.optimizer = build_optimizer(model, cfg.optimizer)

    def step(self):
        with record_function('forward'):
            loss, _ = self.model._parse_losses(self.model.forward_train(*self.batch))
        with record_function('backward'):
            self.optimizer.zero_grad()
            loss.backward()
        with record_function('optimizer'):
            self.optimizer.step()

    def timed(self):
        start = time.perf_counter()
        self.step()
        return time.perf_counter() - start


def make_batch(crop, batch, classes):
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(batch, 3, crop, crop, generator=gen)
    label = torch.randint(0, classes, (batch, 1, crop, crop), generator=gen)
    meta = dict(img_shape=(crop, crop, 3), ori_shape=(crop, crop, 3), pad_shape=(crop, crop, 3), flip=False)
    return img, [meta] * batch, label


def breakdown(trainee, rows=12):
    trainee.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainee.step()
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e6 for e in events if e.key in ('forward', 'backward', 'optimizer')}
    print('  phases (CPU s): ' + ', '.join(f'{k} {phases.get(k, 0):.3f}' for k in ('forward', 'backward', 'optimizer')))
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted((e for e in events if not e.key.startswith(('forward', 'backward', 'optimizer'))),
                 key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    for e in top:
        print(f'  {e.key[:44]:44s} {e.self_cpu_time_total / 1e3:9.1f} ms {100 * e.self_cpu_time_total / total:5.1f} %'
              f'  x{e.count}')


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(CONFIGS[args.variant])
    drop_pretrained(cfg)                                     # random weights: timing only
    model = build_model(cfg)
    model.init_weights()
    batch = make_batch(args.crop, args.batch, cfg.model.decode_head.num_classes)
    sides = {'ours': Trainee(model, cfg, batch),
             'official': Trainee(official_mirror(copy.deepcopy(model)), cfg, batch)}
    for trainee in sides.values():                           # warm-up: allocator, oneDNN primitives
        trainee.step()
    times = {name: [] for name in sides}
    print(f'CGRSeg-{args.variant.upper()}, crop {args.crop}, batch {args.batch}, {args.threads} threads, '
          f'torch {torch.__version__}; s/iter per round (alternating order)')
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            times[name].append(sides[name].timed())
        print(f'round {r + 1}: ' + '  '.join(f'{n} {times[n][-1]:.3f}' for n in sides))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f'median s/iter: ours {med["ours"]:.3f}, official {med["official"]:.3f}; '
          f'official / ours = {med["official"] / med["ours"]:.3f}x')
    ratios = [o / u for o, u in zip(times['official'], times['ours'])]
    print('per-round official / ours: ' + ' '.join(f'{x:.3f}' for x in ratios))
    if not args.no_profile:
        for name, trainee in sides.items():
            print(f'profile of one step, {name}:')
            breakdown(trainee)


if __name__ == '__main__':
    main()
