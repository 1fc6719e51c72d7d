"""Deploy mode vs the official forward path (batch 1, 512x512, eval, no grad, CPU by default).

For each variant, on the same trained-like random weights (BN statistics, affines and layer scales
away from their initial identities, so that folding errors would show): "naive" is the official code's forward, mirrored by
cgrseg.models.naive (unfused, bias gathered and resized on every call); "ours" our unfused model;
"deploy" cgrseg.models.deploy (BNs and scales folded); "deploy+cl" the same, channels-last.
The paths are timed round-robin (one pass of each per round) so that load from other jobs hits
them alike; the median per path is printed with the speed-up over naive and the largest output
difference relative to the largest unfused output magnitude (must stay under 1e-4).
``--clock cpu`` times the process's CPU time instead of wall time: on a machine shared with other
jobs it measures the work each path does rather than the share of the cores it got (use it with
``--threads 1``, where no thread waits for another).
Usage: python benchmarks/deploy_speed.py [--variants t b l] [--rounds 7] [--size 512] [--device cpu]
       [--threads N] [--clock wall|cpu]
"""
import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from cgrseg.models.build import build_model
from cgrseg.models.deploy import deploy
from cgrseg.models.naive import naive_mode

CONFIG = Path(__file__).resolve().parents[1] / 'configs' / 'cgrseg' / 'cgrseg-{}_ade20k_160k.py'


def trained_like(model, seed=0):
    """Weights with the scales of a trained model, so that every fold matters: fan-in-scaled
    convolutions, BN statistics and affines away from the identity, layer scales ~0.02."""
    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for key, tensor in state.items():
            if not tensor.is_floating_point():
                continue
            x = torch.randn(tensor.shape, generator=gen)
            leaf, fan_in = key.rsplit('.', 1)[-1], math.prod(tensor.shape[1:]) if tensor.dim() > 1 else 1
            if 'layer_scale' in key or leaf == 'gamma':
                x = 0.02 * x  # larger ones make a random deep net's activations explode
            elif leaf == 'running_var':
                x = 0.5 + 0.5 * x.abs()
            elif leaf == 'running_mean':
                x = 0.1 * x
            elif leaf == 'weight':
                x = 1 + 0.1 * x if fan_in == 1 else x / math.sqrt(fan_in)
            else:
                x = 0.1 * x
            tensor.copy_(x)
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


def time_round_robin(fns, x, rounds, sync, clock):
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn(x)  # warm-up (and bias caches)
    for _ in range(rounds):
        for name, fn in fns.items():
            sync()
            start = clock()
            fn(x)
            sync()
            times[name].append(clock() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variants', nargs='+', default=['t', 'b', 'l'])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == 'wall' else time.process_time
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, '
          f'input 1x3x{args.size}x{args.size}, median of {args.rounds} round-robin rounds, {args.clock} clock')
    for v in args.variants:
        model = trained_like(build_model(str(CONFIG).format(v))).eval().to(device)
        fns = paths(model, x_cl)
        with torch.no_grad():
            ms = time_round_robin(fns, x, args.rounds, sync, clock)
            ref = fns['ours'](x)
            scale = ref.abs().max().item()
            diffs = {name: (fns[name](x) - ref).abs().max().item() / scale for name in fns}
        cells = '   '.join(f'{name} {ms[name]:7.1f} ms ({ms["naive"] / ms[name]:4.2f}x, rel {diffs[name]:.1e})'
                           for name in fns)
        print(f'cgrseg-{v}: {cells}')


if __name__ == '__main__':
    main()
