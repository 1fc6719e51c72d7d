"""What `snakemake --report` shows and the model zoo: training curves from mmcv's JSON logs, the
published checkpoints and metafile (against mmseg's gather_models and the model-index package),
and the report's HTML pages (escaped, OUTSIDE rows marked). The report in a browser:
tests/workflow/test_report_browser.py."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from cgrseg import curves, pages, zoo

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / 'results' / 'reference' / 'demo'
RUN = 'ade20k/cgrseg-t/seed0'
CONFIG = 'configs/cgrseg/cgrseg-t_ade20k_160k.py'


def log_lines(*records):
    return ''.join(json.dumps(r) + '\n' for r in records)


META = {'seed': 0, 'exp_name': 'cgrseg-t_ade20k_160k.py', 'config': 'model = dict()',
        'CLASSES': ['wall'], 'cgrseg': {'crop': 64, 'iters': 30, 'samples_per_gpu': 4, 'gpus': 0}}


def train(step, loss, lr=1e-3, **extra):
    return {'mode': 'train', 'epoch': 1, 'iter': step, 'lr': lr, 'loss': loss, **extra}


# ---- curves -----------------------------------------------------------------------------------

def test_a_resumed_run_reads_as_one_history(tmp_path):
    (tmp_path / '20260101_000000.log.json').write_text(log_lines(
        META, train(10, 2.0), train(20, 1.5), {'mode': 'val', 'iter': 20, 'mIoU': 0.25}, train(30, 1.4)))
    # the trainer was killed after iteration 30 and resumed from the checkpoint of iteration 20
    (tmp_path / '20260102_000000.log.json').write_text(log_lines(
        META, train(30, 1.2), '{"mode": "train", "iter": 40, "lo', train(40, 1.1, memory=2048)))
    history = curves.read_history(tmp_path)
    assert history['loss'] == [(10, 2.0), (20, 1.5), (30, 1.2), (40, 1.1)]
    assert history['mIoU'] == [(20, 25.0)]              # mmseg 0.x logs a fraction
    assert history['memory'] == [(40, 2048.0)]
    assert history['starts'] == ['20260101_000000', '20260102_000000']
    assert history['meta']['cgrseg']['iters'] == 30


def test_non_finite_and_malformed_records_are_skipped(tmp_path):
    (tmp_path / 'a.log.json').write_text(log_lines(META, train(1, float('nan')), train(2, 1.0), [1, 2],
                                                   {'mode': 'train', 'iter': 'x', 'loss': 1.0}) + 'garbage\n')
    assert curves.read_history(tmp_path)['loss'] == [(2, 1.0)]


def test_a_huge_log_is_refused_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(curves, 'MAX_LOG', 100)
    (tmp_path / 'a.log.json').write_text(log_lines(META, *[train(i, 1.0) for i in range(10)]))
    with pytest.raises(curves.CGRSegError, match='more than the 0 MB a training log may have'):
        curves.read_history(tmp_path)


@pytest.mark.parametrize('name', ['../x/cgrseg-t/seed0', 'ade20k/cgrseg-t/seed0/..', 'ade20k/t/seed0'])
def test_run_names_cannot_leave_their_folders(name):
    with pytest.raises(curves.CGRSegError, match='expected DATASET/cgrseg-VARIANT/seedN'):
        curves.parse_run(name)


# ---- a finished run, as the DAG leaves it -------------------------------------------------------

@pytest.fixture
def finished(tmp_path):
    """results/ and work_dirs/ of one finished demo run (a small mmcv-style checkpoint with an
    optimizer state, its JSON log, and the committed demo's metrics and throughput records)."""
    work = tmp_path / 'work_dirs' / RUN
    work.mkdir(parents=True)
    state = {'meta': {'iter': 29, 'epoch': 1, 'mmcv_version': '1.7.2', 'CLASSES': ('wall',), 'cgrseg': META['cgrseg']},
             'state_dict': {'backbone.w': torch.arange(12.0).reshape(3, 4), 'decode_head.b': torch.ones(3)},
             'optimizer': {'state': {0: {'exp_avg': torch.zeros(3, 4)}}, 'param_groups': [{'lr': 0.1}]}}
    torch.save(state, work / 'iter_30.pth')
    (work / 'latest.pth').symlink_to('iter_30.pth')
    (work / '20260101_120000.log.json').write_text(log_lines(META, train(10, 2.0), train(30, 1.0)))
    results = tmp_path / 'results'
    for rel in (f'runs/{RUN}/metrics.json', 'measure/ade20k/cgrseg-t.throughput.json'):
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REFERENCE / rel, results / rel)
    return tmp_path


@pytest.fixture
def gathered(finished, monkeypatch):
    monkeypatch.chdir(REPO)   # Config paths are the repository's
    out = finished / 'zoo'
    zoo.gather([RUN], [CONFIG], finished / 'work_dirs', finished / 'results', out)
    return out


def gather_models_reference(in_file, out_stem):
    """mmseg 0.x .dev/gather_models.py process_checkpoint, step by step."""
    checkpoint = torch.load(in_file, map_location='cpu')
    if 'optimizer' in checkpoint:
        del checkpoint['optimizer']
    out_file = out_stem   # publish_model_path: {config}_{start time}, no extension
    torch.save(checkpoint, out_file)
    with open(out_file, 'rb') as fp:
        sha = hashlib.sha256(fp.read()).hexdigest()
    final_file = f'{out_stem}-{sha[:8]}.pth'
    Path(out_file).rename(final_file)
    return Path(final_file)


def test_the_published_checkpoint_is_gather_models_one(gathered, finished, tmp_path):
    published = list((gathered / 'weights' / RUN).glob('*.pth'))
    assert len(published) == 1
    reference = gather_models_reference(finished / 'work_dirs' / RUN / 'latest.pth',
                                        str(tmp_path / 'cgrseg-t_ade20k_160k_20260101_120000'))
    assert published[0].name == reference.name
    assert published[0].read_bytes() == reference.read_bytes()
    loaded = torch.load(published[0], weights_only=True)
    assert 'optimizer' not in loaded and torch.equal(loaded['state_dict']['backbone.w'],
                                                     torch.arange(12.0).reshape(3, 4))
    assert (gathered / 'weights' / RUN / 'cgrseg-t_ade20k_160k_20260101_120000.log.json').is_file()


def test_the_metafile_is_valid_for_model_index_and_carries_mmsegs_fields(gathered, finished):
    import modelindex
    index = modelindex.load(str(gathered / 'model-index.yml'))
    assert index.check(silent=True) == []
    assert [m.name for m in index.models] == ['cgrseg-t_ade20k_160k']
    doc = yaml.safe_load((gathered / 'cgrseg.yml').read_text())
    model = doc['Models'][0]
    metrics = json.loads((REFERENCE / 'runs' / RUN / 'metrics.json').read_text())
    throughput = json.loads((REFERENCE / 'measure/ade20k/cgrseg-t.throughput.json').read_text())
    assert model['In Collection'] == 'CGRSeg' == doc['Collections'][0]['Name']
    assert model['Config'] == CONFIG
    meta = model['Metadata']
    assert meta['backbone'] == 'EfficientFormerV2-S1' and meta['crop size'] == '(64,64)'
    assert meta['lr schd'] == 30 and meta['batch size'] == 4 and meta['GPUs'] == '0 (CPU)'
    assert meta['Training Memory (GB)'] == 'not measured (CPU run)'
    timing = meta['inference time (ms/im)'][0]
    assert timing['value'] == round(1000 / throughput['img_per_s'], 2)
    assert timing['hardware'] == throughput['device_name'] and timing['mode'] == 'FP32'
    assert timing['protocol'].startswith('mmseg 0.x tools/benchmark.py')
    # ADE20K's official protocol is single scale: one mIoU, as measured
    assert model['Results'] == [{'Task': 'Semantic Segmentation', 'Dataset': 'ADE20K (synthetic demo data)',
                                 'Metrics': {'mIoU': metrics['mIoU']}}]
    assert model['Weights'].startswith(f'{gathered}/weights/{RUN}/cgrseg-t_ade20k_160k_20260101_120000-')
    assert zoo.validate(gathered, weights_prefix=str(gathered)) == []


def test_multi_scale_results_and_gpu_memory_are_recorded_as_measured(finished, monkeypatch):
    monkeypatch.chdir(REPO)
    facts = zoo.run_facts(RUN, CONFIG, finished / 'work_dirs', finished / 'results')
    facts['metrics'] = dict(facts['metrics'], mode='ms_flip', mIoU=51.0,
                            protocols={'single_scale': {'mIoU': 49.0}})
    facts['history']['memory'] = [(10, 3000.0), (30, 3500.0)]
    facts['history']['meta']['cgrseg'] = dict(META['cgrseg'], gpus=4, crop=None)
    entry = zoo.entry(facts, 'x', 'w')
    assert entry['Results'][0]['Metrics'] == {'mIoU': 49.0, 'mIoU(ms+flip)': 51.0}
    assert entry['Metadata']['Training Memory (GB)'] == round(3500 / 1024, 2)
    assert entry['Metadata']['GPUs'] == 4 and entry['Metadata']['batch size'] == 16
    assert entry['Metadata']['crop size'] == '(512,512)'   # the config's own crop


def test_validation_names_a_tampered_checkpoint_and_missing_fields(gathered):
    published = next((gathered / 'weights' / RUN).glob('*.pth'))
    with open(published, 'ab') as f:
        f.write(b'\0')
    doc = yaml.safe_load((gathered / 'cgrseg.yml').read_text())
    del doc['Models'][0]['Metadata']['lr schd']
    doc['Models'][0]['In Collection'] = 'Other'
    (gathered / 'cgrseg.yml').write_text(yaml.safe_dump(doc, sort_keys=False))
    problems = zoo.validate(gathered, weights_prefix=str(gathered))
    where = f'{gathered / "cgrseg.yml"}: cgrseg-t_ade20k_160k'
    assert f"{where}: Metadata has no 'lr schd'" in problems
    assert f"{where}: In Collection 'Other' is not a collection" in problems
    assert any(p.startswith(f'{where}: Weights ') and 'sha256 does not start with' in p for p in problems)


def test_a_run_without_evaluation_is_one_line_and_leaves_no_zoo(finished, run_cli, monkeypatch):
    monkeypatch.chdir(REPO)
    (finished / 'results' / 'runs' / RUN / 'metrics.json').unlink()
    result = run_cli('zoo', '--runs', RUN, '--configs', CONFIG, '--work-root', finished / 'work_dirs',
                     '--results', finished / 'results', '--out', finished / 'zoo')
    assert result.code == 2
    assert result.error_lines == [f'cgrseg zoo: error: {finished}/results/runs/{RUN}/metrics.json: '
                                  'not found (evaluate the run first)']
    assert not (finished / 'zoo').exists()


# ---- pages --------------------------------------------------------------------------------------

def test_markup_from_a_result_file_is_shown_as_text(tmp_path):
    record = json.loads((REFERENCE / 'measure/ade20k/cgrseg-t.throughput.json').read_text())
    record['device_name'] = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    path = tmp_path / 't.json'
    path.write_text(json.dumps(record))
    html = pages.measure_page([], [path])
    assert '<script>' not in html and '<img' not in html and '&lt;script&gt;' in html
    html = pages.markdown_page('| a |\n|---|\n| <b onclick=x>b</b> |\n', 't')
    assert '<b onclick' not in html and '&lt;b onclick=x&gt;' in html


def test_outside_rows_are_marked():
    text = '| Model | Verdict |\n|:--|:--|\n| T | ok |\n| B | OUTSIDE |\n'
    rows = pages.markdown_page(text, 'diff').split('<tr')
    assert [r.startswith(' class="outside"') for r in rows[2:]] == [False, True]


def test_the_judged_records_list_the_skipped_operators(tmp_path):
    record = {'model': 'cgrseg-t', 'dataset': 'ade20k', 'input_shape': [3, 512, 512], 'num_classes': 150,
              'params_M': 9.365, 'gflops': {'mmcv': 3.998, 'conv_linear_macs': 3.945, 'fvcore': 4.778},
              'skipped_operators': {'mmcv': {'matmul': 0.582, 'softmax': None},
                                    'conv_linear_macs': {'matmul': 0.582, 'softmax': None},
                                    'fvcore': {'softmax': None}}}
    path = tmp_path / 'judged' / 'cgrseg-t.flops.json'
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    frame = pages.skipped_table(record)
    assert frame.to_dict('records') == [
        {'operator (aten)': 'matmul', 'mmcv': 'skipped (0.582 G by fvcore)',
         'conv_linear_macs': 'skipped (0.582 G by fvcore)', 'fvcore': 'counted'},
        {'operator (aten)': 'softmax', 'mmcv': 'skipped', 'conv_linear_macs': 'skipped', 'fvcore': 'skipped'}]
    assert 'Operators each convention skips: cgrseg-t' in pages.measure_page([path], [])
