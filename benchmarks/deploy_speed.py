"""Deploy mode vs the official forward path (batch 1, 512x512, eval, no grad, CPU by default).

For each variant, on the same weights (BatchNorm statistics and layer scales randomised so that
folding errors would show): "naive" is the official code's forward, mirrored by
cgrseg.models.naive (unfused, bias gathered and resized on every call); "ours" our unfused model;
"deploy" cgrseg.models.deploy (BNs and scales folded); "deploy+cl" the same, channels-last.
The paths are timed round-robin (one pass of each per round) so that load from other jobs hits
them alike; the median per path is printed with the speed-up over naive and the largest output
difference relative to the largest unfused output magnitude (must stay under 1e-4).
Usage: python benchmarks/deploy_speed.py [--variants t b l] [--rounds 7] [--size 512] [--device cpu]
"""
import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from cgrseg.models.build import build_model
from cgrseg.models.deploy import deploy
from cgrseg.models.naive import naive_mode

CONFIG = Path(__file__).resolve().parents[1] / 'configs' / 'cgrseg' / 'cgrseg-{}_ade20k_160k.py'


def randomise(model, seed=0):
    """Trained-like BN statistics and affine parameters, and layer scales (the initial ones are identities)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(tensor, low, high):
        tensor.copy_(torch.rand(tensor.shape, generator=gen) * (high - low) + low)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                rand(module.running_mean, -0.2, 0.2)
                rand(module.running_var, 0.5, 1.5)
                rand(module.weight, 0.5, 1.5)
                rand(module.bias, -0.2, 0.2)
        for name, param in model.named_parameters():
            if 'layer_scale' in name or name.endswith('gamma'):
                rand(param, 0.1, 0.5)
    return model


def paths(model, channels_last_input):
    fused = deploy(model)
    fused_cl = deploy(model, channels_last=True)

    def naive(x):
        with naive_mode():
            return model.encode_decode(x, None)

    return {
        'naive': naive,
        'ours': lambda x: model.encode_decode(x, None),
        'deploy': lambda x: fused.encode_decode(x, None),
        'deploy+cl': lambda x: fused_cl.encode_decode(channels_last_input, None),
    }


def time_round_robin(fns, x, rounds, sync):
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn(x)  # warm-up (and bias caches)
    for _ in range(rounds):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn(x)
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variants', nargs='+', default=['t', 'b', 'l'])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, '
          f'input 1x3x{args.size}x{args.size}, median of {args.rounds} round-robin rounds')
    for v in args.variants:
        model = randomise(build_model(str(CONFIG).format(v))).eval().to(device)
        fns = paths(model, x_cl)
        with torch.no_grad():
            ms = time_round_robin(fns, x, args.rounds, sync)
            ref = fns['ours'](x)
            scale = ref.abs().max().item()
            diffs = {name: (fns[name](x) - ref).abs().max().item() / scale for name in fns}
        cells = '   '.join(f'{name} {ms[name]:7.1f} ms ({ms["naive"] / ms[name]:4.2f}x, rel {diffs[name]:.1e})'
                           for name in fns)
        print(f'cgrseg-{v}: {cells}')


if __name__ == '__main__':
    main()
