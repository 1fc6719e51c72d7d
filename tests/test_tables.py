"""cgrseg collect / tables / diff / figure on the fixture results in tests/fixtures/metrics."""
import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cgrseg.cli import main
from cgrseg.errors import CGRSegError
from cgrseg.tables import judge
from cgrseg.tables.collect import collect, load_params
from cgrseg.tables.paper import load_paper

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / 'configs' / 'paper' / 'results.yaml'
FIXTURE = ROOT / 'tests' / 'fixtures' / 'metrics'


@pytest.fixture(scope='module')
def paper():
    return load_paper(PAPER)


@pytest.fixture(scope='module')
def metrics():
    return collect(load_params(FIXTURE / 'params.yaml'), FIXTURE / 'results')


@pytest.fixture
def metrics_file(tmp_path, metrics):
    path = tmp_path / 'metrics.json'
    path.write_text(json.dumps(metrics))
    return path


def by_cell(cells):
    return {(c['dataset'], c['variant'], c['column']): c for c in cells}


def run(*argv):
    return main([str(a) for a in argv])


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
])
def test_paper_file_errors_name_the_file_and_the_cell(tmp_path, edit, message):
    data = yaml.safe_load(PAPER.read_text())
    edit(data)
    bad = tmp_path / 'results.yaml'
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(CGRSegError, match=message) as err:
        load_paper(bad)
    assert str(err.value).startswith(str(bad))


# --- collect ----------------------------------------------------------------------------------

def test_collect_flattens_present_files_and_skips_missing_ones(metrics):
    assert metrics['ade20k.cgrseg-t.mIoU'] == 43.71
    assert metrics['ade20k.cgrseg-t.mIoU_mode'] == 'ss'
    assert metrics['ade20k.cgrseg-t.demo'] is False
    assert metrics['ade20k.cgrseg-b.params_M'] == 19.115
    assert metrics['ade20k.cgrseg-t.gflops'] == 4.03
    assert metrics['ade20k.cgrseg-t.gflops_mmcv'] == 4.191
    assert metrics['pascal_context.cgrseg-l.flops_input'] == '480x480'
    assert metrics['ade20k.cgrseg-t.throughput_device_name'] == 'NVIDIA H100 80GB HBM3'
    assert metrics['coco_stuff10k.cgrseg-b.demo'] is True
    assert 'ade20k.cgrseg-l.mIoU' not in metrics  # no run yet
    assert 'ade20k.cgrseg-l.img_per_s' not in metrics
    assert all(v is not None for v in metrics.values())


def copy_results(tmp_path):
    results = tmp_path / 'results'
    for src in (FIXTURE / 'results').rglob('*.json'):
        dst = results / src.relative_to(FIXTURE / 'results')
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text())
    return results


@pytest.mark.parametrize('rel, change, message', [
    ('runs/ade20k/cgrseg-t/metrics.json', lambda d: '{"mIoU": 4', 'not valid JSON'),
    ('runs/ade20k/cgrseg-t/metrics.json', lambda d: {**d, 'dataset': 'coco_stuff10k'},
     '"dataset" is \'coco_stuff10k\' but the path says \'ade20k\''),
    ('runs/ade20k/cgrseg-t/metrics.json', lambda d: {**d, 'mIoU': None}, '"mIoU" must be a number'),
    ('runs/ade20k/cgrseg-t/metrics.json', lambda d: {**d, 'mode': 'ms_multi'}, '"mode" must be one of'),
    ('measure/pascal_context/cgrseg-t.flops.json', lambda d: {**d, 'input_shape': [3, 512, 512]},
     'measured at 512x512 but params.yaml measure_shape asks for 480x480'),
    ('measure/ade20k/cgrseg-t.throughput.json', lambda d: {**d, 'device': 'gpu'},
     '"device" must be "cuda" or "cpu"'),
])
def test_collect_rejects_bad_result_files_and_writes_nothing(tmp_path, capsys, rel, change,
                                                             message):
    results = copy_results(tmp_path)
    path = results / rel
    new = change(json.loads(path.read_text()))
    path.write_text(new if isinstance(new, str) else json.dumps(new))
    out = tmp_path / 'metrics.json'
    code = run('collect', '--params', FIXTURE / 'params.yaml', '--results', results, '--out', out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f'cgrseg collect: error: {path}: ')
    assert message in err[0]
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
        ('coco_stuff10k', 'l', 'gflops'): judge.WITHIN,  # 14.95 vs 14.9: the edge
        ('pascal_context', 't', 'mIoU'): judge.NOT_COMPARABLE,  # single-scale vs MS
        ('pascal_context', 'b', 'mIoU'): judge.WITHIN,
        ('pascal_context', 'l', 'mIoU'): judge.PENDING,
    }
    assert {k: cells[k]['status'] for k in expect} == expect
    assert 'results/runs/ade20k/cgrseg-l/metrics.json' in cells[('ade20k', 'l', 'mIoU')]['reason']
    assert cells[('coco_stuff10k', 't', 'mIoU')]['delta'] is None  # demo: no delta at all
    assert cells[('ade20k', 'b', 'params_M')]['delta'] == pytest.approx(1.015)
    assert cells[('ade20k', 't', 'gflops')]['gflops_mmcv'] == 4.191


def one_cell(paper, column, ours, paper_value, dataset='ade20k', **extra):
    paper = copy.deepcopy(paper)
    paper['tables'][dataset]['rows']['t'][column]['value'] = paper_value
    metrics = {f'{dataset}.cgrseg-t.{column}': ours, f'{dataset}.cgrseg-t.demo': False,
               f'{dataset}.cgrseg-t.mIoU_mode': 'ss', f'{dataset}.cgrseg-t.flops_input': '512x512',
               f'{dataset}.cgrseg-t.gflops_mmcv': 1.0}
    metrics.update({f'{dataset}.cgrseg-t.{k}': v for k, v in extra.items()})
    return judge.judge_cell(paper, metrics, dataset, 't', column)


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
        f'{d}.{ext}' for d in ('ade20k', 'coco_stuff10k', 'pascal_context')
        for ext in ('md', 'csv', 'tex'))
    md = (out / 'ade20k.md').read_text()
    header = next(line for line in md.splitlines() if line.startswith('| Model'))
    assert [h.strip() for h in header.strip('|').split('|')] == [
        'Model', 'mIoU paper', 'mIoU ours', 'GFLOPs paper', 'GFLOPs ours', 'Params (M) paper',
        'Params (M) ours', 'img/s paper', 'img/s ours']
    rows = [line for line in md.splitlines() if line.startswith('| CGRSeg-')]
    assert [r.split('|')[1].strip() for r in rows] == ['CGRSeg-T', 'CGRSeg-B', 'CGRSeg-L']
    assert '| 44.85 (!) ' in rows[1] and '| 19.115 (!) ' in rows[1]
    assert '| pending ' in rows[2]
    assert 'at 512x512' in md
    assert 'at 480x480' in (out / 'pascal_context.md').read_text()
    assert '| 1.37 (demo) ' in (out / 'coco_stuff10k.md').read_text()


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
    assert sorted(p.suffix for p in out.iterdir()) == ['.csv'] * 3


def diff(tmp_path, metrics_file, *extra):
    prefix = tmp_path / 'diff'
    code = run('diff', '--metrics', metrics_file, '--paper', PAPER, '--out', prefix, *extra)
    return code, prefix


def test_diff_md_opens_with_a_summary_and_json_agrees(tmp_path, metrics_file):
    code, prefix = diff(tmp_path, metrics_file)
    assert code == 0
    md = Path(f'{prefix}.md').read_text().splitlines()
    doc = json.loads(Path(f'{prefix}.json').read_text())
    s = doc['summary']
    assert s == {'cells': 30, 'comparable': 21, 'not_comparable_total': 9, 'within': 12,
                 'outside': 9, 'pending': 3, 'demo': 3, 'other_device': 2,
                 'not_comparable': 1, 'no_paper_value': 0}
    assert md[2] == ('**30 cells: 21 comparable, 12 within tolerance, 9 outside; 9 not compared '
                     '(pending 3, demo 3, other device 2, other protocol 1)**')
    assert '## Outside tolerance' in md
    assert len(doc['cells']) == 30 and doc['tolerances']['params_M'] == {'abs': 0.05}
    gflops = next(c for c in doc['cells'] if c['column'] == 'gflops')
    assert gflops['gflops_mmcv'] == 4.191 and gflops['flops_input'] == '512x512'


def test_strict_fails_only_on_comparable_cells_outside(tmp_path, metrics_file, metrics, capsys):
    code, prefix = diff(tmp_path, metrics_file, '--strict')
    assert code == 1
    assert Path(f'{prefix}.md').exists()  # the verdicts are still written
    assert '9 comparable cell(s) outside tolerance' in capsys.readouterr().err
    params = tmp_path / 'params.yaml'
    params.write_text('tables: {strict: true}\n')
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
