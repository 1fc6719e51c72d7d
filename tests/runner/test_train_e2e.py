"""End to end on synthetic data (CPU): train a few iterations, resume after a simulated preemption,
evaluate into metrics.json; a diverging run stops with one error line."""
import json
import math
import os
from pathlib import Path

import pytest

pytest.importorskip('mmseg')
torch = pytest.importorskip('torch')

from cgrseg import cli, schemas  # noqa: E402
from cgrseg.runner.provenance import sha256_file  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    'ade20k': ROOT / 'configs/cgrseg/cgrseg-t_ade20k_160k.py',
    'coco_stuff10k': ROOT / 'configs/cgrseg/cgrseg-t_coco-stuff10k_80k.py',
    'pascal_context': ROOT / 'configs/cgrseg/cgrseg-t_pascal-context-59_80k.py',
}
NUM_CLASSES = {'ade20k': 150, 'coco_stuff10k': 171, 'pascal_context': 59}
SCHEMA_KEYS = ['model', 'variant', 'dataset', 'mode', 'protocol', 'mIoU', 'mAcc', 'aAcc', 'per_class_iou',
               'protocols', 'demo', 'iters', 'provenance']
PROVENANCE_KEYS = {'git_commit', 'config', 'config_sha256', 'resolved_config_sha256', 'checkpoint',
                   'packages', 'device', 'dataset_manifest_sha256'}


def cgrseg(*argv):
    return cli.main([str(a) for a in argv])


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    """The three data sets as `cgrseg synth`, `download` and `prepare` lay them out."""
    root = tmp_path_factory.mktemp('data')
    for dataset in CONFIGS:
        synth, raw = root / 'synthetic' / dataset, root / 'raw' / dataset
        assert cgrseg('synth', dataset, '--out', synth) == 0
        assert cgrseg('download', dataset, '--dest', raw, '--sources', synth / 'sources.yaml') == 0
        assert cgrseg('prepare', dataset, '--raw', raw, '--out', root / 'prepared') == 0
    return root / 'prepared'


def train_args(dataset, work_dir, prepared, iters):
    return ['train', CONFIGS[dataset], '--work-dir', work_dir, '--data-root', prepared,
            '--iters', iters, '--crop', 64, '--samples-per-gpu', 2, '--gpus', 0,
            '--no-pretrained', '--workers', 0, '--checkpoint-interval', 1]   # every iteration: resumable


def train_log(work_dir, earlier=()):
    """{iteration: lr} of the one json log that is not among ``earlier`` (mmcv writes one per run,
    named by its start second); file names, not one-second mtimes, tell the runs apart."""
    new = sorted(set(work_dir.glob('*.log.json')) - set(earlier))
    assert len(new) == 1, f'expected one new json log in {work_dir}, found {new}'
    records = [json.loads(line) for line in new[0].read_text().splitlines()]
    return {r['iter']: r['lr'] for r in records if r.get('mode') == 'train'}


def evaluate(dataset, checkpoint, prepared, out, *extra):
    assert cgrseg('evaluate', CONFIGS[dataset], checkpoint, '--out', out, '--data-root', prepared,
                  '--manifest', prepared / f'{dataset}.manifest.json', '--workers', 0, *extra) == 0
    doc = json.loads(out.read_text())
    assert schemas.problem(doc, 'metrics') is None   # workflow/schemas/metrics.schema.json
    return doc


def check_metrics(doc, dataset, mode, iters, checkpoint, prepared):
    assert list(doc) == SCHEMA_KEYS
    assert (doc['model'], doc['variant'], doc['dataset']) == ('cgrseg-t', 't', dataset)
    assert doc['mode'] == mode and doc['iters'] == iters
    assert list(doc['protocols']) == ['official', 'single_scale']
    assert doc['protocol']['mode'] == doc['protocols']['official']['mode'] == mode
    assert doc['protocols']['single_scale']['mode'] == 'ss'
    assert all(doc[k] == doc['protocols']['official'][k] for k in ('mIoU', 'mAcc', 'aAcc', 'per_class_iou'))
    assert doc['demo'] is True                       # synthetic data, demo schedule
    ious = doc['per_class_iou']
    assert len(ious) == NUM_CLASSES[dataset]
    present = [v for v in ious.values() if v is not None]
    assert present and all(0 <= v <= 100 for v in present)
    # mmseg's mIoU is the mean over classes present in prediction or ground truth
    assert math.isclose(doc['mIoU'], sum(present) / len(present), abs_tol=0.01)
    assert 0 <= doc['mAcc'] <= 100 and 0 <= doc['aAcc'] <= 100
    prov = doc['provenance']
    assert set(prov) == PROVENANCE_KEYS
    assert prov['config_sha256'] == sha256_file(CONFIGS[dataset])
    assert prov['checkpoint'] == str(checkpoint) and prov['device'] == 'cpu'
    assert prov['dataset_manifest_sha256'] == sha256_file(prepared / f'{dataset}.manifest.json')
    assert prov['packages']['torch'] == torch.__version__.split('+')[0]


def test_train_resume_evaluate(prepared, tmp_path, caplog):
    work = tmp_path / 'work'
    args = train_args('ade20k', work, prepared, iters=2)
    assert cgrseg(*args) == 0
    first = train_log(work)
    assert list(first) == [1, 2]
    assert os.readlink(work / 'latest.pth') == 'iter_2.pth'
    assert "crop_size=(64, 64)" in (work / 'config.py').read_text()

    # preempted after iteration 1: iteration 2's checkpoint never got written
    (work / 'latest.pth').unlink()
    (work / 'iter_2.pth').unlink()
    caplog.clear()
    logs = list(work.glob('*.log.json'))
    assert cgrseg(*args) == 0
    assert 'iter_1.pth: continuing after iteration 1' in caplog.text
    # ... and in this run's own log file, although an earlier run in this process set the logger up
    assert any('continuing after iteration 1' in log.read_text() for log in work.glob('*.log'))
    # continued: neither restarted nor repeated, on the same learning-rate schedule
    assert train_log(work, logs) == {2: first[2]}
    assert os.readlink(work / 'latest.pth') == 'iter_2.pth'

    logs = list(work.glob('*.log.json'))
    assert cgrseg(*args) == 0                        # finished run: a rerun trains nothing
    assert train_log(work, logs) == {}

    out = tmp_path / 'metrics.json'
    doc = evaluate('ade20k', work / 'latest.pth', prepared, out)
    check_metrics(doc, 'ade20k', 'ss', 2, work / 'latest.pth', prepared)


@pytest.mark.parametrize('dataset,mode', [('coco_stuff10k', 'ms'), ('pascal_context', 'ms_flip')])
def test_other_datasets_train_and_evaluate(prepared, tmp_path, dataset, mode):
    work = tmp_path / 'work'
    assert cgrseg(*train_args(dataset, work, prepared, iters=1), '--no-validate') == 0
    out = tmp_path / 'metrics.json'
    doc = evaluate(dataset, work / 'latest.pth', prepared, out)
    check_metrics(doc, dataset, mode, 1, work / 'latest.pth', prepared)


def test_nan_loss_stops_with_one_error(prepared, tmp_path, capsys):
    work = tmp_path / 'work'
    capsys.readouterr()
    code = cgrseg(*train_args('ade20k', work, prepared, iters=2), '--no-validate',
                  '--cfg-options', 'model.decode_head.loss_decode.loss_weight=nan')
    errors = [line for line in capsys.readouterr().err.splitlines() if ': error: ' in line]
    assert code == 2
    assert len(errors) == 1 and 'training diverged: loss is nan at iteration 1' in errors[0]
    assert not list(work.glob('*.pth'))              # the diverged step was never saved
