"""`cgrseg doctor`: the demo passes on this machine, and every check names its problem in one line
(exit 2, nothing written)."""
import copy
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from cgrseg import doctor

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / 'params.yaml').read_text())
PREFIX = 'cgrseg doctor: error: '


def config(**changes):
    out = copy.deepcopy(PARAMS)
    out.update(changes)
    return out


def paper(**profile):
    out = config(preset='paper', sources='real')
    out['presets']['paper'].update(profile)
    return out


def problems(cfg, **plan):
    """The problem lines of every check on ``cfg`` (in-process, no command line)."""
    found, _ = doctor.run_checks(doctor.Plan(config=cfg, **plan))
    return found


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob('*'))


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def test_the_demo_passes_here_and_writes_nothing(run_cli, in_repo):
    cfg = config(preset='doctor-check')   # the demo's schedule under a results root no one uses
    cfg['presets']['doctor-check'] = cfg['presets']['demo']
    result = run_cli('doctor', '--params-json', json.dumps(cfg))
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == "cgrseg doctor: ready for preset 'doctor-check' (local)"
    assert [c for c in ('packages', 'registry', 'devices', 'disk', 'weights', 'outputs')
            if f'ok  {c}:' not in result.out] == []
    assert not (REPO / 'results' / 'doctor-check').exists()


def test_problems_are_one_prefixed_line_each_and_exit_2(run_cli, in_repo, tmp_path):
    cfg = paper(gpus=64, samples_per_gpu=8)
    cfg['data_root'] = str(tmp_path / 'data')
    before = files_under(tmp_path)
    result = run_cli('doctor', '--params-json', json.dumps(cfg))
    assert result.code == 2
    assert result.out == ''
    lines = result.err.strip().splitlines()
    assert lines and all(line.startswith(PREFIX) for line in lines), lines
    assert any('presets.paper.gpus: 64 GPU(s) asked for' in line for line in lines)
    assert any('gpus x samples_per_gpu = 512 images per step' in line for line in lines)
    assert files_under(tmp_path) == before


def test_bad_params_are_reported_by_key_before_any_check():
    found = problems(config(seeds='abc', variants=['x']))
    assert [line.split(':')[1].strip() for line in found] == ['seeds', 'variants.0']


def test_config_overrides_read_like_snakemakes(tmp_path):
    class Args:
        params, params_json, executor, partitions = str(REPO / 'params.yaml'), None, 'local', []
        lock, setup, sources = doctor.LOCK, doctor.SETUP, doctor.SOURCES
        config = ['preset=paper', 'presets={paper: {gpus: 4, samples_per_gpu: 4}}']
    plan = doctor.load_plan(Args)
    assert plan.config['preset'] == 'paper'
    assert plan.config['presets']['paper']['gpus'] == 4
    assert plan.config['presets']['paper']['iters'] is None   # merged, not replaced
    assert plan.config['presets']['demo'] == PARAMS['presets']['demo']


# ---- packages ---------------------------------------------------------------------------------

def test_version_clashes_and_missing_packages_are_named(tmp_path, in_repo):
    lock = tmp_path / 'requirements.lock'
    lock.write_text('# pins\ntorch==0.0.1\nno-such-package==1.0\npyyaml==' +
                    doctor.installed_versions()['pyyaml'] + '\n')
    found, _ = doctor.packages(doctor.Plan(config=config(), lock=str(lock)))
    assert found == [f'{lock}: torch is {doctor.installed_versions()["torch"]}, {lock} pins 0.0.1 '
                     '(bash scripts/setup.sh)',
                     f'{lock}: no-such-package 1.0 is not installed (bash scripts/setup.sh)']


def test_the_repositorys_lock_and_setup_pins_hold_in_this_venv(in_repo):
    assert doctor.packages(doctor.Plan(config=config()))[0] == []
    assert doctor.setup_pins(doctor.SETUP) == {'mmcv-full': '1.7.2', 'mmsegmentation': '0.30.0'}


def test_a_local_version_label_is_the_same_version_as_pip_sees_it():
    assert doctor.version_problems({'torch': '2.12.1'}, {'torch': '2.12.1+cu130'}, 'lock') == []
    assert doctor.version_problems({'torch': '2.12.1'}, {'torch': '2.12.0'}, 'lock') != []


@pytest.mark.parametrize('text, problem', [
    ('torch>=2\n', 'line 1: expected "name==version"'),
    ('ok==1\n\n  torch == 2 ; x\n', 'line 3: expected "name==version"'),
    (b'\xff\xfe', 'lock file is not UTF-8 text'),
    ('x' * (doctor.MAX_TEXT + 1), 'lock file is larger than 1 MB'),
])
def test_an_unreadable_lock_file_is_one_line(tmp_path, text, problem):
    lock = tmp_path / 'requirements.lock'
    (lock.write_bytes if isinstance(text, bytes) else lock.write_text)(text)
    found, _ = doctor.packages(doctor.Plan(config=config(), lock=str(lock), setup=str(REPO / doctor.SETUP)))
    assert len(found) == 1 and found[0].startswith(f'{lock}: {problem}'), found


def test_a_setup_script_without_the_pins_is_one_line(tmp_path):
    setup = tmp_path / 'setup.sh'
    setup.write_text("pip install 'mmcv-full==1.7.2'\n")
    found, _ = doctor.packages(doctor.Plan(config=config(), lock=str(REPO / doctor.LOCK), setup=str(setup)))
    assert found == [f'{setup}: no mmsegmentation==VERSION pin found']


# ---- registry ---------------------------------------------------------------------------------

def test_an_unregistered_type_in_a_trained_config_is_named(tmp_path, in_repo):
    bad = tmp_path / 'cgrseg-{variant}_ade20k_160k.py'
    for variant in 'tbl':
        Path(str(bad).format(variant=variant)).write_text(
            f"_base_ = ['{REPO}/configs/cgrseg/cgrseg-{variant}_ade20k_160k.py']\n"
            "model = dict(backbone=dict(type='NoSuchBackbone'))\n")
    cfg = config(datasets=['ade20k'], configs={**PARAMS['configs'], 'ade20k': str(bad)})
    found, _ = doctor.registry(doctor.Plan(config=cfg))
    assert len(found) == 3
    assert found[0] == (f"{str(bad).format(variant='b')}: `model.backbone.type` 'NoSuchBackbone' is not "
                        'a registered mmseg type')


def test_a_missing_registration_is_named(monkeypatch, in_repo):
    from mmseg.models.builder import MODELS
    real = MODELS.get
    monkeypatch.setattr(MODELS, 'get', lambda name: None if name == 'CGRSegHead' else real(name))
    found, _ = doctor.registry(doctor.Plan(config=config(datasets=['ade20k'], variants=['t'])))
    assert 'mmseg registry: CGRSegHead is not registered (cgrseg.models)' in found


# ---- devices ----------------------------------------------------------------------------------

def test_more_gpus_than_visible_devices_and_no_nccl(monkeypatch):
    import torch
    import torch.distributed as dist
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setattr(dist, 'is_nccl_available', lambda: False)
    found, _ = doctor.devices(doctor.Plan(config=paper(gpus=2, samples_per_gpu=8)))
    assert found[0].startswith('params.yaml: presets.paper.gpus: 2 GPU(s) asked for, 1 CUDA device(s) visible')
    assert found[1] == 'params.yaml: presets.paper.gpus: 2 GPUs train with DDP over NCCL, which this torch lacks'


def test_enough_devices_pass(monkeypatch):
    import torch
    import torch.distributed as dist
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 4)
    monkeypatch.setattr(dist, 'is_nccl_available', lambda: True)
    assert doctor.devices(doctor.Plan(config=paper(gpus=4, samples_per_gpu=4)))[0] == []


def test_a_paper_run_keeps_16_images_per_step_and_a_demo_may_not():
    assert doctor.devices(doctor.Plan(config=paper(gpus=0, samples_per_gpu=8)))[0] == [
        'params.yaml: presets.paper: gpus x samples_per_gpu = 8 images per step; the paper trained '
        '16 (4 GPUs x 4), keep the product 16']
    assert doctor.devices(doctor.Plan(config=config()))[0] == []


# ---- SLURM ------------------------------------------------------------------------------------

@pytest.fixture
def fake_sinfo(tmp_path, monkeypatch):
    """`sinfo` on PATH printing ``fake_sinfo.output`` (or failing with ``fake_sinfo.fail``)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    script = bin_dir / 'sinfo'

    def set_output(text, status=0):
        stream = '' if status == 0 else ' >&2'   # sinfo reports its errors on stderr
        script.write_text(f"#!/bin/sh\ncat{stream} <<'EOF'\n{text}\nEOF\nexit {status}\n")
        script.chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    return set_output


def test_missing_or_down_partitions_and_too_few_gpus(fake_sinfo):
    fake_sinfo('cpu|up|(null)\ngpu|up|gpu:a100:1(S:0-1)\nold|down|(null)')
    found = doctor.slurm_problems(doctor.Plan(config=config(), partitions=('big', 'old')), 2)
    assert found == ["sinfo: partition 'big' does not exist (there are: cpu, gpu, old)",
                     "sinfo: partition 'old' is not up",
                     "params.yaml: slurm_gpu_partition: partition 'gpu' has at most 1 GPU(s) per node, "
                     'a training asks for 2']
    assert doctor.slurm_problems(doctor.Plan(config=config(), partitions=('cpu',)), 1) == []


def test_slurm_is_checked_instead_of_local_devices(fake_sinfo):
    fake_sinfo('cpu|up|(null)')
    found, _ = doctor.devices(doctor.Plan(config=paper(gpus=4, samples_per_gpu=4), executor='slurm'))
    assert found == ["sinfo: partition 'gpu' does not exist (there are: cpu)"]


def test_a_failing_or_absent_sinfo_is_one_line(fake_sinfo, monkeypatch):
    fake_sinfo('slurm_load_partitions: Unable to contact slurm controller', status=1)
    assert doctor.slurm_problems(doctor.Plan(config=config()), 1) == [
        'sinfo: failed: slurm_load_partitions: Unable to contact slurm controller']
    monkeypatch.setenv('PATH', '/nonexistent')
    assert doctor.slurm_problems(doctor.Plan(config=config()), 1) == [
        'sinfo: not found; is this a SLURM login node?']


def test_gres_fields():
    assert doctor.gres_gpus('gpu:4') == 4
    assert doctor.gres_gpus('gpu:a100:8(S:0-1),shard:2') == 8
    assert doctor.gres_gpus('(null)') == 0


def test_the_rule_passes_the_workflow_profiles_partitions(tmp_path):
    profile = tmp_path / 'config.yaml'
    profile.write_text("default-resources:\n  slurm_partition: 'cpu'\nset-resources:\n"
                       "  train:\n    slurm_partition: a100\n  prepare: ['slurm_partition=big']\n")
    assert doctor.rule_partitions('slurm', str(profile)) == ['a100', 'big', 'cpu']
    assert doctor.rule_partitions('local', str(profile)) == []


# ---- disk -------------------------------------------------------------------------------------

def test_too_little_disk_for_the_archives_and_prepared_data(small_tmpfs, in_repo):
    cfg = config(preset='paper', sources='real', data_root=str(small_tmpfs / 'data'))
    found, _ = doctor.disk(doctor.Plan(config=cfg))
    assert len(found) == 1
    assert found[0].startswith(f'{small_tmpfs}: 10.9 GB needed (ade20k archives 0.9; ade20k prepared 1.4; '
                               'coco_stuff10k archives 2.0; coco_stuff10k prepared 2.0; pascal_context '
                               'archives 3.3; pascal_context prepared 1.4), 0.0 GB free'), found


def test_downloaded_bytes_and_prepared_datasets_are_not_needed_again(tmp_path, in_repo):
    cfg = config(preset='paper', sources='real', data_root=str(tmp_path / 'data'))
    needs, _ = doctor.dataset_needs(doctor.Plan(config=cfg))
    full = sum(size for _, size, _ in needs)
    partial = tmp_path / 'data' / 'raw' / 'ade20k' / 'ADEChallengeData2016.zip'
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b'\0' * 4096)   # a resumable partial download
    (tmp_path / 'data' / 'prepared').mkdir()
    (tmp_path / 'data' / 'prepared' / 'coco_stuff10k.manifest.json').write_text('{}')
    needs, notes = doctor.dataset_needs(doctor.Plan(config=cfg))
    assert 'coco_stuff10k prepared' in notes
    assert sum(size for _, size, _ in needs) == full - 4096 - (2048 + 2048) * doctor.MB


def test_sizes_come_from_the_sources_file_and_are_checked(tmp_path, in_repo):
    doc = yaml.safe_load((REPO / doctor.SOURCES).read_text())
    doc['datasets']['ade20k']['prepared_mb'] = 'lots'
    bad = tmp_path / 'sources.yaml'
    bad.write_text(yaml.safe_dump(doc))
    cfg = config(preset='paper', sources='real', data_root=str(tmp_path / 'data'))
    found, _ = doctor.disk(doctor.Plan(config=cfg, sources=str(bad)))
    assert found == [f"{bad}: datasets.ade20k: prepared_mb must be a size in MB, got 'lots'"]


# ---- weights ----------------------------------------------------------------------------------

@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A working directory whose checkpoints/ holds the three backbones and their records."""
    import hashlib
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'checkpoints').mkdir()
    for arch in ('s1', 's2', 'l'):
        path = tmp_path / 'checkpoints' / f'efficientformerv2_{arch}.pth'
        path.write_bytes(arch.encode() * 1000)
        record = {'checkpoint': str(path), 'checkpoint_sha256': hashlib.sha256(path.read_bytes()).hexdigest()}
        path.with_suffix('.json').write_text(json.dumps(record))
    return tmp_path / 'checkpoints'


def test_weights_matching_their_records_pass(weights_dir):
    found, note = doctor.weights(doctor.Plan(config=paper()))
    assert found == [] and note.startswith('3 backbone checkpoint')


def test_missing_changed_and_unreadable_weights_are_named(weights_dir):
    (weights_dir / 'efficientformerv2_s1.pth').unlink()
    with open(weights_dir / 'efficientformerv2_s2.pth', 'ab') as f:
        f.write(b'tampered')
    (weights_dir / 'efficientformerv2_l.json').write_text('{"checkpoint_sha256": "../../etc"}')
    found, _ = doctor.weights(doctor.Plan(config=paper()))
    assert found[0] == ("checkpoints/efficientformerv2_s1.pth: missing; run `cgrseg pretrained s1` "
                        "(the DAG's pretrained rule)")
    assert found[1].startswith('checkpoints/efficientformerv2_s2.pth: sha256 ')
    assert 'differs from its record checkpoints/efficientformerv2_s2.json' in found[1]
    assert found[2] == 'checkpoints/efficientformerv2_l.json: "checkpoint_sha256" must be 64 lowercase hex digits'


@pytest.mark.parametrize('record, problem', [
    (b'\xff', 'not a weights record (not JSON)'),
    (b'[1, 2]', '"checkpoint_sha256" must be 64 lowercase hex digits'),
    (b' ' * (doctor.MAX_RECORD + 1), 'not a weights record (larger than 64 kB)'),
])
def test_untrusted_records_are_read_with_limits(tmp_path, record, problem):
    path = tmp_path / 'r.json'
    path.write_bytes(record)
    with pytest.raises(doctor.CGRSegError, match=f'^{path}: ' + problem.replace('(', r'\(').replace(')', r'\)')):
        doctor.weights_record(path)


# ---- outputs ----------------------------------------------------------------------------------

def test_an_output_root_under_a_file_is_named(tmp_path):
    (tmp_path / 'blocked').write_text('a file where a folder should be')
    found, _ = doctor.outputs(doctor.Plan(config=config(preset='paper', sources='real',
                                                          data_root=str(tmp_path / 'blocked' / 'data'))))
    assert found[0] == f'{tmp_path}/blocked/data: {tmp_path}/blocked is a file, not a folder'
    assert len(found) == 3   # data, data/raw, data/prepared


def test_a_read_only_output_root_is_named(small_tmpfs):
    done = subprocess.run(['mount', '-o', 'remount,ro', str(small_tmpfs)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f'cannot remount the tmpfs read-only: {done.stderr.strip()}')
    found, _ = doctor.outputs(doctor.Plan(config=config(preset='paper', sources='real',
                                                          data_root=str(small_tmpfs / 'data'))))
    assert found[0] == (f'{small_tmpfs}/data: not writable ({small_tmpfs} refuses writes: permissions '
                        'or a read-only file system)')
