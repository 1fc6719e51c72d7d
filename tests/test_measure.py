"""Params/FLOPs counting and the flops command (throughput: tests/test_throughput.py)."""
import json
import subprocess
import sys

import torch
import torch.nn as nn

from cgrseg.measure.flops import count_macs
from reference import ade20k_config, reference_file, weights_module

NON_PARAMETERS = ('running_mean', 'running_var', 'num_batches_tracked', 'attention_biases', 'attention_bias_idxs',
                  'attention_bias_idxs_seg')


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


def test_flops_command_counts_the_official_parameters(tmp_path):
    rows = weights_module().read_keys(reference_file('cgrseg-t_ade20k.keys.tsv'))
    expected = sum(torch.Size(shape).numel() for key, shape, _ in rows if key.rsplit('.', 1)[-1] not in NON_PARAMETERS)
    out = tmp_path / 'f.json'
    proc = subprocess.run([sys.executable, '-m', 'cgrseg.cli', 'flops', str(ade20k_config('t')), '--shape', '512',
                           '512', '--out', str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result['params_M'] == round(expected / 1e6, 4)
    assert result['input_shape'] == [3, 512, 512] and result['num_classes'] == 150
    g = result['gflops']
    assert 0 < g['conv_linear_macs'] < g['mmcv']  # mmcv adds norms/activations on top of conv+linear
    assert 'GFLOPs' in proc.stdout


def test_flops_missing_config_is_one_clear_error(tmp_path):
    out = tmp_path / 'f.json'
    proc = subprocess.run([sys.executable, '-m', 'cgrseg.cli', 'flops', 'nope.py', '--out', str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == 'cgrseg flops: error: nope.py: no such config file'
    assert not out.exists()
