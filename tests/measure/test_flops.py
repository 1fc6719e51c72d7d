"""Params/FLOPs counting and the flops command (throughput: tests/measure/test_throughput.py)."""
import json
import subprocess
import sys

import torch
import torch.nn as nn

import pytest

from cgrseg import schemas
from cgrseg.measure.flops import count_macs, fvcore_analysis, skipped_operators, traced_macs
from reference import VARIANTS, ade20k_config, official_keys

NON_PARAMETERS = ('running_mean', 'running_var', 'num_batches_tracked', 'attention_biases', 'attention_bias_idxs',
                  'attention_bias_idxs_seg')
# At 512x512 with the ADE20K head (150 classes), the official code counts, with mmcv's
# get_model_complexity_info on forward_dummy (mmseg's tools/get_flops.py): T 3.998, B 7.674,
# L 14.911 GFLOPs; its state dicts (tests/reference key lists) hold 9.365 / 19.115 / 35.678 M params.
OFFICIAL_GFLOPS_MMCV = {'t': 3.998, 'b': 7.674, 'l': 14.911}
OFFICIAL_PARAMS_M = {'t': 9.365, 'b': 19.115, 'l': 35.678}
# conv + linear multiply-accumulates at 512x512, counted by torch's own torch.utils.flop_counter
# (aten.convolution + aten.addmm/mm FLOPs / 2, torch 2.12.1; reproduced live at a smaller size by
# test_conv_linear_macs_agree_with_torchs_flop_counter).
CONV_LINEAR_GMACS = {'t': 3.9452, 'b': 7.5932, 'l': 14.7886}
# fvcore's FlopCountAnalysis of forward_dummy at 512x512 (fvcore 0.1.5.post20221221): conv + matmul
# + norms + upsampling + adaptive pooling, measured once and pinned (the parts are checked above)
FVCORE_GFLOPS = {'t': 4.7785, 'b': 8.8965, 'l': 16.5032}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.fc = nn.Linear(8, 5)

    def forward_dummy(self, x):
        y = self.dw(self.conv(x))             # 32*32*8*27 + 32*32*8*9
        t = y.flatten(2).transpose(1, 2)      # 1, 1024, 8
        return self.fc(t).sum() + ((t @ t.transpose(1, 2)) @ t).sum()  # 1024*8*5; 2 * 1024*1024*8


def test_mac_counter_on_a_hand_counted_model():
    macs = count_macs(Tiny(), (3, 32, 32))
    assert macs['conv_linear'] == 32 * 32 * 8 * 27 + 32 * 32 * 8 * 9 + 1024 * 8 * 5
    assert macs['matmul'] == 2 * 1024 * 1024 * 8
    assert torch.Tensor.__matmul__.__name__ != 'counted'  # counter removed afterwards


def test_fvcore_counts_convs_linears_and_matmuls_and_lists_what_each_convention_skips():
    model = Tiny().eval()
    analysis = fvcore_analysis(model, (3, 32, 32))
    # hand count: the two convolutions, the linear layer and both matmuls (1 MAC = 1 FLOP)
    assert analysis.total() == 32 * 32 * 8 * 27 + 32 * 32 * 8 * 9 + 1024 * 8 * 5 + 2 * 1024 * 1024 * 8
    assert traced_macs(analysis, model) == count_macs(model, (3, 32, 32))
    skipped = skipped_operators(analysis, model)
    matmul_g = round(2 * 1024 * 1024 * 8 / 1e9, 4)
    # mmcv hooks nn.Conv2d and nn.Linear only here: the functional matmuls, sum and add are left out
    assert skipped['mmcv'] == {'add': None, 'matmul': matmul_g, 'sum': None}
    assert skipped['conv_linear_macs'] == {'add': None, 'matmul': matmul_g, 'sum': None}
    assert skipped['fvcore'] == {'add': None, 'sum': None}   # no fvcore formula for these


def test_the_traced_counts_equal_the_hook_counter_on_cgrseg():
    from cgrseg.models.build import build_model
    model = build_model(ade20k_config('t')).eval()
    shape = (3, 128, 160)
    analysis = fvcore_analysis(model, shape)
    assert traced_macs(analysis, model) == count_macs(model, shape)
    by_op = {k: v for k, v in analysis.by_operator().items()}
    assert analysis.total() == sum(by_op.values())
    assert set(by_op) == {'conv', 'matmul', 'batch_norm', 'upsample_bilinear2d', 'adaptive_avg_pool2d',
                          'layer_norm'}
    skipped = skipped_operators(analysis, model)
    # mmcv's counter sees no functional op: the attention matmuls and F.interpolate are skipped, the
    # upsampling inside nn.Upsample modules is not
    in_modules = sum(analysis.by_module()[name] for name, m in model.named_modules() if isinstance(m, nn.Upsample))
    assert 0 < in_modules < by_op['upsample_bilinear2d']
    assert skipped['mmcv']['matmul'] == round(by_op['matmul'] / 1e9, 4)
    assert skipped['mmcv']['upsample_bilinear2d'] == round((by_op['upsample_bilinear2d'] - in_modules) / 1e9, 4)
    assert 'conv' not in skipped['mmcv'] and 'conv' not in skipped['conv_linear_macs']
    assert 'matmul' not in skipped['fvcore'] and 'gelu' in skipped['fvcore']


def official_params(variant):
    return sum(torch.Size(shape).numel() for key, shape, _ in official_keys(variant)
               if key.rsplit('.', 1)[-1] not in NON_PARAMETERS)


@pytest.mark.parametrize('variant', VARIANTS)
def test_flops_command_gives_the_official_counts(run_cli, tmp_path, variant):
    out = tmp_path / 'f.json'
    result = run_cli('flops', ade20k_config(variant), '--shape', 512, 512, '--out', out)
    assert result.code == 0, result.err
    doc = json.loads(out.read_text())
    assert schemas.problem(doc, 'flops') is None   # workflow/schemas/flops.schema.json
    assert doc['input_shape'] == [3, 512, 512] and doc['num_classes'] == 150
    assert doc['params_M'] == round(official_params(variant) / 1e6, 4)
    g = doc['gflops']
    # the official counts carry 3 decimals, ours 4: equal up to both roundings
    assert doc['params_M'] == pytest.approx(OFFICIAL_PARAMS_M[variant], abs=5.5e-4)
    assert g['mmcv'] == pytest.approx(OFFICIAL_GFLOPS_MMCV[variant], abs=5.5e-4)
    assert g['conv_linear_macs'] == CONV_LINEAR_GMACS[variant]
    assert g['fvcore'] == FVCORE_GFLOPS[variant]   # shown, never judged
    assert g['fvcore'] == pytest.approx(g['conv_linear_macs'] + g['matmul_macs'] + sum(
        v for op, v in doc['skipped_operators']['conv_linear_macs'].items() if v is not None and op != 'matmul'),
        abs=5e-4)
    assert set(doc['skipped_operators']) == {'mmcv', 'conv_linear_macs', 'fvcore'}
    assert 'GFLOPs' in result.out


def test_conv_linear_macs_agree_with_torchs_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode
    from cgrseg.models.build import build_model
    model = build_model(ade20k_config('t')).eval()
    shape = (3, 128, 160)
    ours = count_macs(model, shape)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.forward_dummy(torch.zeros(1, *shape))
    flops = {str(op).split('.')[1]: n for op, n in counter.get_flop_counts()['Global'].items()}
    linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    assert linear == 0  # CGRSeg has no nn.Linear: every matmul aten op is a tensor product (@)
    assert ours['conv_linear'] == flops['convolution'] // 2
    assert ours['matmul'] == sum(n for op, n in flops.items() if op != 'convolution') // 2


def test_flops_missing_config_is_one_clear_error(tmp_path):
    out = tmp_path / 'f.json'
    proc = subprocess.run([sys.executable, '-m', 'cgrseg.cli', 'flops', 'nope.py', '--out', str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == 'cgrseg flops: error: nope.py: no such config file'
    assert not out.exists()
