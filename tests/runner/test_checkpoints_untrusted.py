"""Checkpoints and weights are untrusted data (issue 16, items 1 and 9; docs/security.md): reading one
runs no code in it, config text stored in one is compared as data, and weights that are not finite
tensors are refused with one line by every command that reads them.

Every test runs with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, under which a torch.load that does not ask
for weights_only itself (mmcv's, torch.hub's) unpickles everything: so the tests fail if any read
relies on torch's default instead of asking for the safe unpickler.
"""
import os
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip('torch')
pytest.importorskip('mmseg')

from cgrseg.errors import CGRSegError  # noqa: E402
from cgrseg.runner import checkpoints  # noqa: E402
from cgrseg.runner import config_rewrites as C  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ADE = ROOT / 'configs/cgrseg/cgrseg-t_ade20k_160k.py'


@pytest.fixture(autouse=True)
def unsafe_torch_default(monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')


class RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def hostile_checkpoint(path, marker, where='meta'):
    """An mmcv-shaped checkpoint whose pickle runs code in ``meta`` or as a tensor of ``state_dict``."""
    ckpt = {'state_dict': {'w': torch.zeros(2)}, 'meta': {'iter': 0, 'epoch': 1}}
    if where == 'meta':
        ckpt['meta']['payload'] = RunsCode(marker)
    else:
        ckpt['state_dict']['w'] = RunsCode(marker)
    torch.save(ckpt, path)
    return path


def assert_one_line(result, cmd, *fragments):
    assert result.code == 2, result.err
    assert len(result.error_lines) == 1, result.err
    line = result.error_lines[0]
    assert line.startswith(f'cgrseg {cmd}: error: ') and 'Traceback' not in result.err
    for fragment in fragments:
        assert fragment in line, line
    return line


def fake_ade_root(root):
    """Empty directories where the ADE20K config looks for its images (enough for the checks)."""
    for kind in ('images', 'annotations'):
        for split in ('training', 'validation'):
            (root / 'ade/ADEChallengeData2016' / kind / split).mkdir(parents=True, exist_ok=True)
    return root


def train(run_cli, work, data, *extra):
    return run_cli('train', ADE, '--work-dir', work, '--gpus', 0, '--no-pretrained', '--iters', 2,
                   '--crop', 64, '--data-root', data, *extra)


# -- no code from data -------------------------------------------------------------------------

@pytest.mark.parametrize('where', ['meta', 'state_dict'])
def test_evaluate_refuses_a_checkpoint_that_would_run_code(run_cli, tmp_path, where):
    marker = tmp_path / 'MARKER'
    ckpt = hostile_checkpoint(tmp_path / 'evil.pth', marker, where)
    result = run_cli('evaluate', ADE, ckpt, '--out', tmp_path / 'm.json')
    assert_one_line(result, 'evaluate', f'{ckpt}: refusing the checkpoint', 'posix.system',
                    'only tensors and plain data are read')
    assert not marker.exists() and not (tmp_path / 'm.json').exists()


def test_resume_refuses_a_checkpoint_that_would_run_code(run_cli, tmp_path):
    marker, work = tmp_path / 'MARKER', tmp_path / 'work'
    work.mkdir()
    (work / 'train.lock').touch()   # a work dir of ours, as an earlier run leaves it
    hostile_checkpoint(work / 'iter_1.pth', marker)
    os.symlink('iter_1.pth', work / 'latest.pth')
    result = train(run_cli, work, fake_ade_root(tmp_path / 'data'))
    assert_one_line(result, 'train', f'{work / "iter_1.pth"}: refusing the checkpoint', 'posix.system')
    assert not marker.exists() and not (work / 'config.py').exists()


def test_pretrained_from_refuses_weights_that_would_run_code(run_cli, tmp_path):
    marker = tmp_path / 'MARKER'
    weights = hostile_checkpoint(tmp_path / 'eformer_s1_450.pth', marker, 'state_dict')
    result = run_cli('pretrained', 's1', '--from', weights, '--out', tmp_path / 'out.pth')
    assert_one_line(result, 'pretrained', f'{weights}: refusing the checkpoint', 'posix.system')
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


def test_throughput_refuses_a_checkpoint_that_would_run_code(run_cli, tmp_path, prepared_datasets):
    marker = tmp_path / 'MARKER'
    ckpt = hostile_checkpoint(tmp_path / 'evil.pth', marker)
    result = run_cli('throughput', ADE, '--checkpoint', ckpt, '--data-root', prepared_datasets,
                     '--crop', 64, '--images', 6, '--device', 'cpu', '--out', tmp_path / 't.json')
    assert_one_line(result, 'throughput', f'{ckpt}: refusing the checkpoint', 'posix.system')
    assert not marker.exists() and not (tmp_path / 't.json').exists()


def test_mmcv_loads_weights_only_for_every_scheme(tmp_path):
    """What mmcv loads for us (init_cfg Pretrained, load_from, resume_from) goes through ours."""
    from mmcv.runner import CheckpointLoader, load_checkpoint
    import cgrseg.models  # noqa: F401  (routes mmcv's loaders, as every config's custom_imports does)
    marker = tmp_path / 'MARKER'
    evil = hostile_checkpoint(tmp_path / 'evil.pth', marker)
    with pytest.raises(CGRSegError, match='refusing the checkpoint'):
        load_checkpoint(torch.nn.Linear(2, 2), str(evil))
    assert not marker.exists()
    for url in ('https://user:tok@example.org/w.pth', 'open-mmlab://resnet50', 's3://b/w.pth',
                'torchvision://resnet50'):
        with pytest.raises(CGRSegError, match='remote checkpoints are not read'):
            CheckpointLoader.load_checkpoint(url)


def test_a_pretrained_init_cfg_reads_weights_only(tmp_path):
    """init_cfg=dict(type='Pretrained') of a CGRSeg backbone: the read that `cgrseg train` makes."""
    from mmcv.runner import CheckpointLoader
    from mmseg.models import build_segmentor
    marker = tmp_path / 'MARKER'
    evil = hostile_checkpoint(tmp_path / 'backbone.pth', marker)
    cfg = C.load_config(ADE, {'model.backbone.init_cfg.checkpoint': str(evil)})
    assert CheckpointLoader._get_checkpoint_loader(str(evil)) is checkpoints.load_from_local_weights_only
    model = build_segmentor(cfg.model)
    with pytest.raises(CGRSegError, match='refusing the checkpoint'):
        model.init_weights()
    assert not marker.exists()


CODE_CONFIG = "model = __import__('os').system('touch {marker}')\n"


@pytest.mark.parametrize('where', ['checkpoint', 'config.py'])
def test_config_text_of_an_earlier_run_is_read_as_data_never_run(run_cli, tmp_path, where):
    """meta['config'] of the resumed checkpoint and the work dir's config.py: executed by mmcv's
    Config.fromstring, they are parsed here (ast) and compared as data."""
    marker, work = tmp_path / 'MARKER', tmp_path / 'work'
    work.mkdir()
    code = CODE_CONFIG.format(marker=marker)
    if where == 'checkpoint':
        torch.save({'state_dict': {'w': torch.zeros(2)},
                    'meta': {'iter': 0, 'epoch': 1, 'config': code}}, work / 'iter_1.pth')
        os.symlink('iter_1.pth', work / 'latest.pth')
        (work / 'train.lock').touch()
    else:
        (work / 'config.py').write_text(code)
    result = train(run_cli, work, fake_ade_root(tmp_path / 'data'))
    origin = 'its newest checkpoint' if where == 'checkpoint' else work / 'config.py'
    assert_one_line(result, 'train', f'{origin}: cannot read the config of the run in this work '
                    'directory as data', 'is not plain data')
    assert not marker.exists()


def test_the_resolved_config_reads_back_as_the_same_data():
    """literal_config equals mmcv's own (executing) reading of every resolved config we write."""
    from mmcv import Config
    from cgrseg.runner.workdir import _plain, literal_config
    for path in sorted((ROOT / 'configs/cgrseg').glob('*.py')):
        cfg = C.load_config(path)
        C.set_crop(cfg, 64)
        text = C.resolved_text(cfg)
        assert literal_config(text, path) == _plain(dict(Config.fromstring(text, '.py'))), path


def test_floats_and_ranges_mmcv_writes_as_names_read_back():
    """mmcv dumps nan/inf as bare names (a diverging run's config, --cfg-options ...=nan), and runs
    before gpu_ids became a list wrote range(0, n): read as data, within bounds."""
    import math
    from cgrseg.runner.workdir import literal_config
    cfg = C.load_config(ADE)
    cfg.merge_from_dict({'model.decode_head.loss_decode.loss_weight': float('nan'), 'low': -math.inf,
                         'gpu_ids': [0, 1]})
    data = literal_config(C.resolved_text(cfg), ADE)
    assert math.isnan(data['model']['decode_head']['loss_decode']['loss_weight'])
    assert data['low'] == -math.inf and data['gpu_ids'] == [0, 1]
    assert literal_config('gpu_ids = range(0, 2)\n', ADE) == {'gpu_ids': [0, 1]}
    for bad in ('gpu_ids = range(0, 100000)\n', 'gpu_ids = range(0, n)\n', 'x = -os\n'):
        with pytest.raises(CGRSegError, match='as data'):
            literal_config(bad, ADE)


# -- weights that are not finite tensors ---------------------------------------------------------

def test_evaluate_refuses_non_finite_weights(run_cli, tmp_path):
    from cgrseg.models.build import build_model
    state = build_model(C.load_config(ADE)).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    for bad in (float('nan'), float('inf')):
        state[key] = state[key].clone().fill_(bad)
        ckpt = tmp_path / 'nan.pth'
        torch.save({'state_dict': state, 'meta': {}}, ckpt)
        result = run_cli('evaluate', ADE, ckpt, '--out', tmp_path / 'm.json')
        assert_one_line(result, 'evaluate', f'{ckpt}: 1 weight tensor(s) hold NaN or Inf (first: {key})')
    assert not (tmp_path / 'm.json').exists()


@pytest.mark.parametrize('state,problem', [
    ([1, 2], 'state_dict is not a mapping of names to tensors (list)'),
    ({'w': 'text'}, "state_dict entry 'w' is not a named tensor (str)"),
    ({1: torch.zeros(1)}, "state_dict entry '1' is not a named tensor (Tensor)"),
])
def test_a_state_dict_that_is_not_named_tensors_is_one_line(run_cli, tmp_path, state, problem):
    ckpt = tmp_path / 'odd.pth'
    torch.save({'state_dict': state, 'meta': {}}, ckpt)
    result = run_cli('evaluate', ADE, ckpt, '--out', tmp_path / 'm.json')
    assert_one_line(result, 'evaluate', f'{ckpt}: {problem}')


def test_evaluate_refuses_a_meta_it_cannot_use(run_cli, tmp_path):
    from cgrseg.models.build import build_model
    state = build_model(C.load_config(ADE)).state_dict()
    for meta, problem in (({'iter': 'many'}, 'meta["iter"] is not an iteration count'),
                          ({'cgrseg': {'crop': '64'}}, 'meta["cgrseg"] is not the training record')):
        ckpt = tmp_path / 'meta.pth'
        torch.save({'state_dict': state, 'meta': meta}, ckpt)
        assert_one_line(run_cli('evaluate', ADE, ckpt, '--out', tmp_path / 'm.json'), 'evaluate',
                        f'{ckpt}: {problem}')


def test_resume_refuses_non_finite_weights_and_a_malformed_iteration(run_cli, tmp_path):
    data = fake_ade_root(tmp_path / 'data')
    for ckpt, problem in (({'state_dict': {'w': torch.tensor([float('nan')])}, 'meta': {'iter': 0, 'epoch': 1}},
                           'hold NaN or Inf'),
                          ({'state_dict': {'w': torch.zeros(1)}, 'meta': {'iter': -3, 'epoch': 1}},
                           "meta['iter'] is not an iteration count")):
        work = tmp_path / f'work_{problem[:4]}'
        work.mkdir()
        (work / 'train.lock').touch()
        torch.save(ckpt, work / 'iter_1.pth')
        assert_one_line(train(run_cli, work, data), 'train', f'{work / "iter_1.pth"}: ', problem)


def test_pretrained_from_refuses_bad_weights(run_cli, tmp_path):
    from cgrseg.models.efficientformer_v2 import EfficientFormerV2
    good = {k: v for k, v in EfficientFormerV2(arch='s1').state_dict().items()
            if 'attention_biases_seg' not in k and 'idxs' not in k}
    layer_scale = next(k for k in good if 'layer_scale' in k)
    cases = {
        'list.pth': ([torch.zeros(1)], 'the weights is not a mapping of names to tensors (list)'),
        'keys.pth': ({'foo.bar': torch.zeros(1)}, "unexpected key 'foo.bar'"),
        'shape.pth': ({**good, 'patch_embed.0.weight': torch.zeros(3, 3)}, 'does not fit EfficientFormerV2-S1'),
        'scale.pth': ({**good, layer_scale: torch.zeros(7)}, 'does not fit EfficientFormerV2-S1'),
        'nan.pth': ({**good, 'patch_embed.0.weight': torch.full_like(good['patch_embed.0.weight'], float('nan'))},
                    'hold NaN or Inf'),
        'text.pth': ('just text', 'the weights is not a mapping'),
    }
    for name, (weights, problem) in cases.items():
        torch.save(weights, tmp_path / name)
        result = run_cli('pretrained', 's1', '--from', tmp_path / name, '--out', tmp_path / 'out.pth')
        assert_one_line(result, 'pretrained', f'{tmp_path / name}: ', problem)
    assert not (tmp_path / 'out.pth').exists()


# -- bounded reading ----------------------------------------------------------------------------

def rewrite_records(src, dst, change):
    """Copy the zip of a torch checkpoint, ``change(info, data) -> (data, compress_type)`` per record."""
    import zipfile
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for info in zin.infolist():
            data, kind = change(info, zin.read(info.filename))
            zout.writestr(info.filename, data, compress_type=kind)
    return dst


def test_a_compressed_record_is_refused_before_it_expands(tmp_path):
    """A zip bomb: torch's reader would inflate a deflated record into memory (1 GiB from 1 MB)."""
    import zipfile
    plain = tmp_path / 'plain.pth'
    torch.save({'state_dict': {'w': torch.zeros(4)}}, plain)
    bomb = rewrite_records(plain, tmp_path / 'bomb.pth', lambda info, data: (
        (bytes(64 << 20), zipfile.ZIP_DEFLATED) if info.filename.endswith('/data/0')
        else (data, zipfile.ZIP_STORED)))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CGRSegError, match='compressed records'):
        checkpoints.read(bomb)


def test_a_pickle_larger_than_metadata_needs_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, 'MAX_PICKLE_BYTES', 1000)
    path = tmp_path / 'big.pth'
    torch.save({'state_dict': {}, 'meta': {'text': 'x' * 2000}}, path)
    with pytest.raises(CGRSegError, match='data.pkl has .* bytes, more than'):
        checkpoints.read(path)


def test_a_legacy_or_foreign_file_is_one_line(tmp_path):
    legacy = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}}, legacy, _use_new_zipfile_serialization=False)
    raw = tmp_path / 'raw.pkl'
    raw.write_bytes(pickle.dumps({'state_dict': {}}))
    for path in (legacy, raw):
        with pytest.raises(CGRSegError, match='not a torch checkpoint in zip format'):
            checkpoints.read(path)


def test_our_own_checkpoints_read_back_with_their_resume_state(tmp_path):
    """Everything an exact resume stores (random states of Python, NumPy, torch; the data stream's
    position) is plain data that the weights-only reader accepts unchanged."""
    import random
    import numpy as np
    from cgrseg.runner import resume
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    saved = resume.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(2))
    state = {'version': resume.STATE_VERSION, 'rng': [saved],
             'data': {'seed': 0, 'dataset_size': 8, 'shuffle': True, 'world_size': 1, 'batch_size': 4},
             'epoch': 1, 'start': 4}
    path = tmp_path / 'iter_2.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}, 'meta': {'iter': 1, 'epoch': 1, 'exact_resume': state,
                'CLASSES': ('a', 'b'), 'PALETTE': [[1, 2, 3]], 'config': 'x = 1'},
                'optimizer': torch.optim.AdamW([torch.nn.Parameter(torch.ones(1))]).state_dict()}, path)
    back = checkpoints.load_meta(path)['exact_resume']
    assert back['data'] == state['data'] and (back['epoch'], back['start']) == (1, 4)
    resume.set_rng_state(back['rng'][0])
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])
