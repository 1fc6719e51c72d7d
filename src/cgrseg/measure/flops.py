"""Parameters and GFLOPs of a config's model at a given input size, in three named conventions.

- ``mmcv``: ``mmcv.cnn.get_model_complexity_info`` on ``forward_dummy`` — what mmseg's
  ``tools/get_flops.py`` prints. It counts one multiply-accumulate as one FLOP for convolutions and
  linear layers and adds element-wise work of norms, activations, pooling and upsampling; it does
  not see functional ops (the attention matmuls, interpolations in ``F``).
- ``conv_linear_macs``: multiply-accumulates of every ``nn.Conv2d`` and ``nn.Linear`` call — the
  "FLOPs = MACs" convention of efficient-segmentation tables, and the one the diff judges.
- ``fvcore`` (shown, never judged): fvcore's ``FlopCountAnalysis`` of the traced ``forward_dummy``:
  every aten op it has a formula for (convolutions, matmuls, norms, upsampling, adaptive pooling;
  1 MAC = 1 FLOP), so the attention matmuls are in it; element-wise ops are not.
- ``matmul_macs`` (extra, for information): the multiply-accumulates of tensor matrix products
  (attention ``q @ k`` / ``attn @ v``, class prototypes, DPG pooling) that the first two do not count.

``skipped_operators`` lists, per convention, the aten operators of this model it does not count,
each with fvcore's GFLOPs where fvcore has a formula for it (null where none has).
"""
from contextlib import contextmanager

import torch
import torch.nn as nn

from cgrseg import ranges as R
from cgrseg.io import check_output_file, write_json

CONVENTIONS = {
    'mmcv': 'mmcv.cnn.get_model_complexity_info(forward_dummy), as mmseg tools/get_flops.py',
    'conv_linear_macs': 'multiply-accumulates of nn.Conv2d and nn.Linear calls; 1 MAC = 1 FLOP',
    'fvcore': 'fvcore FlopCountAnalysis(forward_dummy): conv, matmul/bmm/einsum, linear, norms, '
              'upsampling, adaptive pooling; 1 MAC = 1 FLOP; element-wise ops not counted (shown, never judged)',
    'matmul_macs': 'multiply-accumulates of tensor matmuls (@), counted by neither mmcv nor conv_linear_macs',
}
# fvcore's names of the ops a conv/linear-only count covers
CONV_LINEAR_OPS = ('conv', 'linear', 'addmm')
MATMUL_OPS = ('matmul', 'bmm', 'einsum', 'mm')


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


@contextmanager
def _dummy_forward(model):
    """``model(x)`` runs ``forward_dummy`` (the network without loss or post-processing), as
    mmseg's tools/get_flops.py arranges."""
    forward = model.forward
    model.forward = model.forward_dummy
    try:
        yield model
    finally:
        model.forward = forward


def mmcv_flops(model, shape):
    from mmcv.cnn import get_model_complexity_info
    with _dummy_forward(model):
        flops, _ = get_model_complexity_info(model, tuple(shape), print_per_layer_stat=False, as_strings=False)
    return flops


def fvcore_analysis(model, shape):
    """fvcore's FlopCountAnalysis of ``forward_dummy`` at ``shape`` (C, H, W), computed."""
    from fvcore.nn import FlopCountAnalysis
    with _dummy_forward(model), torch.no_grad():
        analysis = FlopCountAnalysis(model, torch.zeros(1, *shape))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analysis.total()   # traces now, while forward is forward_dummy
    return analysis


def _op(name):
    return name.split('::')[-1]


def direct_ops(analysis, model):
    """{module name: Counter(op: fvcore flops, or calls for ops without a formula)} of the ops each
    module runs itself, not through a child module."""
    from collections import Counter
    counted = analysis.by_module_and_operator()
    ops = {}
    for name, _ in model.named_modules():
        ops[name] = Counter({_op(k): v for k, v in counted.get(name, {}).items()})
        ops[name].update({_op(k): v for k, v in analysis.unsupported_ops(name).items()})
    direct = {}
    for name, module in model.named_modules():
        own = Counter(ops[name])
        for child, _ in module.named_children():
            own.subtract(ops[f'{name}.{child}' if name else child])
        direct[name] = +own
    return direct


def traced_macs(analysis, model):
    """conv_linear and matmul MACs read from the fvcore trace: the same counts as ``count_macs``
    (tested), without a second forward pass."""
    conv_linear = sum(ops[op] for name, ops in direct_ops(analysis, model).items()
                      if isinstance(model.get_submodule(name), (nn.Conv2d, nn.Linear))
                      for op in CONV_LINEAR_OPS if op in ops)
    matmul = sum(v for k, v in analysis.by_operator().items() if _op(k) in MATMUL_OPS)
    return {'conv_linear': conv_linear, 'matmul': matmul}


def skipped_operators(analysis, model):
    """Per convention, the ops of this model it leaves out: {op: fvcore GFLOPs of the part left
    out, or None where fvcore has no formula for the op either}."""
    from collections import Counter
    from mmcv.cnn.utils.flops_counter import get_modules_mapping
    mmcv_types = tuple(get_modules_mapping())
    rules = {  # does this convention count `op` run directly by `module`?
        'mmcv': lambda module, op: type(module) in mmcv_types,
        'conv_linear_macs': lambda module, op: (isinstance(module, (nn.Conv2d, nn.Linear))
                                                and op in CONV_LINEAR_OPS),
    }
    formulas = {_op(k) for k in analysis.by_operator()}
    left_out = {name: Counter() for name in rules}
    for name, ops in direct_ops(analysis, model).items():
        module = model.get_submodule(name)
        for convention, counts in rules.items():
            left_out[convention].update({op: v for op, v in ops.items() if not counts(module, op)})
    left_out['fvcore'] = Counter({_op(k): n for k, n in analysis.unsupported_ops().items()})
    return {convention: {op: round(value / 1e9, 4) if op in formulas else None
                         for op, value in sorted(ops.items())}
            for convention, ops in left_out.items()}


def measure(config, height, width, options=None):
    from cgrseg.models.build import build_model
    from cgrseg.mmseg_config import MODEL, load_config
    cfg = load_config(config, options, needs=MODEL)
    model = build_model(cfg).eval()
    shape = (3, height, width)
    analysis = fvcore_analysis(model, shape)   # one traced forward gives three of the counts
    macs = traced_macs(analysis, model)
    return {
        'model': model_name(config), 'variant': variant_of(config), 'dataset': dataset_of(cfg),
        'config': str(config), 'input_shape': list(shape),
        'num_classes': model.decode_head.num_classes,
        'params_M': round(count_params(model) / 1e6, 4),
        'gflops': {'mmcv': round(mmcv_flops(model, shape) / 1e9, 4),
                   'conv_linear_macs': round(macs['conv_linear'] / 1e9, 4),
                   'fvcore': round(analysis.total() / 1e9, 4),
                   'matmul_macs': round(macs['matmul'] / 1e9, 4)},
        'conventions': CONVENTIONS,
        'skipped_operators': skipped_operators(analysis, model),
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
    if args.out:
        check_output_file(args.out, [args.config])
    result = measure(args.config, *args.shape, parse_options(args.cfg_options))
    if args.out:
        write_json(args.out, result)
    g = result['gflops']
    print(f"{result['model']} {args.shape[0]}x{args.shape[1]}: params {result['params_M']:.3f} M, "
          f"GFLOPs {g['mmcv']:.2f} (mmcv, judged) / {g['conv_linear_macs']:.2f} (conv_linear_macs) / "
          f"{g['fvcore']:.2f} (fvcore)")
    return 0


def add_parser(sub):
    p = sub.add_parser('flops', help='params and GFLOPs of a config at an input size (three conventions)',
                       description=__doc__, formatter_class=__import__('argparse').RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--shape', nargs=2, type=R.option(R.SIDE), default=(512, 512), metavar=('H', 'W'))
    p.add_argument('--out', help='write the result JSON here (atomically)')
    p.add_argument('--cfg-options', nargs='*', default=[], metavar='KEY=VALUE',
                   help='measure the config with these entries changed (a hypothesis, '
                        'configs/paper/hypotheses.yaml), e.g. model.decode_head.next_repeat=5')
    p.set_defaults(func=run)
