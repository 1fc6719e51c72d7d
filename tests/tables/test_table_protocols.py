"""The tables judge the official test protocol and show single scale and deploy throughput beside it."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cgrseg.cli import main
from cgrseg.tables import judge
from cgrseg.tables.collect import collect, load_params

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / 'configs' / 'paper' / 'results.yaml'
FIXTURE = ROOT / 'tests' / 'fixtures' / 'metrics'
MS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def protocol(name, mode, scales, flip, miou):
    return {'name': name, 'mode': mode, 'scales': scales, 'flip': flip, 'description': '...',
            'mIoU': miou, 'mAcc': 50.0, 'aAcc': 70.0, 'per_class_iou': {}}


@pytest.fixture
def results(tmp_path):
    """The fixture results, with COCO-Stuff CGRSeg-T evaluated by the new evaluate (official 6
    scales + single scale, a real run), CGRSeg-L by the old one (single scale only), and CGRSeg-T's
    ADE20K throughput with its protocols."""
    root = tmp_path / 'results'
    shutil.copytree(FIXTURE / 'results', root)
    run = root / 'runs' / 'coco_stuff10k' / 'cgrseg-t' / 'seed0' / 'metrics.json'
    doc = json.loads(run.read_text())
    official, single = protocol('official', 'ms', MS, False, 42.3), protocol('single_scale', 'ss', [1.0], False, 40.9)
    doc.update(mode='ms', protocol={k: v for k, v in official.items() if k != 'mIoU'}, mIoU=42.3,
               protocols={'official': official, 'single_scale': single}, demo=False, iters=80000)
    run.write_text(json.dumps(doc))
    older = root / 'runs' / 'coco_stuff10k' / 'cgrseg-l' / 'seed0' / 'metrics.json'  # a real run, single scale only
    older.write_text(json.dumps({**json.loads(older.read_text()), 'mode': 'ss', 'demo': False, 'iters': 80000}))
    tp = root / 'measure' / 'ade20k' / 'cgrseg-t.throughput.json'
    doc = json.loads(tp.read_text())
    doc.update(protocol='mmseg_benchmark', protocols={
        'mmseg_benchmark': {'img_per_s': doc['img_per_s'], 'deploy': False},
        'fixed_size': {'img_per_s': 160.0, 'deploy': False},
        'mmseg_benchmark_deploy': {'img_per_s': 190.5, 'deploy': True},
        'fixed_size_deploy': {'img_per_s': 210.0, 'deploy': True}})
    tp.write_text(json.dumps(doc))
    return root


def test_collect_keeps_single_scale_and_deploy_beside_the_judged_values(results):
    metrics = collect(load_params(FIXTURE / 'params.yaml'), results)
    assert metrics['coco_stuff10k.cgrseg-t.mIoU'] == 42.3 and metrics['coco_stuff10k.cgrseg-t.mIoU_mode'] == 'ms'
    assert metrics['coco_stuff10k.cgrseg-t.mIoU_ss'] == 40.9
    assert 'coco_stuff10k.cgrseg-b.mIoU_ss' not in metrics  # an older metrics.json: nothing invented
    assert metrics['ade20k.cgrseg-t.img_per_s'] == 151.2
    assert (metrics['ade20k.cgrseg-t.img_per_s_deploy'], metrics['ade20k.cgrseg-t.img_per_s_fixed']) == (190.5, 160.0)
    assert metrics['ade20k.cgrseg-t.throughput_protocol'] == 'mmseg_benchmark'


def test_the_official_protocol_is_judged_and_single_scale_shown(results, tmp_path):
    metrics = tmp_path / 'metrics.json'
    assert main(['collect', '--params', str(FIXTURE / 'params.yaml'), '--results', str(results),
                 '--out', str(metrics)]) == 0
    assert main(['diff', '--metrics', str(metrics), '--paper', str(PAPER), '--out', str(tmp_path / 'diff')]) == 0
    cells = {(c['dataset'], c['variant'], c['column']): c
             for c in json.loads((tmp_path / 'diff.json').read_text())['cells']}
    coco = cells['coco_stuff10k', 't', 'mIoU']
    assert coco['status'] == judge.WITHIN and coco['ours'] == 42.3 and coco['mIoU_ss'] == 40.9
    # a single-scale COCO-Stuff run (older evaluate) is another protocol than the official one
    assert cells['coco_stuff10k', 'l', 'mIoU']['status'] == judge.NOT_COMPARABLE

    out = tmp_path / 'tables'
    assert main(['tables', '--metrics', str(metrics), '--paper', str(PAPER), '--out', str(out)]) == 0
    md = (out / 'coco_stuff10k.md').read_text()
    header = [h.strip() for h in next(line for line in md.splitlines() if line.startswith('| Model')).strip('|').split('|')]
    assert header[:4] == ['Model', 'mIoU paper', 'mIoU ours', 'mIoU single scale ours']
    assert '6 scales (0.5-1.75), no flip, the official protocol' in md
    t_row = next(line for line in md.splitlines() if line.startswith('| CGRSeg-T'))
    assert '| 42.30 ' in t_row and '| 40.90 ' in t_row
    ade = (out / 'ade20k.md').read_text()
    assert 'single scale ours' not in ade  # ADE20K's official protocol is single scale
    assert 'img/s deploy ours' in ade and '| 190.5 ' in ade and 'never judged' in ade
    frame = pd.read_csv(out / 'ade20k.csv')
    assert frame['img_per_s_deploy'].tolist()[0] == 190.5


def test_collect_writes_every_field_of_a_model_in_a_stable_order(results, tmp_path):
    judged = results / 'measure' / 'judged' / 'cgrseg-t.flops.json'
    doc = json.loads(judged.read_text())
    doc['gflops']['fvcore'] = 4.571
    judged.write_text(json.dumps(doc))
    params = tmp_path / 'params.yaml'    # judged on the conv/linear count: each count lands in its own field
    params.write_text((FIXTURE / 'params.yaml').read_text().replace('gflops: mmcv', 'gflops: conv_linear_macs'))
    metrics = collect(load_params(params), results)
    judged_fields = [('params_M', 9.365), ('gflops', 3.945), ('gflops_convention', 'conv_linear_macs'),
                     ('flops_input', '512x512'), ('flops_dataset', 'ade20k'), ('flops_classes', 150),
                     ('gflops_mmcv', 3.998), ('gflops_conv_linear_macs', 3.945), ('gflops_fvcore', 4.571)]
    assert [(k.removeprefix('coco_stuff10k.cgrseg-t.'), v) for k, v in metrics.items()
            if k.startswith('coco_stuff10k.cgrseg-t.')] == [
        ('mIoU', 42.3), ('mAcc', 12.37), ('aAcc', 80.0), ('mIoU_ss', 40.9), ('mIoU_n', 1), ('mIoU_seeds', 1),
        ('mIoU_seed0', 42.3), ('mIoU_mode', 'ms'), ('demo', False), ('iters', 80000), *judged_fields,
        ('params_M_dataset', 9.367), ('gflops_dataset', 3.967), ('flops_input_dataset', '512x512'),
        ('num_classes_dataset', 171)]
    assert [(k.removeprefix('ade20k.cgrseg-t.'), v) for k, v in metrics.items() if k.startswith('ade20k.cgrseg-t.')
            and not k.startswith('ade20k.cgrseg-t.m') and not k.startswith('ade20k.cgrseg-t.aA')] == [
        ('demo', False), ('iters', 160000), *judged_fields,
        ('params_M_dataset', 9.365), ('gflops_dataset', 3.945), ('flops_input_dataset', '512x512'),
        ('num_classes_dataset', 150),
        ('img_per_s', 151.2), ('throughput_device', 'cuda'), ('throughput_device_name', 'NVIDIA H100 80GB HBM3'),
        ('throughput_batch_size', 1), ('throughput_dtype', 'float32'), ('throughput_protocol', 'mmseg_benchmark'),
        ('throughput_input', '512x512'), ('img_per_s_fixed', 160.0), ('img_per_s_deploy', 190.5)]
    assert 'pascal_context.cgrseg-t.throughput_input' not in metrics   # nothing for a file that is not there
