"""Parameters and GFLOPs of a config's model at a given input size, in two named conventions.

- ``mmcv``: ``mmcv.cnn.get_model_complexity_info`` on ``forward_dummy`` — what mmseg's
  ``tools/get_flops.py`` prints. It counts one multiply-accumulate as one FLOP for convolutions and
  linear layers and adds element-wise work of norms, activations, pooling and upsampling; it does
  not see functional ops (the attention matmuls, interpolations in ``F``).
- ``conv_linear_macs``: multiply-accumulates of every ``nn.Conv2d`` and ``nn.Linear`` call — the
  "FLOPs = MACs" convention of efficient-segmentation tables, and the one the diff judges.
- ``matmul_macs`` (extra, for information): the multiply-accumulates of tensor matrix products
  (attention ``q @ k`` / ``attn @ v``, class prototypes, DPG pooling) that neither convention counts.
"""
from contextlib import contextmanager

import torch
import torch.nn as nn

from cgrseg.io import write_json

CONVENTIONS = {
    'mmcv': 'mmcv.cnn.get_model_complexity_info(forward_dummy), as mmseg tools/get_flops.py',
    'conv_linear_macs': 'multiply-accumulates of nn.Conv2d and nn.Linear calls; 1 MAC = 1 FLOP',
    'matmul_macs': 'multiply-accumulates of tensor matmuls (@), counted by neither of the above',
}


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def _conv_macs(module, out):
    k = module.weight[0].numel()  # in_channels/groups * kh * kw
    return out.numel() // out.shape[0] * k


@contextmanager
def _matmul_counter(counter):
    """Count MACs of the ``@`` operator while active."""
    original = torch.Tensor.__matmul__

    def counted(a, b):
        out = original(a, b)
        counter['matmul'] += out.numel() // out.shape[0] * a.shape[-1]
        return out

    torch.Tensor.__matmul__ = counted
    try:
        yield
    finally:
        torch.Tensor.__matmul__ = original


def count_macs(model, shape):
    """MACs per image of conv+linear and of matmuls in ``model.forward_dummy`` at ``shape`` (C, H, W)."""
    counter = {'conv_linear': 0, 'matmul': 0}

    def hook(module, inputs, out):
        if isinstance(module, nn.Linear):
            counter['conv_linear'] += out.numel() // out.shape[0] * module.in_features
        else:
            counter['conv_linear'] += _conv_macs(module, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad(), _matmul_counter(counter):
            model.forward_dummy(torch.zeros(1, *shape))
    finally:
        for h in handles:
            h.remove()
    return counter


def mmcv_flops(model, shape):
    from mmcv.cnn import get_model_complexity_info
    forward = model.forward
    model.forward = model.forward_dummy
    try:
        flops, _ = get_model_complexity_info(model, tuple(shape), print_per_layer_stat=False, as_strings=False)
    finally:
        model.forward = forward
    return flops


def measure(config, height, width, options=None):
    from cgrseg.models.build import build_model
    from cgrseg.mmseg_config import MODEL, load_config
    cfg = load_config(config, options, needs=MODEL)
    model = build_model(cfg).eval()
    shape = (3, height, width)
    macs = count_macs(model, shape)
    return {
        'model': model_name(config), 'variant': variant_of(config), 'dataset': dataset_of(cfg),
        'config': str(config), 'input_shape': list(shape),
        'num_classes': model.decode_head.num_classes,
        'params_M': round(count_params(model) / 1e6, 4),
        'gflops': {'mmcv': round(mmcv_flops(model, shape) / 1e9, 4),
                   'conv_linear_macs': round(macs['conv_linear'] / 1e9, 4),
                   'matmul_macs': round(macs['matmul'] / 1e9, 4)},
        'conventions': CONVENTIONS,
        'cfg_options': dict(options or {}),
    }


def model_name(config):
    from pathlib import Path
    return Path(config).name.split('_')[0]


def variant_of(config):
    name = model_name(config)
    return name.split('-', 1)[1] if '-' in name else name


def dataset_of(cfg):
    types = {'ADE20KDataset': 'ade20k', 'COCOStuffDataset': 'coco_stuff10k', 'PascalContextDataset59': 'pascal_context'}
    data = cfg.get('data')
    test = data.get('test') if isinstance(data, dict) else None
    kind = test.get('type') if isinstance(test, dict) else None  # only a label: no data is needed
    return types.get(kind, kind)


def run(args):
    from cgrseg.mmseg_config import parse_options
    result = measure(args.config, *args.shape, parse_options(args.cfg_options))
    if args.out:
        write_json(args.out, result)
    g = result['gflops']
    print(f"{result['model']} {args.shape[0]}x{args.shape[1]}: params {result['params_M']:.3f} M, "
          f"GFLOPs {g['conv_linear_macs']:.2f} (conv_linear_macs) / {g['mmcv']:.2f} (mmcv)")
    return 0


def add_parser(sub):
    p = sub.add_parser('flops', help='params and GFLOPs of a config at an input size (two conventions)',
                       description=__doc__, formatter_class=__import__('argparse').RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--shape', nargs=2, type=int, default=(512, 512), metavar=('H', 'W'))
    p.add_argument('--out', help='write the result JSON here (atomically)')
    p.add_argument('--cfg-options', nargs='*', default=[], metavar='KEY=VALUE',
                   help='measure the config with these entries changed (a hypothesis, '
                        'configs/paper/hypotheses.yaml), e.g. model.decode_head.next_repeat=5')
    p.set_defaults(func=run)
