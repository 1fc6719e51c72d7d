"""`cgrseg throughput`: the paper protocol (mmseg tools/benchmark.py), fixed size and deploy figures."""
import json

import pytest
import torch

pytest.importorskip('mmseg')

from cgrseg import schemas  # noqa: E402
from cgrseg.measure import throughput as T  # noqa: E402
from reference import ade20k_config  # noqa: E402


class FakeClock:
    """perf_counter for a loop in which each of the first five images takes 1000 s, the others 2 s."""

    def __init__(self):
        self.now, self.calls = 0.0, 0

    def __call__(self):
        self.calls += 1
        if self.calls % 2 == 0:  # the stop reading of image calls // 2 - 1
            self.now += 1000 if self.calls // 2 <= 5 else 2
        return self.now


class FakeModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, return_loss, rescale, img, img_metas):
        self.calls.append((return_loss, rescale, tuple(img[0].shape)))


def fake_loader(n):
    from mmcv.parallel import DataContainer
    return [{'img': [DataContainer([torch.zeros(1, 3, 8, 8 + i)])], 'img_metas': [DataContainer([[{}]], cpu_only=True)]}
            for i in range(n)]


@pytest.mark.parametrize('dataset_images', [200, 3])  # a test set shorter than --images is passed again
def test_benchmark_loop_counts_the_images_after_the_first_five(monkeypatch, dataset_images):
    monkeypatch.setattr(T.time, 'perf_counter', FakeClock())
    model = FakeModel()
    result = T.mmseg_benchmark(model, torch.device('cpu'), fake_loader(dataset_images), images=200, skip=5)
    assert len(model.calls) == 200
    assert all(call[:2] == (False, True) for call in model.calls)  # return_loss=False, rescale=True
    assert result['img_per_s'] == 0.5  # 195 images in 390 s; the slow first five not counted
    assert (result['images'], result['skipped'], result['batch_size']) == (200, 5, 1)


def test_throughput_bad_input_is_one_error_line(run_cli, tmp_path):
    res = run_cli('throughput', ade20k_config('t'), '--images', 5, '--out', tmp_path / 't.json')
    assert res.code == 2 and res.error_lines == ['cgrseg throughput: error: --images 5: must exceed --skip 5']
    res = run_cli('throughput', ade20k_config('t'), '--data-root', tmp_path / 'none', '--out', tmp_path / 't.json')
    assert res.code == 2 and len(res.error_lines) == 1 and 'does not exist' in res.error_lines[0]
    assert not (tmp_path / 't.json').exists()


@pytest.fixture(scope='module')
def prepared_ade(tmp_path_factory):
    from cgrseg import cli
    root = tmp_path_factory.mktemp('data')
    synth, raw = root / 'synthetic', root / 'raw'
    assert cli.main(['synth', 'ade20k', '--out', str(synth)]) == 0
    assert cli.main(['download', 'ade20k', '--dest', str(raw), '--sources', str(synth / 'sources.yaml')]) == 0
    assert cli.main(['prepare', 'ade20k', '--raw', str(raw), '--out', str(root / 'prepared')]) == 0
    return root / 'prepared'


def test_throughput_records_both_protocols_and_deploy(run_cli, prepared_ade, tmp_path):
    out = tmp_path / 't.json'
    res = run_cli('throughput', ade20k_config('t'), '--data-root', prepared_ade, '--crop', 64,
                  '--manifest', prepared_ade / 'ade20k.manifest.json', '--images', 7, '--deploy',
                  '--shape', 64, 64, '--warmup', 1, '--repeats', 2, '--iters', 1, '--device', 'cpu', '--out', out)
    assert res.code == 0, res.err
    doc = json.loads(out.read_text())
    assert schemas.problem(doc, 'throughput') is None   # workflow/schemas/throughput.schema.json
    protocols = doc['protocols']
    assert list(protocols) == ['mmseg_benchmark', 'fixed_size', 'mmseg_benchmark_deploy', 'fixed_size_deploy']
    assert doc['protocol'] == 'mmseg_benchmark' and doc['img_per_s'] == protocols['mmseg_benchmark']['img_per_s']
    assert [p['deploy'] for p in protocols.values()] == [False, False, True, True]
    paper = protocols['mmseg_benchmark']
    assert (paper['images'], paper['skipped'], paper['batch_size'], paper['dtype']) == (7, 5, 1, 'float32')
    assert paper['test_protocol']['mode'] == 'ss'
    # the demo crop scales the test resize: short side 512 * 64 / 512, padded to /32
    assert all(min(size) == 64 for size in paper['input_sizes'])
    assert len(protocols['fixed_size']['img_per_s_runs']) == 2
    assert protocols['fixed_size']['input_shape'] == [3, 64, 64]
    assert doc['device'] == 'cpu' and 'not comparable' in doc['note'] and doc['dataset'] == 'ade20k'
    assert doc['dataset_manifest_sha256'] and doc['torch'] == torch.__version__
