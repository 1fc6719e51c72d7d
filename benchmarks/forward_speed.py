"""Forward speed of our CGRSeg vs the naive forward of the same weights (batch 1, 512x512, CPU, eval).

Prints ms per forward for each variant, both paths, and the max abs difference of their outputs
(must be ~0). Usage: python benchmarks/forward_speed.py [--variants t b l] [--repeats 5] [--size 512]
"""
import argparse
import statistics
import time
from pathlib import Path

import torch

from cgrseg.models.build import build_model
from cgrseg.models.naive import naive_mode

CONFIG = Path(__file__).resolve().parents[1] / 'configs' / 'cgrseg' / 'cgrseg-{}_ade20k_160k.py'


def time_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--variants', nargs='+', default=['t', 'b', 'l'])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--size', type=int, default=512)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, input 1x3x{args.size}x{args.size}')
    for v in args.variants:
        model = build_model(str(CONFIG).format(v)).eval()
        with torch.no_grad():
            ours = time_ms(lambda: model.encode_decode(x, None), args.repeats)
            out = model.encode_decode(x, None)
            with naive_mode():
                naive = time_ms(lambda: model.encode_decode(x, None), args.repeats)
                ref = model.encode_decode(x, None)
        diff = (out - ref).abs().max().item()
        print(f'cgrseg-{v}: ours {ours:8.1f} ms   naive {naive:8.1f} ms   speed-up {naive / ours:5.2f}x   '
              f'max|diff| {diff:.2e}')


if __name__ == '__main__':
    main()
