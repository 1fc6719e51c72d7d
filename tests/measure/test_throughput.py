"""`cgrseg throughput`: the paper protocol (mmseg tools/benchmark.py), fixed size and deploy figures."""
import json

import pytest
import torch

pytest.importorskip('mmseg')

from cgrseg import schemas  # noqa: E402
from cgrseg.measure import throughput as T  # noqa: E402
from conftest import exactly  # noqa: E402
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


# ---- the parts, one by one, on tiny models, a fake clock and a fake data set (fast) ----

def cuda_cfg(**data):
    from mmcv import Config
    return Config({'data': data})


def test_workers_are_the_users_else_the_configs_on_cuda_bounded_by_the_cores_else_none_on_cpu(monkeypatch):
    """tools/benchmark.py loads with the config's workers_per_gpu; on CPU the loading stays in the main
    process (workers would take the cores the timed forward runs on)."""
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    monkeypatch.setattr('os.cpu_count', lambda: 16)
    assert T._workers(None, cuda_cfg(workers_per_gpu=4), cpu) == 0
    assert T._workers(None, cuda_cfg(workers_per_gpu=4), cuda) == 4
    assert T._workers(None, cuda_cfg(), cuda) == 2                      # mmseg's default
    assert [T._workers(n, cuda_cfg(workers_per_gpu=4), d) for n in (0, 3) for d in (cpu, cuda)] == [0, 0, 3, 3]
    monkeypatch.setattr('os.cpu_count', lambda: 3)
    assert T._workers(None, cuda_cfg(workers_per_gpu=4), cuda) == 3     # no more than the cores
    monkeypatch.setattr('os.cpu_count', lambda: None)                   # unknown: one
    assert T._workers(None, cuda_cfg(workers_per_gpu=4), cuda) == 1


class Images(torch.utils.data.Dataset):
    """A test set as the test pipeline leaves it: one image (a 3x8x(8+i) tensor) and its metas."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        from mmcv.parallel import DataContainer
        return {'img': [torch.full((3, 8, 8 + i), float(i))], 'img_metas': [DataContainer({'i': i}, cpu_only=True)]}


def test_loader_passes_the_test_images_in_order_one_at_a_time_as_tools_benchmark(monkeypatch):
    """mmseg 0.30 tools/benchmark.py: build_dataloader(dataset, samples_per_gpu=1,
    workers_per_gpu=cfg.data.workers_per_gpu, dist=False, shuffle=False): a plain sequential loader."""
    import mmseg.datasets
    built = []
    monkeypatch.setattr(mmseg.datasets, 'build_dataset', lambda cfg: built.append(cfg) or Images(3))
    cfg = cuda_cfg(test={'data_root': 'somewhere'})
    loader, n = T._loader(cfg, 0)
    assert n == 3 and built == [cfg.data.test]
    assert type(loader.sampler) is torch.utils.data.SequentialSampler
    assert (loader.batch_size, loader.num_workers, loader.persistent_workers) == (1, 0, False)
    assert [batch['img_metas'][0].data[0][0]['i'] for batch in loader] == [0, 1, 2]
    assert T._loader(cfg, 2)[0].num_workers == 2
    monkeypatch.setattr(mmseg.datasets, 'build_dataset', lambda cfg: Images(1))
    assert T._loader(cfg, 0)[1] == 1                                    # one image is enough
    monkeypatch.setattr(mmseg.datasets, 'build_dataset', lambda cfg: Images(0))
    with pytest.raises(T.CGRSegError, match=r'^the test set under somewhere has no images$'):
        T._loader(cfg, 0)


class Tiny(torch.nn.Module):
    def __init__(self, value=None):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2)
        if value is not None:
            for t in self.state_dict().values():
                t.fill_(value)


def test_model_is_the_configs_in_eval_mode_on_the_device_with_the_checkpoints_weights(monkeypatch, tmp_path):
    import cgrseg.models.build as build
    built = []
    monkeypatch.setattr(build, 'build_model', lambda cfg: built.append(cfg) or Tiny())
    cfg, meta = cuda_cfg(), torch.device('meta')
    model = T._model(cfg, None, meta)                                   # the initialisation
    assert built == [cfg] and not model.training and {p.device for p in model.parameters()} == {meta}
    ckpt = tmp_path / 'w.pth'
    torch.save({'state_dict': {f'module.{k}': v for k, v in Tiny(0.5).state_dict().items()}, 'meta': {}}, ckpt)
    model = T._model(cfg, str(ckpt), torch.device('cpu'))
    assert built == [cfg, cfg] and not model.training
    assert all(torch.equal(v, torch.full_like(v, 0.5)) for v in model.state_dict().values())
    assert {p.device for p in T._model(cfg, str(ckpt), meta).parameters()} == {meta}
    # read through cgrseg's checked reader: NaN weights are refused, by name
    torch.save({'state_dict': {k: v * float('nan') for k, v in Tiny().state_dict().items()}}, ckpt)
    with pytest.raises(T.CGRSegError, match=r'^.*w\.pth: \d weight tensor\(s\) hold NaN or Inf \(first: conv\.weight\); '
                                            r'refusing to use them$'):
        T._model(cfg, str(ckpt), torch.device('cpu'))


class Ticks:
    """``time.perf_counter`` that stands still except when ``tick`` is called (by a fake model)."""

    def __init__(self, durations):
        self.now, self.durations = 0.0, list(durations)

    def __call__(self):
        return self.now

    def tick(self):
        self.now += self.durations.pop(0)


class Passes(torch.nn.Module):
    """Records each forward_dummy pass: input shape, device, output dtype, whether grad was on."""

    def __init__(self, tick=None):
        super().__init__()
        self.conv, self.seen, self.tick = torch.nn.Conv2d(3, 2, 1), [], tick

    def forward_dummy(self, x):
        out = self.conv(x) if x.device.type == 'cpu' else x
        self.seen.append((tuple(x.shape), x.device.type, out.dtype, torch.is_grad_enabled()))
        if self.tick:
            self.tick()


def test_fixed_size_times_repeats_runs_of_iters_passes_after_warmup_and_records_its_settings(monkeypatch):
    """1 untimed pass, then 3 runs of 2 passes of a batch of 2 at 16x24: 0.2, 0.3 and 0.4 s per run."""
    clock = Ticks([100.0] + [0.1] * 2 + [0.15] * 2 + [0.2] * 2)
    monkeypatch.setattr(T.time, 'perf_counter', clock)
    model = Passes(clock.tick)
    result = T.fixed_size(model, torch.device('cpu'), (16, 24), batch_size=2, dtype='float32', warmup=1,
                          repeats=3, iters=2)
    assert clock.durations == [] and model.seen == [((2, 3, 16, 24), 'cpu', torch.float32, False)] * 7
    assert result == {
        'img_per_s': 13.33, 'img_per_s_runs': [20.0, 13.33, 10.0], 'input_shape': [3, 16, 24], 'batch_size': 2,
        'dtype': 'float32', 'warmup': 1, 'repeats': 3, 'iters_per_repeat': 2,
        'description': 'random 16x24 input, forward_dummy (no resize back), median of 3 runs of 2 passes'}


def test_fixed_size_float16_runs_the_passes_under_float16_autocast():
    model = Passes()
    result = T.fixed_size(model, torch.device('cpu'), (4, 4), 1, 'float16', warmup=0, repeats=1, iters=1)
    assert model.seen == [((1, 3, 4, 4), 'cpu', torch.float16, False)] and result['dtype'] == 'float16'


def test_fixed_size_input_is_made_on_the_measured_device_not_torchs_default():
    model = Passes()
    with torch.device('meta'):                                          # torch's default device elsewhere
        T.fixed_size(model, torch.device('cpu'), (4, 4), 1, 'float32', warmup=0, repeats=1, iters=1)
    assert [seen[1] for seen in model.seen] == ['cpu']


def test_timed_runs_synchronise_the_device_after_the_warmup_and_before_each_stop_reading(monkeypatch):
    events, readings = [], iter([0.0, 1.5, 2.0, 4.5])
    monkeypatch.setattr(T, '_sync', lambda device: lambda: events.append('sync'))
    monkeypatch.setattr(T.time, 'perf_counter', lambda: events.append('clock') or next(readings))
    times = T.timed_runs(lambda: events.append('pass'), torch.device('cpu'), warmup=2, repeats=2, iters=3)
    assert times == [1.5, 2.5]
    assert events == ['pass'] * 2 + ['sync'] + (['clock'] + ['pass'] * 3 + ['sync', 'clock']) * 2


def test_benchmark_syncs_around_each_call_and_records_its_settings_and_first_twenty_sizes(monkeypatch):
    """25 images of distinct sizes, 30 passed (the test set again from its start); the first 5 not counted."""
    events = []

    class Model(torch.nn.Module):
        def forward(self, return_loss, rescale, img, img_metas):
            events.append('model')
            clock.tick()

    clock = Ticks([1000.0] * 5 + [0.25] * 25)
    monkeypatch.setattr(T, '_sync', lambda device: lambda: events.append('sync'))
    monkeypatch.setattr(T.time, 'perf_counter', lambda: events.append('clock') or clock())
    result = T.mmseg_benchmark(Model(), torch.device('cpu'), fake_loader(25), images=30, skip=5)
    assert events == ['sync', 'clock', 'model', 'sync', 'clock'] * 30 and clock.durations == []
    assert result == {
        'img_per_s': 4.0, 'images': 30, 'skipped': 5, 'batch_size': 1, 'dtype': 'float32', 'rescale': True,
        'input_sizes': [[8, 8 + i] for i in range(20)],
        'description': "mmseg 0.x tools/benchmark.py (the authors' code base): batch 1, real test images through "
                       'the test pipeline, model(return_loss=False, rescale=True), fp32, cudnn.benchmark off; '
                       'img/s over the images after the first 5'}


def test_check_refuses_each_bad_option_in_one_line(tmp_path):
    from types import SimpleNamespace

    def check(**options):
        T._check(SimpleNamespace(**{**dict(images=6, skip=5, checkpoint=None, manifest=None, dtype='float32',
                                            device='cpu'), **options}))

    (tmp_path / 'w.pth').write_bytes(b'x')
    (tmp_path / 'm.json').write_text('{}')
    check()                                                             # one image measured
    check(images=1, skip=0, checkpoint=str(tmp_path / 'w.pth'), manifest=str(tmp_path / 'm.json'))
    for images, skip in ((5, 5), (4, 5)):
        with pytest.raises(T.CGRSegError, match=rf'^--images {images}: must exceed --skip {skip}$'):
            check(images=images, skip=skip)
    for label in ('checkpoint', 'manifest'):
        for path in (tmp_path / 'none', tmp_path):                      # missing, or not a file
            with pytest.raises(T.CGRSegError, match=rf'^{path}: no such {label} file$'):
                check(**{label: str(path)})
    with pytest.raises(T.CGRSegError, match=r'^--dtype float16 needs a CUDA device \(autocast\)$'):
        check(dtype='float16')


def prepared_tree(root):
    ade = root / 'ade' / 'ADEChallengeData2016'
    for sub in ('images/validation', 'annotations/validation'):
        (ade / sub).mkdir(parents=True)
    return ade


def bad_head_config(folder):
    config = folder / 'cgrseg-t_ade20k_bad.py'
    config.write_text(f"_base_ = '{ade20k_config('t')}'\nmodel = dict(decode_head=dict(num_classes=1.5))\n")
    return config


def test_test_config_is_the_test_split_under_the_data_root_without_pretrained_weights(tmp_path):
    ade = prepared_tree(tmp_path)
    cfg = T._test_config(ade20k_config('t'), str(tmp_path), None)
    test = cfg.data.test
    assert (test.data_root, test.test_mode, test.img_dir) == (str(ade), True, 'images/validation')
    assert test.pipeline[1].img_scale == (2048, 512)
    assert cfg.model.pretrained is None and cfg.model.backbone.init_cfg is None
    cfg = T._test_config(ade20k_config('t'), str(tmp_path), 64)        # the demo crop scales the resize
    assert cfg.data.test.pipeline[1].img_scale == (256, 64)
    (ade / 'annotations' / 'validation').rmdir()
    with pytest.raises(T.CGRSegError, match=rf'^{ade}/annotations/validation: ann_dir of the test set does not '
                                            r'exist \(run `cgrseg prepare`, or point --data-root at the prepared data\)$'):
        T._test_config(ade20k_config('t'), str(tmp_path), None)
    config = bad_head_config(tmp_path)                                  # the model is checked before the data
    with pytest.raises(T.CGRSegError, match=exactly(f'{config}: `model.decode_head.num_classes` must be a '
                                                    'positive integer, not 1.5')):
        T._test_config(config, str(tmp_path), None)


class Segmentor(Tiny):
    """A stand-in segmentor: each call (either protocol) takes 0.5 s on the fake clock."""

    def __init__(self, tick):
        super().__init__()
        self.tick = tick

    def forward(self, return_loss, rescale, img, img_metas):
        self.tick()

    def forward_dummy(self, x):
        self.tick()


def measure_args(tmp_path, **options):
    from types import SimpleNamespace
    manifest = tmp_path / 'ade20k.manifest.json'
    manifest.write_text('{"files": []}\n')
    return SimpleNamespace(**{**dict(
        config=ade20k_config('t'), data_root=str(tmp_path), crop=None, checkpoint=None, manifest=str(manifest),
        device='cpu', images=7, skip=5, workers=None, deploy=True, shape=(16, 24), batch_size=2, dtype='float32',
        warmup=1, repeats=2, iters=3), **options})


def test_measure_documents_every_protocol_and_the_machine_on_cpu(monkeypatch, tmp_path):
    import hashlib
    import platform
    import mmseg.datasets
    import cgrseg.models.build as build
    import cgrseg.models.deploy as deploy
    from cgrseg.runner.protocols import describe
    clock = Ticks([0.5] * 1000)
    monkeypatch.setattr(T.time, 'perf_counter', clock)
    monkeypatch.setattr(build, 'build_model', lambda cfg: Segmentor(lambda: clock.tick()))
    monkeypatch.setattr(mmseg.datasets, 'build_dataset', lambda cfg: Images(3))
    workers, deployed, real_loader, real_deploy = [], [], T._loader, deploy.deploy
    monkeypatch.setattr(T, '_loader', lambda cfg, n: workers.append(n) or real_loader(cfg, n))
    monkeypatch.setattr(deploy, 'deploy', lambda m, channels_last: deployed.append(channels_last) or real_deploy(m))
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', True)
    prepared_tree(tmp_path)
    args = measure_args(tmp_path, crop=64)
    doc = T.measure(args)
    assert torch.backends.cudnn.benchmark is False and workers == [0] and deployed == [True]
    paper = {'img_per_s': 2.0, 'images': 7, 'skipped': 5, 'batch_size': 1, 'dtype': 'float32', 'rescale': True,
             'input_sizes': [[8, 8], [8, 9], [8, 10]], 'description': T.DESCRIPTIONS['mmseg_benchmark'].format(skip=5),
             'distinct_images': 3, 'test_protocol': describe(T._test_config(args.config, str(tmp_path), 64))}
    fixed = {'img_per_s': 4.0, 'img_per_s_runs': [4.0, 4.0], 'input_shape': [3, 16, 24], 'batch_size': 2,
             'dtype': 'float32', 'warmup': 1, 'repeats': 2, 'iters_per_repeat': 3,
             'description': 'random 16x24 input, forward_dummy (no resize back), median of 2 runs of 3 passes'}
    assert doc == {
        'model': 'cgrseg-t', 'variant': 't', 'dataset': 'ade20k', 'config': str(args.config), 'img_per_s': 2.0,
        'protocol': 'mmseg_benchmark', 'batch_size': 1, 'dtype': 'float32',
        'protocols': {'mmseg_benchmark': {**paper, 'deploy': False}, 'fixed_size': {**fixed, 'deploy': False},
                      'mmseg_benchmark_deploy': {**paper, 'deploy': True, 'channels_last': True},
                      'fixed_size_deploy': {**fixed, 'deploy': True}},
        'device': 'cpu', 'device_name': platform.processor() or platform.machine(), 'torch': torch.__version__,
        'cuda': None, 'threads': torch.get_num_threads(), 'checkpoint': None,
        'dataset_manifest_sha256': hashlib.sha256(b'{"files": []}\n').hexdigest(),
        'note': 'measured on CPU: not comparable with the paper (GPU)'}
    assert list(doc['protocols']) == ['mmseg_benchmark', 'fixed_size', 'mmseg_benchmark_deploy', 'fixed_size_deploy']
    doc = T.measure(measure_args(tmp_path, deploy=False, manifest=None, images=2, skip=0, workers=1))
    assert list(doc['protocols']) == ['mmseg_benchmark', 'fixed_size'] and doc['dataset_manifest_sha256'] is None
    assert doc['protocols']['mmseg_benchmark']['distinct_images'] == 2 and workers[-1] == 1


@pytest.mark.filterwarnings('ignore:This DataLoader will create')
def test_measure_on_cuda_records_the_gpu_and_the_configs_workers(monkeypatch, tmp_path):
    """The CUDA branch of the document, on this CPU machine: the device and both protocols are stand-ins."""
    import mmseg.datasets
    import cgrseg.models.deploy as deploy
    cuda, calls, model = torch.device('cuda'), [], Tiny()
    monkeypatch.setattr(T, 'resolve_device', lambda name: calls.append(('device', name)) or cuda)
    monkeypatch.setattr(T, 'device_name', lambda dev: 'A Fake GPU')
    monkeypatch.setattr(T, '_model', lambda cfg, checkpoint, dev: calls.append(('model', checkpoint, dev)) or model)
    monkeypatch.setattr(deploy, 'deploy', lambda m, channels_last: calls.append(('deploy', m, channels_last)) or m)
    monkeypatch.setattr(mmseg.datasets, 'build_dataset', lambda cfg: Images(3))
    monkeypatch.setattr('os.cpu_count', lambda: 64)
    monkeypatch.setattr(T, 'mmseg_benchmark', lambda m, dev, loader, images, skip: calls.append(
        ('paper', m, dev, loader.num_workers, images, skip)) or {'img_per_s': 50.0})
    monkeypatch.setattr(T, 'fixed_size', lambda *a: calls.append(('fixed', *a)) or {'img_per_s': 60.0})
    prepared_tree(tmp_path)
    (tmp_path / 'w.pth').write_bytes(b'x')
    doc = T.measure(measure_args(tmp_path, device='cuda', checkpoint=str(tmp_path / 'w.pth'), dtype='float16'))
    assert calls == [('device', 'cuda'), ('device', 'cuda'), ('model', str(tmp_path / 'w.pth'), cuda),
                     ('deploy', model, False),
                     ('paper', model, cuda, 8, 7, 5), ('fixed', model, cuda, (16, 24), 2, 'float16', 1, 2, 3)] + \
        [('paper', model, cuda, 8, 7, 5), ('fixed', model, cuda, (16, 24), 2, 'float16', 1, 2, 3)]
    assert doc['protocols']['mmseg_benchmark_deploy']['channels_last'] is False
    assert {k: doc[k] for k in ('img_per_s', 'device', 'device_name', 'cuda', 'checkpoint', 'note')} == {
        'img_per_s': 50.0, 'device': 'cuda', 'device_name': 'A Fake GPU', 'cuda': torch.version.cuda,
        'checkpoint': str(tmp_path / 'w.pth'), 'note': None}
