"""Exact protocol counts and non-square inputs, where rounding or symmetry hid mistakes.

- the throughput loops run on a clock that moves only when the model runs, each call by a known
  duration, so img/s is an exact expectation (a loop that skips one image more changes it);
- FLOPs and params of a model whose count depends on height and width apart (a 1x33 kernel without
  padding), at a non-square size, against torch's own counter: H and W swapped gives another count.
"""
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

pytest.importorskip('mmseg')

from cgrseg.measure import throughput as T  # noqa: E402
from conftest import exactly  # noqa: E402
from reference import ade20k_config  # noqa: E402
from test_throughput import Ticks as Clock, bad_head_config, fake_loader  # noqa: E402


class ClockedModel(nn.Module):
    def __init__(self, clock):
        super().__init__()
        self.clock, self.inputs = clock, []

    def forward(self, return_loss, rescale, img, img_metas):
        assert (return_loss, rescale) == (False, True)
        self.clock.tick()

    def forward_dummy(self, x):
        self.inputs.append(tuple(x.shape))
        self.clock.tick()


def test_benchmark_counts_exactly_the_images_after_skip(monkeypatch):
    """200 images, the first 5 not counted: image 5 takes 0.5 s, the 194 after it 0.01 s each."""
    durations = [1000.0] * 5 + [0.5] + [0.01] * 194
    clock = Clock(durations)
    monkeypatch.setattr(T.time, 'perf_counter', clock)
    result = T.mmseg_benchmark(ClockedModel(clock), torch.device('cpu'), fake_loader(7), images=200, skip=5)
    assert clock.durations == []                              # exactly 200 calls
    assert result['img_per_s'] == round(195 / (0.5 + 194 * 0.01), 2) == 79.92
    # one image more or less skipped gives another figure at this rounding
    assert round(194 / (194 * 0.01), 2) != 79.92 and round(196 / (1000 + 0.5 + 194 * 0.01), 2) != 79.92


def test_fixed_size_protocol_counts_warmup_repeats_and_iterations(monkeypatch):
    """2 untimed passes, then 3 runs of 4 passes of a batch of 2 at 64x96; run r's passes take 0.1 (r+1) s."""
    durations = [100.0, 100.0] + [0.1] * 4 + [0.2] * 4 + [0.3] * 4
    clock = Clock(durations)
    monkeypatch.setattr(T.time, 'perf_counter', clock)
    model = ClockedModel(clock)
    result = T.fixed_size(model, torch.device('cpu'), (64, 96), batch_size=2, dtype='float32', warmup=2,
                          repeats=3, iters=4)
    assert clock.durations == [] and set(model.inputs) == {(2, 3, 64, 96)}
    runs = [2 * 4 / (4 * 0.1 * r) for r in (1, 2, 3)]     # images per second of each run
    assert result['img_per_s_runs'] == [round(v, 2) for v in runs] == [20.0, 10.0, 6.67]
    assert result['img_per_s'] == 10.0                       # the median
    assert result['input_shape'] == [3, 64, 96] and (result['batch_size'], result['iters_per_repeat']) == (2, 4)
    assert '64x96' in result['description']


class Strip(nn.Module):
    """A model whose MACs depend on H and W apart: a 1x33 kernel without padding narrows only W."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, (1, 33))
        self.bn = nn.BatchNorm2d(64)
        self.decode_head = SimpleNamespace(num_classes=64)

    def forward_dummy(self, x):
        return self.bn(self.conv(x))


def torch_conv_macs(model, shape):
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.forward_dummy(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2


def test_flops_of_a_non_square_input_keep_height_and_width(run_cli, monkeypatch, tmp_path):
    from mmcv.cnn import get_model_complexity_info
    import cgrseg.models.build as build
    monkeypatch.setattr(build, 'build_model', lambda cfg: Strip())
    out = tmp_path / 'f.json'
    result = run_cli('flops', ade20k_config('t'), '--shape', 256, 384, '--out', out)
    assert result.code == 0, result.err
    doc = json.loads(out.read_text())
    assert doc['input_shape'] == [3, 256, 384]
    macs = torch_conv_macs(Strip(), (3, 256, 384))
    assert macs == 64 * 256 * (384 - 32) * 3 * 33 != torch_conv_macs(Strip(), (3, 384, 256))
    assert doc['gflops']['conv_linear_macs'] == round(macs / 1e9, 4)
    reference = Strip()
    reference.forward = reference.forward_dummy
    flops, params = get_model_complexity_info(reference, (3, 256, 384), print_per_layer_stat=False,
                                              as_strings=False)
    assert doc['gflops']['mmcv'] == round(flops / 1e9, 4)
    assert doc['params_M'] == round(params / 1e6, 4) == round((64 * 3 * 33 + 64 + 2 * 64) / 1e6, 4)
    assert doc['num_classes'] == 64 and doc['gflops']['matmul_macs'] == 0.0
    assert '256x384' in result.out


@pytest.mark.parametrize('key,lowest', [('throughput_images', 6), ('throughput_repeats', 1), ('throughput_iters', 1),
                                        ('checkpoint_interval', 1), ('train_repeat', 1), ('samples_per_gpu', 1)])
def test_a_preset_bound_is_exactly_where_the_protocol_puts_it(key, lowest):
    """throughput_images: the first 5 images are never timed, so 6 is the least that measures one;
    the counts below it are refused by name, the bound itself accepted."""
    import copy
    from cgrseg.io import load_yaml
    from cgrseg.params import problems
    from reference import REPO
    params = load_yaml(REPO / 'params.yaml', 'params file')
    ok, low = copy.deepcopy(params), copy.deepcopy(params)
    ok['presets']['demo'][key], low['presets']['demo'][key] = lowest, lowest - 1
    assert problems(ok) == []
    assert problems(low) == [f'params.yaml: presets.demo.{key}: {lowest - 1} is less than the minimum of {lowest}']


def test_a_flops_document_names_its_model_config_and_options(run_cli, monkeypatch, tmp_path):
    """Every field of the document, beyond the counts: its identity, the config and the options given."""
    from cgrseg import schemas
    from cgrseg.measure.flops import CONVENTIONS
    import cgrseg.models.build as build
    built = []
    monkeypatch.setattr(build, 'build_model', lambda cfg: built.append(cfg) or Strip())
    out = tmp_path / 'f.json'
    config = ade20k_config('b')
    result = run_cli('flops', config, '--shape', 32, 64, '--out', out, '--cfg-options', 'model.test_cfg.mode=slide')
    assert result.code == 0, result.err
    doc = json.loads(out.read_text())
    assert schemas.problem(doc, 'flops') is None
    assert {k: v for k, v in doc.items() if k not in ('gflops', 'params_M', 'num_classes', 'input_shape',
                                                    'skipped_operators')} == {
        'model': 'cgrseg-b', 'variant': 'b', 'dataset': 'ade20k', 'config': str(config),
        'conventions': CONVENTIONS, 'cfg_options': {'model.test_cfg.mode': 'slide'}}
    assert built[0].model.test_cfg.mode == 'slide'           # the options reach the loaded config
    assert set(doc['gflops']) == {'mmcv', 'conv_linear_macs', 'matmul_macs', 'fvcore'}
    assert set(doc['skipped_operators']) == {'mmcv', 'conv_linear_macs', 'fvcore'}


@pytest.mark.parametrize('suffix,dataset', [('ade20k_160k', 'ade20k'), ('coco-stuff10k_80k', 'coco_stuff10k'),
                                            ('pascal-context-59_80k', 'pascal_context')])
def test_the_dataset_and_variant_of_every_config(suffix, dataset):
    from cgrseg.measure import flops
    from cgrseg.mmseg_config import load_config
    for variant in 'tbl':
        path = ade20k_config(variant).with_name(f'cgrseg-{variant}_{suffix}.py')
        assert flops.dataset_of(load_config(path)) == dataset
        assert (flops.model_name(path), flops.variant_of(path)) == (f'cgrseg-{variant}', variant)


def test_the_dataset_of_a_config_without_a_known_test_split():
    from cgrseg.measure.flops import dataset_of, variant_of
    assert dataset_of({'data': {'test': {'type': 'CityscapesDataset'}}}) == 'CityscapesDataset'
    assert [dataset_of(cfg) for cfg in ({}, {'data': None}, {'data': {}}, {'data': {'test': [1]}})] == [None] * 4
    assert variant_of('configs/mine_ade20k.py') == 'mine'


def test_counts_are_whole_and_per_image_and_the_model_is_left_as_it_was():
    from cgrseg.measure.flops import count_macs, mmcv_flops

    class Pair(Strip):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 2)

        def forward_dummy(self, x):
            y = self.bn(self.conv(x))
            return self.fc(y @ y.transpose(-1, -2))     # counted: the model uses the operator

    model = Pair().eval()
    forward = model.forward
    macs = count_macs(model, (3, 8, 40))
    assert macs == {'conv_linear': 64 * 8 * 8 * 3 * 33 + 64 * 8 * 2 * 8, 'matmul': 64 * 8 * 8 * 8}
    assert all(type(v) is int for v in macs.values())
    mmcv_flops(model, (3, 8, 40))
    assert model.forward == forward


def test_every_count_is_rounded_from_its_exact_value_to_four_decimals(monkeypatch):
    """Counts just past a rounding half-step: a divisor off by one part in a million (or a billion),
    or a fifth decimal, lands on the other side."""
    from cgrseg.measure import flops
    import cgrseg.models.build as build
    monkeypatch.setattr(build, 'build_model', lambda cfg: Strip())
    monkeypatch.setattr(flops, 'count_params', lambda model: 1_234_551)
    monkeypatch.setattr(flops, 'mmcv_flops', lambda model, shape: 1_234_550_001)
    monkeypatch.setattr(flops, 'fvcore_analysis', lambda model, shape: SimpleNamespace(total=lambda: 1_234_550_001))
    monkeypatch.setattr(flops, 'traced_macs', lambda analysis, model: {'conv_linear': 1_234_550_001,
                                                                       'matmul': 1_234_550_001})
    monkeypatch.setattr(flops, 'skipped_operators', lambda analysis, model: {})
    doc = flops.measure(ade20k_config('t'), 32, 64)
    assert doc['params_M'] == 1.2346
    assert doc['gflops'] == {'mmcv': 1.2346, 'conv_linear_macs': 1.2346, 'fvcore': 1.2346, 'matmul_macs': 1.2346}


def test_flops_refuses_to_write_over_its_own_config(run_cli, tmp_path):
    import shutil
    config = tmp_path / 'cgrseg-t_ade20k_160k.py'
    shutil.copy(ade20k_config('t'), config)
    result = run_cli('flops', config, '--out', config)
    assert result.code == 2
    assert result.error_lines == [f'cgrseg flops: error: {config}: is an input of this command ({config}); '
                                  'refusing to overwrite it']


def test_the_variant_is_everything_after_the_first_dash_of_the_model_name():
    from cgrseg.measure.flops import variant_of
    assert variant_of('configs/my-cgrseg-b_ade20k_160k.py') == 'cgrseg-b'


def test_a_malformed_model_is_refused_in_one_line_before_it_is_built(tmp_path):
    from cgrseg.errors import CGRSegError
    from cgrseg.measure.flops import measure
    config = bad_head_config(tmp_path)
    with pytest.raises(CGRSegError, match=exactly(f'{config}: `model.decode_head.num_classes` must be a positive '
                                                  'integer, not 1.5')):
        measure(config, 64, 64)
