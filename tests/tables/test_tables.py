"""cgrseg collect / tables / diff / figure on the fixture results in tests/fixtures/metrics."""
import copy
import re
import shutil
import statistics
import json
from contextlib import chdir
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cgrseg import schemas
from cgrseg.cli import main
from cgrseg.errors import CGRSegError
from cgrseg.io import MARKER
from cgrseg.tables import judge
from cgrseg.tables.collect import collect, load_params
from cgrseg.tables.hypotheses import load_hypotheses
from cgrseg.tables.paper import load_paper

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / 'configs' / 'paper' / 'results.yaml'
HYPOTHESES = ROOT / 'configs' / 'paper' / 'hypotheses.yaml'
FIXTURE = ROOT / 'tests' / 'fixtures' / 'metrics'


@pytest.fixture(scope='module')
def paper():
    return load_paper(PAPER)


@pytest.fixture(scope='module')
def hypotheses():
    return load_hypotheses(HYPOTHESES)


def collect_fixture(hypotheses):
    return collect(load_params(FIXTURE / 'params.yaml'), FIXTURE / 'results', hypotheses)


@pytest.fixture(scope='module')
def metrics(hypotheses):
    """The fixture's document, for the tests of what reads it. The tests of collect call collect_fixture
    themselves: mutation testing credits a shared fixture's calls to the first test that used it only."""
    return collect_fixture(hypotheses)


@pytest.fixture
def metrics_file(tmp_path, metrics):
    path = tmp_path / 'metrics.json'
    path.write_text(json.dumps(metrics))
    return path


def by_cell(cells):
    return {(c['dataset'], c['variant'], c['column']): c for c in cells}


def run(*argv):
    argv = [str(a) for a in argv]
    if argv[0] in ('collect', 'tables', 'diff', 'figure') and '--hypotheses' not in argv:
        argv += ['--hypotheses', str(HYPOTHESES)]
    return main(argv)


# --- the paper file ---------------------------------------------------------------------------

def test_paper_file_has_every_published_cell_in_paper_order(paper):
    expected = {  # the authors' README; variant order T, B, L
        'ade20k': {'mIoU': [43.6, 45.5, 48.3], 'gflops': [4.0, 7.6, 14.9],
                   'params_M': [9.4, 18.1, 35.7], 'img_per_s': [138.4, 98.4, 73.0]},
        'coco_stuff10k': {'mIoU': [42.2, 43.5, 46.0], 'gflops': [4.0, 7.6, 14.9],
                          'params_M': [9.4, 18.1, 35.7]},
        'pascal_context': {'mIoU': [54.1, 56.5, 58.5], 'gflops': [4.0, 7.6, 14.9],
                           'params_M': [9.4, 18.1, 35.7]},
    }
    assert list(paper['tables']) == list(expected)
    for dataset, columns in expected.items():
        table = paper['tables'][dataset]
        assert list(table['rows']) == ['t', 'b', 'l']
        assert table['columns'] == list(columns)
        for column, values in columns.items():
            assert [table['rows'][v][column]['value'] for v in 'tbl'] == values
    assert paper['tables']['pascal_context']['mIoU_mode'] == 'ms_flip'


def test_paper_file_cites_not_found_for_every_unknown(paper):
    for table in paper['tables'].values():
        facts = [table['gflops_input'], *(table.get('throughput') or {}).values()]
        for fact in facts:
            assert fact['value'] is not None or fact['source'] == 'not_found'


@pytest.mark.parametrize('edit, message', [
    (lambda d: d['tables']['ade20k']['rows']['t']['mIoU'].update(source='blog'),
     'rows.t.mIoU: source "blog" is not listed'),
    (lambda d: d['tables']['ade20k']['rows']['b']['gflops'].update(value='7.6'),
     'rows.b.gflops: value must be a number or null'),
    (lambda d: d['columns']['mIoU'].update(tolerance={'abs': -1}), 'non-negative'),
    (lambda d: d['tables']['coco_stuff10k'].update(mIoU_mode='ms_multi'), 'mIoU_mode'),
    (lambda d: d['tables']['ade20k'].pop('title'), 'tables.ade20k: missing "title"'),
    (lambda d: d['tables']['ade20k']['rows']['t']['mIoU'].pop('source'),
     'rows.t.mIoU: must be {value: ..., source: ...}'),
    (lambda d: d['tables']['ade20k']['rows']['t']['mIoU'].update(source=7),
     'rows.t.mIoU: source must be a source name'),
    (lambda d: d['sources']['readme'].pop('cite'), 'sources.readme: must be a mapping with a "cite"'),
    (lambda d: d['tables']['ade20k']['rows']['l']['params_M'].update(value=[35.7]),
     'rows.l.params_M: value must be a number or null, got [35.7]'),
    (lambda d: d['columns']['mIoU'].update(tolerance={'abs': [0.5]}), 'non-negative number'),
    (lambda d: d['tables']['ade20k']['gflops_input'].update(value=512),
     'gflops_input: value must be [H, W] or null'),
    (lambda d: d['tables']['ade20k']['throughput']['batch_size'].update(value=[1]),
     'throughput.batch_size: value must be a positive integer or null'),
    (lambda d: d['tables']['ade20k']['rows'].update(x=None), 'rows.x: unknown variant'),
])
def test_paper_file_errors_name_the_file_and_the_cell(tmp_path, edit, message):
    data = yaml.safe_load(PAPER.read_text())
    edit(data)
    bad = tmp_path / 'results.yaml'
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(CGRSegError, match=re.escape(message)) as err:
        load_paper(bad)
    assert str(err.value).startswith(str(bad))


# --- collect ----------------------------------------------------------------------------------

def test_collect_flattens_present_files_and_skips_missing_ones(hypotheses):
    metrics = collect_fixture(hypotheses)
    assert metrics['ade20k.cgrseg-t.mIoU'] == 43.71
    assert metrics['ade20k.cgrseg-t.mIoU_mode'] == 'ss'
    assert metrics['ade20k.cgrseg-t.mIoU_n'] == metrics['ade20k.cgrseg-t.mIoU_seeds'] == 1
    assert metrics['ade20k.cgrseg-t.mIoU_seed0'] == 43.71
    assert 'ade20k.cgrseg-t.mIoU_std' not in metrics  # one run has no spread
    assert metrics['ade20k.cgrseg-t.demo'] is False
    assert metrics['ade20k.cgrseg-t.throughput_device_name'] == 'NVIDIA H100 80GB HBM3'
    assert metrics['coco_stuff10k.cgrseg-b.demo'] is True
    assert 'ade20k.cgrseg-l.mIoU' not in metrics  # no run yet
    assert 'ade20k.cgrseg-l.img_per_s' not in metrics
    assert all(v is not None for v in metrics.values())


def test_every_table_judges_the_ade20k_model_in_the_mmcv_convention(hypotheses):
    metrics = collect_fixture(hypotheses)
    # the paper prints the ADE20K model's params/GFLOPs (512x512, mmcv) in all three tables
    for dataset in ('ade20k', 'coco_stuff10k', 'pascal_context'):
        assert metrics[f'{dataset}.cgrseg-b.params_M'] == 19.115
        assert metrics[f'{dataset}.cgrseg-b.gflops'] == metrics[f'{dataset}.cgrseg-b.gflops_mmcv'] == 7.674
        assert metrics[f'{dataset}.cgrseg-b.gflops_conv_linear_macs'] == 7.593
        assert metrics[f'{dataset}.cgrseg-b.gflops_convention'] == 'mmcv'
        assert metrics[f'{dataset}.cgrseg-b.flops_input'] == '512x512'
        assert metrics[f'{dataset}.cgrseg-b.flops_dataset'] == 'ade20k'
        assert metrics[f'{dataset}.cgrseg-b.flops_classes'] == 150
    # each dataset's own model at its resolution, for information
    assert metrics['pascal_context.cgrseg-l.flops_input_dataset'] == '480x480'
    assert metrics['pascal_context.cgrseg-l.num_classes_dataset'] == 59
    assert metrics['pascal_context.cgrseg-t.gflops_dataset'] == 3.45
    assert metrics['coco_stuff10k.cgrseg-t.params_M_dataset'] == 9.367
    assert {k: v for k, v in metrics.items() if k.startswith('hypotheses.')} == {
        'hypotheses.b_next_repeat_5.params_M': 18.11, 'hypotheses.b_next_repeat_5.gflops': 7.609,
        'hypotheses.b_next_repeat_5.flops_input': '512x512'}


def copy_results(tmp_path):
    results = tmp_path / 'results'
    for src in (FIXTURE / "results").rglob("*.json"):
        dst = results / src.relative_to(FIXTURE / 'results')
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text())
    return results


RUN = 'runs/ade20k/cgrseg-t/seed0/metrics.json'


JUDGED, TP = 'measure/judged/cgrseg-t.flops.json', 'measure/ade20k/cgrseg-t.throughput.json'
DATASET_FLOPS = 'measure/pascal_context/cgrseg-t.flops.json'


def infinite(*fields, **protocols):
    """A change making ``fields`` (a path into the document) 1e999, which JSON reads as infinity and a schema
    cannot refuse; ``protocols`` are added to the document first."""
    def change(doc):
        doc = {**doc, **protocols}
        node = doc = json.loads(json.dumps(doc))
        for field in fields[:-1]:
            node = node[field]
        node[fields[-1]] = 7.25e77
        return json.dumps(doc).replace('7.25e+77', '1e999')
    return change


INF = 'must be a finite number, got inf'


@pytest.mark.parametrize('rel, change, message', [
    (RUN, lambda d: '{"mIoU": 4', "not valid JSON (Expecting ',' delimiter: line 1 column 11 (char 10))"),
    (RUN, lambda d: [d], 'must hold a JSON object'),
    (RUN, lambda d: {**d, 'dataset': 'coco_stuff10k'},
     '"dataset" is \'coco_stuff10k\' but the path says \'ade20k\''),
    (RUN, lambda d: {**d, 'variant': 'b'}, '"variant" is \'b\' but the path says \'t\''),
    (RUN, lambda d: {**d, 'model': 'cgrseg-b'}, '"model" is \'cgrseg-b\' but the path says \'cgrseg-t\''),
    (RUN, lambda d: {**d, 'mIoU': None}, '"mIoU" must be a finite number, got None'),
    (RUN, lambda d: {**d, 'mIoU': '43.7'}, '"mIoU" must be a finite number, got \'43.7\''),
    (RUN, lambda d: {**d, 'mAcc': '54'}, '"mAcc" must be a finite number, got \'54\''),
    (RUN, lambda d: {**d, 'protocols': {'single_scale': {'mIoU': 'x'}}},
     '"protocols.single_scale.mIoU" must be a finite number, got \'x\''),
    (RUN, lambda d: json.dumps(d).replace('43.71', 'NaN'), 'not valid JSON (NaN is not a JSON number)'),
    (RUN, lambda d: json.dumps(d).replace('43.71', 'Infinity'), 'not valid JSON (Infinity is not a JSON number)'),
    (RUN, lambda d: json.dumps(d).replace('43.71', '1e999'), '"mIoU" must be a finite number, got inf'),
    (RUN, lambda d: {**d, 'mode': 'ms_multi'}, '"mode" must be one of ss, ms, ms_flip, got \'ms_multi\''),
    (RUN, lambda d: {**d, 'iters': 'many'}, '"iters" must be a positive integer, got \'many\''),
    (DATASET_FLOPS, lambda d: {**d, 'input_shape': [3, 512, 512]},
     'measured at 512x512 but params.yaml measure_shape.pascal_context asks for 480x480; re-run cgrseg flops'),
    (DATASET_FLOPS, lambda d: {**d, 'input_shape': [3, 480, 512]},
     'measured at 480x512 but params.yaml measure_shape.pascal_context asks for 480x480; re-run cgrseg flops'),
    (JUDGED, lambda d: {**d, 'input_shape': [3, 512, 480]},
     'measured at 512x480 but params.yaml judged_complexity.shape asks for 512x512; re-run cgrseg flops'),
    (JUDGED, lambda d: {**d, 'dataset': 'pascal_context'},
     '"dataset" is \'pascal_context\' but the path says \'ade20k\''),
    (JUDGED, lambda d: {**d, 'variant': 'l'}, '"variant" is \'l\' but the path says \'t\''),
    (JUDGED, lambda d: {**d, 'gflops': {'conv_linear_macs': 3.9}}, '"gflops.mmcv" must be a finite number, got None'),
    (JUDGED, lambda d: {**d, 'gflops': {**d['gflops'], 'conv_linear_macs': True}},
     '"gflops.conv_linear_macs" must be a finite number, got True'),
    (JUDGED, lambda d: {**d, 'gflops': {**d['gflops'], 'fvcore': None}}, '"gflops.fvcore" must be a finite number, got None'),
    (JUDGED, lambda d: {**d, 'params_M': '9'}, '"params_M" must be a finite number, got \'9\''),
    ('measure/hypotheses/b_next_repeat_5.flops.json', lambda d: {**d, 'cfg_options': {}},
     "measured with cfg_options {} but the hypothesis has {'model.decode_head.next_repeat': 5}; re-run cgrseg flops"),
    ('measure/hypotheses/b_next_repeat_5.flops.json', lambda d: {**d, 'variant': 't'},
     '"variant" is \'t\' but the path says \'b\''),
    ('measure/hypotheses/b_next_repeat_5.flops.json', lambda d: {**d, 'input_shape': [3, 256, 512]},
     'measured at 256x512 but params.yaml judged_complexity.shape asks for 512x512; re-run cgrseg flops'),
    (RUN, infinite('mAcc'), f'"mAcc" {INF}'),
    (RUN, infinite('protocols', 'single_scale', 'mIoU', protocols={'single_scale': {'mIoU': 1.0}}),
     f'"protocols.single_scale.mIoU" {INF}'),
    (JUDGED, infinite('params_M'), f'"params_M" {INF}'),
    (JUDGED, infinite('gflops', 'mmcv'), f'"gflops.mmcv" {INF}'),
    (JUDGED, infinite('gflops', 'conv_linear_macs'), f'"gflops.conv_linear_macs" {INF}'),
    (JUDGED, infinite('gflops', 'fvcore', gflops={'mmcv': 4.0, 'conv_linear_macs': 3.9, 'fvcore': 1.0}),
     f'"gflops.fvcore" {INF}'),
    (DATASET_FLOPS, infinite('params_M'), f'"params_M" {INF}'),
    (DATASET_FLOPS, lambda d: {**d, 'variant': 'b'}, '"variant" is \'b\' but the path says \'t\''),
    ('measure/hypotheses/b_next_repeat_5.flops.json', infinite('gflops', 'mmcv'), f'"gflops.mmcv" {INF}'),
    (TP, infinite('img_per_s'), f'"img_per_s" {INF}'),
    (TP, infinite('protocols', 'fixed_size', 'img_per_s', protocols={'fixed_size': {'img_per_s': 1.0}}),
     f'"protocols.fixed_size.img_per_s" {INF}'),
    (TP, infinite('protocols', 'mmseg_benchmark_deploy', 'img_per_s',
                  protocols={'mmseg_benchmark_deploy': {'img_per_s': 1.0}}),
     f'"protocols.mmseg_benchmark_deploy.img_per_s" {INF}'),
    ('measure/coco_stuff10k/cgrseg-t.flops.json', lambda d: {**d, 'num_classes': 1.5},
     '"num_classes" must be a positive integer, got 1.5'),
    (TP, lambda d: {**d, 'device': 'gpu'}, '"device" must be "cuda" or "cpu", got \'gpu\''),
    (TP, lambda d: {**d, 'model': 'cgrseg-l'}, '"model" is \'cgrseg-l\' but the path says \'cgrseg-t\''),
    (TP, lambda d: {**d, 'img_per_s': '151'}, '"img_per_s" must be a finite number, got \'151\''),
    (TP, lambda d: {**d, 'protocols': {'fixed_size': {'img_per_s': None, 'deploy': False}}},
     '"protocols.fixed_size.img_per_s" must be a finite number, got None'),
    (TP, lambda d: {**d, 'protocols': {'mmseg_benchmark_deploy': {'img_per_s': 'x', 'deploy': True}}},
     '"protocols.mmseg_benchmark_deploy.img_per_s" must be a finite number, got \'x\''),
])
def test_collect_refuses_bad_result_files_in_one_line(tmp_path, hypotheses, rel, change, message):
    """collect() itself, not the command line: test_a_result_path_that_is_not_a_file_is_one_line holds the
    command's contract (exit 2, one line, nothing written); a mutant of collect reaches these in milliseconds."""
    results = copy_results(tmp_path)
    path = results / rel
    new = change(json.loads(path.read_text()))
    path.write_text(new if isinstance(new, str) else json.dumps(new))
    with pytest.raises(CGRSegError) as refused:
        collect(load_params(FIXTURE / 'params.yaml'), results, hypotheses)
    assert str(refused.value) == f'{path}: {message}'


def test_a_non_square_measure_shape_is_height_by_width(tmp_path):
    results = copy_results(tmp_path)
    params = tmp_path / 'params.yaml'
    params.write_text((FIXTURE / 'params.yaml').read_text().replace('pascal_context: [480, 480]', 'pascal_context: '
                                                                    '[480, 512]').replace('[t, b, l]', '[t]'))
    flops = results / DATASET_FLOPS
    flops.write_text(json.dumps({**json.loads(flops.read_text()), 'input_shape': [3, 480, 512]}))
    assert collect(load_params(params), results)['pascal_context.cgrseg-t.flops_input_dataset'] == '480x512'
    flops.write_text(json.dumps({**json.loads(flops.read_text()), 'input_shape': [3, 512, 480]}))
    with pytest.raises(CGRSegError, match=re.escape(f'{flops}: measured at 512x480 but params.yaml measure_shape.'
                                                    'pascal_context asks for 480x512; re-run cgrseg flops') + '$'):
        collect(load_params(params), results)


def test_a_result_path_that_is_not_a_file_is_one_line(tmp_path, capsys):
    results = copy_results(tmp_path)
    (results / RUN).unlink()
    (results / RUN).mkdir()
    out = tmp_path / 'metrics.json'
    assert run('collect', '--params', FIXTURE / 'params.yaml', '--results', results, '--out', out) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f'cgrseg collect: error: {results / RUN}: result file is not a regular file']
    assert not out.exists() and list(tmp_path.glob('.metrics.json.*')) == []


def test_collect_cli_writes_the_document(tmp_path, metrics):
    out = tmp_path / 'metrics.json'
    assert run('collect', '--params', FIXTURE / 'params.yaml', '--results',
               FIXTURE / 'results', '--out', out) == 0
    assert json.loads(out.read_text()) == metrics


# --- judging ----------------------------------------------------------------------------------

def test_fixture_cells_get_the_right_verdicts(paper, metrics):
    cells = by_cell(judge.judge_all(paper, metrics))
    expect = {
        ('ade20k', 't', 'mIoU'): judge.WITHIN,
        ('ade20k', 'b', 'mIoU'): judge.OUTSIDE,
        ('ade20k', 'l', 'mIoU'): judge.PENDING,
        ('ade20k', 't', 'params_M'): judge.WITHIN,    # 9.365 vs 9.4
        ('ade20k', 'b', 'params_M'): judge.OUTSIDE,   # 19.115 vs 18.1: the real discrepancy
        ('ade20k', 'l', 'params_M'): judge.WITHIN,    # 35.678 vs 35.7
        ('ade20k', 't', 'img_per_s'): judge.OTHER_DEVICE,  # the paper names no GPU
        ('ade20k', 'b', 'img_per_s'): judge.OTHER_DEVICE,  # CPU
        ('ade20k', 'l', 'img_per_s'): judge.PENDING,
        ('coco_stuff10k', 't', 'mIoU'): judge.DEMO,
        ('ade20k', 't', 'gflops'): judge.WITHIN,     # 3.998 (mmcv) vs 4.0
        ('ade20k', 'b', 'gflops'): judge.OUTSIDE,    # 7.674 vs 7.6: next_repeat 6 vs 5
        ('coco_stuff10k', 'l', 'gflops'): judge.WITHIN,  # the ADE20K model's 14.911, not 14.955
        ('pascal_context', 't', 'gflops'): judge.WITHIN,  # not the 480x480 count (3.450)
        ('pascal_context', 'l', 'params_M'): judge.WITHIN,
        ('pascal_context', 't', 'mIoU'): judge.NOT_COMPARABLE,  # single-scale vs MS
        ('pascal_context', 'b', 'mIoU'): judge.WITHIN,
        ('pascal_context', 'l', 'mIoU'): judge.PENDING,
    }
    assert {k: cells[k]['status'] for k in expect} == expect
    assert 'results/runs/ade20k/cgrseg-l/seed*/metrics.json' in cells[('ade20k', 'l', 'mIoU')]['reason']
    assert cells[('coco_stuff10k', 't', 'mIoU')]['delta'] is None  # demo: no delta at all
    assert cells[('ade20k', 'b', 'params_M')]['delta'] == pytest.approx(1.015)
    assert cells[('ade20k', 't', 'gflops')]['gflops_conv_linear_macs'] == 3.945
    assert cells[('pascal_context', 't', 'gflops')]['gflops_dataset'] == 3.45
    assert '(59 classes, 480x480): 3.450, not judged' in cells[('pascal_context', 't', 'gflops')]['reason']


def one_cell(paper, column, ours, paper_value, dataset='ade20k', **extra):
    paper = copy.deepcopy(paper)
    paper['tables'][dataset]['rows']['t'][column]['value'] = paper_value
    metrics = {f'{dataset}.cgrseg-t.{column}': ours, f'{dataset}.cgrseg-t.demo': False,
               f'{dataset}.cgrseg-t.mIoU_mode': 'ss', f'{dataset}.cgrseg-t.flops_input': '512x512',
               f'{dataset}.cgrseg-t.gflops_mmcv': 1.0, f'{dataset}.cgrseg-t.gflops_convention': 'mmcv',
               f'{dataset}.cgrseg-t.gflops_conv_linear_macs': 1.0,
               f'{dataset}.cgrseg-t.flops_dataset': 'ade20k', f'{dataset}.cgrseg-t.flops_classes': 150,
               f'{dataset}.cgrseg-t.mIoU_n': 1, f'{dataset}.cgrseg-t.mIoU_seeds': 1}
    metrics.update({f'{dataset}.cgrseg-t.{k}': v for k, v in extra.items()})
    return judge.judge_cell(paper, metrics, dataset, 't', column, 'results')


@pytest.mark.parametrize('column, paper_value, ours, status', [
    ('params_M', 9.4, 9.45, judge.WITHIN),      # exactly +tolerance
    ('params_M', 9.4, 9.35, judge.WITHIN),      # exactly -tolerance (9.35 - 9.4 < -0.05 in floats)
    ('params_M', 9.4, 9.4501, judge.OUTSIDE),
    ('params_M', 9.4, 9.3499, judge.OUTSIDE),
    ('gflops', 14.9, 14.95, judge.WITHIN),
    ('gflops', 14.9, 14.9501, judge.OUTSIDE),
    ('mIoU', 43.6, 44.1, judge.WITHIN),
    ('mIoU', 43.6, 43.1, judge.WITHIN),
    ('mIoU', 43.6, 44.1001, judge.OUTSIDE),
    ('mIoU', 43.6, 43.0999, judge.OUTSIDE),
])
def test_tolerance_edges_are_inclusive(paper, column, paper_value, ours, status):
    assert one_cell(paper, column, ours, paper_value)['status'] == status


def with_paper_gpu(paper, gpu='V100', batch_size=None):
    paper = copy.deepcopy(paper)
    tp = paper['tables']['ade20k']['throughput']
    tp['device_name']['value'] = gpu
    tp['batch_size']['value'] = batch_size
    return paper


@pytest.mark.parametrize('device, name, ours, status', [
    ('cuda', 'Tesla V100-SXM2-32GB', 152.24, judge.WITHIN),   # 138.4 * 1.10
    ('cuda', 'Tesla V100-SXM2-32GB', 152.25, judge.OUTSIDE),
    ('cuda', 'NVIDIA A100-SXM4-80GB', 138.4, judge.OTHER_DEVICE),
    ('cpu', 'Tesla V100-SXM2-32GB', 138.4, judge.OTHER_DEVICE),  # never on CPU
])
def test_throughput_is_judged_only_on_the_papers_gpu_model(paper, device, name, ours, status):
    cell = one_cell(with_paper_gpu(paper), 'img_per_s', ours, 138.4, throughput_device=device,
                    throughput_device_name=name, throughput_batch_size=1)
    assert cell['status'] == status


def test_throughput_batch_size_must_match_when_the_paper_gives_one(paper):
    cell = one_cell(with_paper_gpu(paper, batch_size=32), 'img_per_s', 138.4, 138.4,
                    throughput_device='cuda', throughput_device_name='Tesla V100-PCIE-16GB',
                    throughput_batch_size=1)
    assert cell['status'] == judge.NOT_COMPARABLE and 'batch size 1' in cell['reason']


def test_gflops_at_another_resolution_than_a_stated_one_are_not_compared(paper):
    paper = copy.deepcopy(paper)
    paper['tables']['pascal_context']['gflops_input']['value'] = [480, 480]
    cell = one_cell(paper, 'gflops', 4.0, 4.0, dataset='pascal_context')
    assert cell['status'] == judge.NOT_COMPARABLE and '512x512' in cell['reason']


def test_a_missing_paper_value_is_shown_not_judged(paper):
    cell = one_cell(paper, 'params_M', 9.365, None)
    assert cell['status'] == judge.NO_PAPER_VALUE and cell['delta'] is None


# --- outputs ----------------------------------------------------------------------------------

def make_tables(tmp_path, metrics_file, *extra):
    out = tmp_path / 'tables'
    assert run('tables', '--metrics', metrics_file, '--paper', PAPER, '--out', out, *extra) == 0
    return out


def test_tables_keep_the_papers_rows_and_columns(tmp_path, metrics_file):
    out = make_tables(tmp_path, metrics_file)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f'{d}.{ext}' for d in ('ade20k', 'coco_stuff10k', 'pascal_context')
         for ext in ('md', 'csv', 'tex')] + [MARKER])   # the marker: a rerun may replace the folder
    md = (out / 'ade20k.md').read_text()
    header = next(line for line in md.splitlines() if line.startswith('| Model'))
    assert [h.strip() for h in header.strip('|').split('|')] == [
        'Model', 'mIoU paper', 'mIoU ours', 'GFLOPs paper', 'GFLOPs ours', 'Params (M) paper',
        'Params (M) ours', 'img/s paper', 'img/s ours']
    rows = [line for line in md.splitlines() if line.startswith('| CGRSeg-')]
    assert [r.split('|')[1].strip() for r in rows] == ['CGRSeg-T', 'CGRSeg-B', 'CGRSeg-L']
    assert '| 44.85 (n=1) (!) ' in rows[1] and '| 19.115 (!) ' in rows[1]
    assert '| pending ' in rows[2]
    assert 'ours, this dataset' not in md  # ADE20K's own model is the judged one
    assert 'the ade20k model (150 classes) at 512x512, GFLOPs in the mmcv convention' in md
    pc = (out / 'pascal_context.md').read_text()
    header = next(line for line in pc.splitlines() if line.startswith('| Model'))
    assert [h.strip() for h in header.strip('|').split('|')][3:6] == [
        'GFLOPs paper', 'GFLOPs ours', 'GFLOPs ours, this dataset']
    assert '| 3.998 ' in pc and '| 3.450 ' in pc
    assert "this dataset's own model (59 classes) at 480x480, for information, not judged" in pc
    assert '| 1.37 (n=1) (demo) ' in (out / 'coco_stuff10k.md').read_text()


def test_csv_keeps_raw_numbers_and_statuses(tmp_path, metrics_file):
    frame = pd.read_csv(make_tables(tmp_path, metrics_file) / 'ade20k.csv')
    assert list(frame['model']) == ['cgrseg-t', 'cgrseg-b', 'cgrseg-l']
    assert list(frame['params_M_ours']) == [9.365, 19.115, 35.678]
    assert list(frame['params_M_paper']) == [9.4, 18.1, 35.7]
    assert list(frame['mIoU_status']) == ['within', 'outside', 'pending']
    assert frame['mIoU_ours'].isna().tolist() == [False, False, True]


def test_latex_is_booktabs_and_ascii(tmp_path, metrics_file):
    tex = (make_tables(tmp_path, metrics_file) / 'pascal_context.tex').read_text()
    for rule in ('\\toprule', '\\midrule', '\\bottomrule', '\\caption{', '\\label{tab:pascal'):
        assert rule in tex
    assert tex.isascii()
    assert 'mIoU (MS) paper' in tex


def test_tables_formats_come_from_params(tmp_path, metrics_file):
    params = tmp_path / 'params.yaml'
    params.write_text('tables: {formats: [csv]}\n')
    out = make_tables(tmp_path, metrics_file, '--params', params)
    assert sorted(p.suffix for p in out.iterdir() if p.name != MARKER) == ['.csv'] * 3


def diff(tmp_path, metrics_file, *extra):
    prefix = tmp_path / 'diff'
    code = run('diff', '--metrics', metrics_file, '--paper', PAPER, '--out', prefix, *extra)
    return code, prefix


def test_diff_md_opens_with_a_summary_and_json_agrees(tmp_path, metrics_file, paper, metrics):
    code, prefix = diff(tmp_path, metrics_file)
    assert code == 0
    md = Path(f'{prefix}.md').read_text().splitlines()
    doc = json.loads(Path(f'{prefix}.json').read_text())
    assert schemas.problem(doc, 'diff') is None   # workflow/schemas/diff.schema.json
    s = doc['summary']
    # Counts derived from the inputs, not copied from an output: one cell per paper table cell
    # (30 today: 3 datasets x 3 models x 3 columns + ADE20K throughput), pending = no fixture value.
    published = [(d, v, c) for d, t in paper['tables'].items() for v in t['rows'] for c in t['columns']]
    assert s['cells'] == len(doc['cells']) == len(published)
    assert s['pending'] == sum(f'{d}.cgrseg-{v}.{c}' not in metrics for d, v, c in published) > 0
    statuses = [c['status'] for c in doc['cells']]
    for status in judge.STATUSES:
        assert s[status] == statuses.count(status), status
    assert s['comparable'] == s['within'] + s['outside'] > 0
    assert s['not_comparable_total'] == s['cells'] - s['comparable']
    assert s['within'] > 0 and s['outside'] > 0  # the fixture exercises both verdicts
    assert md[2] == f'**{judge.summary_line(s)}**'
    assert md[2].startswith(f'**{s["cells"]} cells: {s["comparable"]} comparable, {s["within"]} within '
                            f'tolerance, {s["outside"]} outside; {s["not_comparable_total"]} not compared')
    assert '## Outside tolerance' in md
    assert doc['tolerances']['params_M'] == {'abs': 0.05}
    gflops = next(c for c in doc['cells'] if c['column'] == 'gflops')
    assert gflops['gflops_mmcv'] == gflops['ours'] == 3.998
    assert gflops['gflops_conv_linear_macs'] == 3.945 and gflops['flops_input'] == '512x512'


def test_outside_cells_show_the_hypotheses_tried(tmp_path, metrics_file):
    code, prefix = diff(tmp_path, metrics_file)
    doc = json.loads(Path(f'{prefix}.json').read_text())
    outside = [c for c in doc['cells'] if c['status'] == 'outside']
    # CGRSeg-B's params and GFLOPs in all three tables, plus one invented mIoU
    assert sorted((c['dataset'], c['variant'], c['column']) for c in outside
                  if c['column'] != 'mIoU') == sorted(
        (d, 'b', col) for d in ('ade20k', 'coco_stuff10k', 'pascal_context')
        for col in ('gflops', 'params_M'))
    for cell in outside:
        if cell['column'] == 'mIoU':
            assert cell['hypotheses'] == []  # none tried, and diff.json says so
            continue
        [hyp] = cell['hypotheses']
        assert hyp['name'] == 'b_next_repeat_5' and hyp['reproduces'] is True
        assert hyp['cfg_options'] == {'model.decode_head.next_repeat': 5}
        assert hyp['measured'] == {'params_M': 18.11, 'gflops': 7.609}[cell['column']]
    md = Path(f'{prefix}.md').read_text()
    assert ('hypotheses tried: b_next_repeat_5 (model.decode_head.next_repeat=5): 18.110, '
            'reproduces the paper') in md
    assert 'hypotheses tried: b_next_repeat_5 (model.decode_head.next_repeat=5): 7.609' in md
    assert 'hypotheses tried: none tried' in md  # the mIoU cell outside


def test_a_hypothesis_that_misses_says_so_and_an_unmeasured_one_is_pending(paper, metrics,
                                                                           hypotheses):
    hyps = {**hypotheses, 'b_other': {**hypotheses['b_next_repeat_5'],
                                      'cfg_options': {'model.decode_head.mr': 4}}}
    changed = {**metrics, 'hypotheses.b_next_repeat_5.params_M': 18.2}
    cells = by_cell(judge.judge_all(paper, changed, 'results', hyps))
    first, second = cells[('ade20k', 'b', 'params_M')]['hypotheses']
    assert first['reproduces'] is False and first['delta'] == pytest.approx(0.1)
    assert second['measured'] is None and second['reproduces'] is None
    assert 'results/measure/hypotheses/b_other.flops.json' in second['status']
    assert 'hypotheses' not in cells[('ade20k', 't', 'params_M')]


def test_strict_fails_only_on_comparable_cells_outside(tmp_path, metrics_file, metrics, capsys):
    code, prefix = diff(tmp_path, metrics_file, '--strict')
    assert code == 1
    assert Path(f'{prefix}.md').exists()  # the verdicts are still written
    assert '7 comparable cell(s) outside tolerance' in capsys.readouterr().err
    params = tmp_path / 'params.yaml'
    params.write_text('tables: {formats: [md], strict: true}\n')
    assert diff(tmp_path, metrics_file, '--params', params)[0] == 1
    # Keep only cells that are within tolerance or not comparable at all: strict passes.
    paper = load_paper(PAPER)
    outside = {(c['dataset'], c['model'], c['column'])
               for c in judge.judge_all(paper, metrics) if c['status'] == judge.OUTSIDE}
    kept = {k: v for k, v in metrics.items() if tuple(k.split('.')) not in outside}
    metrics_file.write_text(json.dumps(kept))
    assert diff(tmp_path, metrics_file, '--strict')[0] == 0


def test_everything_pending_without_any_result(tmp_path, capsys):
    empty = tmp_path / 'metrics.json'
    empty.write_text('{}')
    code, prefix = diff(tmp_path, empty, '--strict')
    assert code == 0
    summary = json.loads(Path(f'{prefix}.json').read_text())['summary']
    assert summary['pending'] == summary['cells'] == 30


@pytest.mark.parametrize('command', ['tables', 'diff', 'figure'])
def test_a_missing_metrics_file_says_to_run_collect(tmp_path, capsys, command):
    missing = tmp_path / 'metrics.json'
    assert run(command, '--metrics', missing, '--paper', PAPER, '--out', tmp_path / 'out') == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f'cgrseg {command}: error: {missing}: metrics not found (run cgrseg collect first)']
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('command', ['tables', 'diff', 'figure'])
def test_bad_metrics_file_is_one_error_line_and_no_output(tmp_path, capsys, command):
    bad = tmp_path / 'metrics.json'
    bad.write_text('[1, 2]')
    out = tmp_path / 'out'
    code = run(command, '--metrics', bad, '--paper', PAPER, '--out', out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f'cgrseg {command}: error: {bad}: must hold a JSON object of '
                                 '"dataset.model.name" keys']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['metrics.json']


def test_figure_writes_png_and_pdf_reproducibly(tmp_path, metrics_file):
    prefix = tmp_path / 'fig' / 'miou_vs_gflops'
    args = ('figure', '--metrics', metrics_file, '--paper', PAPER, '--out', prefix)
    assert run(*args) == 0
    png, pdf = Path(f'{prefix}.png'), Path(f'{prefix}.pdf')
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and pdf.read_bytes()[:5] == b'%PDF-'
    first = png.read_bytes(), pdf.read_bytes()
    assert run(*args) == 0
    assert (png.read_bytes(), pdf.read_bytes()) == first


def test_figure_separates_demo_and_real_points(paper, metrics):
    import matplotlib.pyplot as plt

    from cgrseg.tables.figure import draw

    fig = draw(paper, judge.judge_all(paper, metrics))
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends[0] == ['paper', 'regenerated']
    assert legends[1] == ['paper', 'regenerated (demo run)']
    assert legends[2] == ['paper', 'regenerated', 'regenerated (other protocol)']
    plt.close(fig)


def test_cpu_throughput_says_at_what_input_it_was_measured(paper):
    cell = one_cell(paper, 'img_per_s', 66.3, 138.4, throughput_device='cpu', throughput_device_name='x86_64',
                    throughput_batch_size=1, throughput_input='64x64')
    assert cell['status'] == judge.OTHER_DEVICE
    assert cell['reason'] == 'measured on CPU (x86_64, input 64x64): never compared'


# --- seeds ------------------------------------------------------------------------------------

def add_run(results, dataset, variant, seed, **changes):
    src = results / 'runs' / dataset / f'cgrseg-{variant}' / 'seed0' / 'metrics.json'
    dst = src.parents[1] / f'seed{seed}' / 'metrics.json'
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps({**json.loads(src.read_text()), **changes}))


def seeds_params(tmp_path, seeds):
    params = yaml.safe_load((FIXTURE / 'params.yaml').read_text())
    params['seeds'] = seeds
    path = tmp_path / 'params.yaml'
    path.write_text(yaml.safe_dump(params))
    return path


def test_seeds_give_mean_and_sample_std_and_the_mean_is_judged(tmp_path, paper):
    results = copy_results(tmp_path)
    add_run(results, 'ade20k', 't', 1, mIoU=43.21)
    add_run(results, 'ade20k', 't', 2, mIoU=43.41)
    metrics = collect(load_params(seeds_params(tmp_path, [0, 1, 2])), results)
    assert metrics['ade20k.cgrseg-t.mIoU'] == pytest.approx(43.4433, abs=1e-4)
    assert metrics['ade20k.cgrseg-t.mIoU_std'] == pytest.approx(
        statistics.stdev([43.71, 43.21, 43.41]), abs=1e-4)
    assert (metrics['ade20k.cgrseg-t.mIoU_n'], metrics['ade20k.cgrseg-t.mIoU_seeds']) == (3, 3)
    assert metrics['ade20k.cgrseg-t.mIoU_seed1'] == 43.21
    cells = by_cell(judge.judge_all(paper, metrics))
    cell = cells[('ade20k', 't', 'mIoU')]
    assert cell['status'] == judge.WITHIN and cell['reason'] == 'mean of 3 seeds, std 0.25'
    assert cell['mIoU_runs'] == {'seed0': 43.71, 'seed1': 43.21, 'seed2': 43.41}
    from cgrseg.tables.render import ours_text
    assert ours_text(cell) == '43.44 ± 0.25 (n=3)'  # sample std 0.2517
    # a seed still missing: shown, not judged
    partial = cells[('ade20k', 'b', 'mIoU')]
    assert partial['status'] == judge.PENDING and partial['reason'].startswith('1 of 3 seeds')
    assert ours_text(partial) == '44.85 (n=1) (pending)'


def test_the_seeds_of_one_model_must_share_a_protocol(tmp_path, capsys):
    results = copy_results(tmp_path)
    add_run(results, 'pascal_context', 't', 1, mode='ms_flip')
    out = tmp_path / 'metrics.json'
    code = run('collect', '--params', seeds_params(tmp_path, [0, 1]), '--results', results,
               '--out', out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not out.exists()
    assert 'seed1/metrics.json: "mIoU_mode" is \'ms_flip\' but' in err[0]


def test_collect_reads_a_runs_effective_params_and_finds_its_results_root(tmp_path, metrics):
    """The table stages get one argument, the run's params.effective.yaml: it names the preset, whose
    results root holds the inputs and takes the outputs; an override in it reaches collect."""
    params = yaml.safe_load((FIXTURE / 'params.yaml').read_text())
    shutil.copytree(FIXTURE / 'results', tmp_path / 'results' / 'mine')
    effective = tmp_path / 'results' / 'mine' / 'params.effective.yaml'
    effective.write_text(yaml.safe_dump({**params, 'preset': 'mine'}))
    with chdir(tmp_path):
        assert run('collect', '--params', effective) == 0
        assert json.loads((tmp_path / 'results/mine/metrics.json').read_text()) == metrics
        params['measure_shape']['pascal_context'] = [512, 512]
        effective.write_text(yaml.safe_dump({**params, 'preset': 'mine'}))
        assert run('collect', '--params', effective) == 2


@pytest.mark.parametrize('params, message', [
    ({'seeds': 'abc'}, "seeds: 'abc' is not of type 'array'"),
    ({'measure_shape': {'ade20k': 512}}, "measure_shape.ade20k: 512 is not of type 'array'"),
    ({'judged_complexity': None}, "judged_complexity: None is not of type 'object'"),
    ({'preset': '../x'}, 'preset: must be a plain name (letters, digits, _ and -): it names results/<preset>/'),
])
def test_collect_names_a_bad_params_key(tmp_path, capsys, params, message):
    path = tmp_path / 'params.effective.yaml'
    path.write_text(yaml.safe_dump({**yaml.safe_load((FIXTURE / 'params.yaml').read_text()), **params}))
    out = tmp_path / 'metrics.json'
    assert run('collect', '--params', path, '--results', FIXTURE / 'results', '--out', out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'cgrseg collect: error: {path}: {message}']


# --- what tables/diff/figure accept -----------------------------------------------------------

@pytest.mark.parametrize('change, message', [
    (lambda t: t.replace('43.71', 'NaN', 1), 'not valid JSON (NaN is not a JSON number)'),
    (lambda t: t.replace('43.71', '-Infinity', 1), 'not valid JSON (-Infinity is not a JSON number)'),
    (lambda t: t.replace('43.71', '"43.71"', 1),
     '"ade20k.cgrseg-t.mIoU" must be a number, got \'43.71\''),
    (lambda t: t.replace('"ade20k.cgrseg-t.gflops_mmcv"', '"ade20k.cgrseg-t.unused"', 1),
     '"ade20k.cgrseg-t.gflops" needs "ade20k.cgrseg-t.gflops_mmcv" beside it (re-run cgrseg collect)'),
    (lambda t: t.replace('"ade20k.cgrseg-t.demo": false', '"ade20k.cgrseg-t.demo": "no"', 1),
     '"ade20k.cgrseg-t.demo" must be true or false, got \'no\''),
    (lambda t: t.replace('"ade20k.cgrseg-t.mIoU_n": 1', '"ade20k.cgrseg-t.mIoU_n": 0', 1),
     '"ade20k.cgrseg-t.mIoU_n" must be a positive integer, got 0'),
    (lambda t: t.replace('"ade20k.cgrseg-t.mIoU_mode": "ss"', '"ade20k.cgrseg-t.mIoU_mode": 1', 1),
     '"ade20k.cgrseg-t.mIoU_mode" must be a string, got 1'),
    (lambda t: t.replace('"ade20k.cgrseg-t.mIoU_seed0": 43.71', '"ade20k.cgrseg-t.mIoU_seed0": true', 1),
     '"ade20k.cgrseg-t.mIoU_seed0" must be a number, got True'),
    (lambda t: t.replace('"hypotheses.b_next_repeat_5.flops_input": "512x512"',
                         '"hypotheses.b_next_repeat_5.flops_input": 512', 1),
     '"hypotheses.b_next_repeat_5.flops_input" must be a string, got 512'),
    (lambda t: t.replace('"hypotheses.b_next_repeat_5.gflops": 7.609', '"hypotheses.b_next_repeat_5.gflops": "7.6"', 1),
     '"hypotheses.b_next_repeat_5.gflops" must be a number, got \'7.6\''),
    (lambda t: t.replace('{', '{"hypotheses.b_next_repeat_5.mIoU": [1], ', 1),
     '"hypotheses.b_next_repeat_5.mIoU" must be a number, string or true/false, got [1]'),
    (lambda t: t.replace('{', '{"ade20k.cgrseg-t.note": null, ', 1),
     '"ade20k.cgrseg-t.note" must be a number, string or true/false, got None'),
    (lambda t: t.replace('"hypotheses.b_next_repeat_5.params_M": 18.11', '"hypotheses.b_next_repeat_5.params_M": "18"', 1),
     '"hypotheses.b_next_repeat_5.params_M" must be a number, got \'18\''),
    (lambda t: t.replace('"ade20k.cgrseg-t.mIoU"', '"ade20k.mIoU"', 1),
     'key \'ade20k.mIoU\' is not "dataset.model.name"'),
    (lambda t: t.replace('"ade20k.cgrseg-t.mIoU"', '"ade20k..mIoU"', 1),
     'key \'ade20k..mIoU\' is not "dataset.model.name"'),
])
@pytest.mark.parametrize('command', ['tables', 'diff', 'figure'])
def test_a_malformed_metrics_document_is_one_line(tmp_path, capsys, metrics, command, change,
                                                  message):
    bad = tmp_path / 'metrics.json'
    bad.write_text(change(json.dumps(metrics)))
    out = tmp_path / 'out'
    assert run(command, '--metrics', bad, '--paper', PAPER, '--out', out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'cgrseg {command}: error: {bad}: {message}']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['metrics.json']


def leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, (*path, i))
    else:
        yield path


def test_no_edit_of_the_paper_file_gives_a_traceback(metrics, hypotheses):
    # every leaf replaced by a wrong type, and every mapping key removed: each either loads and
    # renders, or is one CGRSegError; nothing else may escape
    from cgrseg.tables.diff import diff_document, diff_markdown
    from cgrseg.tables.paper import _check_paper
    from cgrseg.tables.render import latex, markdown

    base = yaml.safe_load(PAPER.read_text())
    edits = []
    for path in leaves(base):
        for wrong in (None, [1], 'x', {'a': 1}, -1):
            edits.append((path, 'set', wrong))
    for path in {p[:i] for p in leaves(base) for i in range(1, len(p) + 1)}:
        if not isinstance(path[-1], int):
            edits.append((path, 'drop', None))
    for path, action, wrong in edits:
        data = copy.deepcopy(base)
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        if action == 'set':
            parent[path[-1]] = wrong
        else:
            del parent[path[-1]]
        if _check_paper(data):
            continue
        cells = judge.judge_all(data, metrics, 'results', hypotheses)
        diff_markdown(data, cells)
        json.dumps(diff_document(data, cells), allow_nan=False)
        for dataset, table in data['tables'].items():
            mine = [c for c in cells if c['dataset'] == dataset]
            markdown(mine, table, dataset)
            latex(mine, table, dataset)


# --- a full disk ------------------------------------------------------------------------------

@pytest.fixture
def full_disk(small_tmpfs):
    """The small tmpfs with one page left free."""
    (small_tmpfs / 'filler').write_bytes(b'\0' * (60 * 1024))
    return small_tmpfs


@pytest.mark.parametrize('command', ['collect', 'tables', 'diff', 'figure'])
def test_a_full_disk_is_one_line_and_leaves_nothing(full_disk, metrics_file, capsys, command):
    if command == 'collect':
        out = full_disk / 'metrics.json'
        argv = ['collect', '--params', FIXTURE / 'params.yaml', '--results', FIXTURE / 'results']
        named = out
    else:
        out = full_disk / {'tables': 'tables', 'diff': 'diff', 'figure': 'fig'}[command]
        argv = [command, '--metrics', metrics_file, '--paper', PAPER]
        named = {'tables': out, 'diff': f'{out}.md, {out}.json',
                 'figure': f'{out}.png, {out}.pdf'}[command]
    assert run(*argv, '--out', out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'cgrseg {command}: error: {named}: cannot write: No space left on device']
    assert sorted(p.name for p in full_disk.iterdir()) == ['filler']


@pytest.mark.parametrize('command, tables, message', [
    ('tables', '{formats: [pdf]}', "tables.formats.0: 'pdf' is not one of ['md', 'csv', 'tex']"),
    ('tables', '[md]', "tables: ['md'] is not of type 'object'"),
    ('diff', '{formats: [md], strict: maybe}', "tables.strict: 'maybe' is not of type 'boolean'"),
])
def test_bad_tables_params_are_one_line(tmp_path, capsys, metrics_file, command, tables, message):
    params = tmp_path / 'params.yaml'
    params.write_text(f'tables: {tables}\n')
    out = tmp_path / 'out'
    assert run(command, '--metrics', metrics_file, '--paper', PAPER, '--params', params,
               '--out', out) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f'cgrseg {command}: error: {params}: {message}']
    assert not list(tmp_path.glob('out*'))


@pytest.mark.parametrize('pattern, schema', [('runs/*/*/seed*/metrics.json', 'metrics'),
                                             ('measure/**/*.flops.json', 'flops'),
                                             ('measure/*/*.throughput.json', 'throughput')])
def test_every_fixture_and_reference_result_file_keeps_its_schema(pattern, schema):
    """workflow/schemas/ describes what the writers write (their tests check it too) and collect reads."""
    paths = [*(FIXTURE / 'results').glob(pattern), *(ROOT / 'results/reference/demo').glob(pattern)]
    assert paths
    for path in paths:
        assert schemas.problem(json.loads(path.read_text()), schema) is None, path
    assert schemas.problem(json.loads((ROOT / 'results/reference/demo/diff.json').read_text()), 'diff') is None
