"""Unit tests of the train/evaluate helpers: config rewrites, checkpoints, hooks, result fields."""
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip('mmseg')

from cgrseg import cli  # noqa: E402
from cgrseg.errors import CGRSegError  # noqa: E402
from cgrseg.mmseg_config import parse_options  # noqa: E402
from cgrseg.runner import checkpoints, config_rewrites as C  # noqa: E402
from cgrseg.runner.evaluate import is_demo, metrics_from  # noqa: E402
from cgrseg.runner.hooks import NonFiniteLossError, NonFiniteLossHook  # noqa: E402
from cgrseg.runner.iter_runner import ExactResumeRunner  # noqa: E402
from cgrseg.runner.provenance import git_commit, sha256_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ADE = ROOT / 'configs/cgrseg/cgrseg-t_ade20k_160k.py'
PASCAL = ROOT / 'configs/cgrseg/cgrseg-t_pascal-context-59_80k.py'


@pytest.fixture
def ade():
    return C.load_config(ADE)


@pytest.fixture
def pascal():
    return C.load_config(PASCAL)


def steps(cfg, split):
    return {s['type']: s for s in cfg.data[split].pipeline}


def test_parse_options_reads_literals_floats_and_text():
    opts = parse_options(['optimizer.lr=6e-5', 'data.samples_per_gpu=2', 'a.b=[1, 2]',
                          'model.decode_head.loss_decode.loss_weight=nan', 'x=SyncBN'])
    assert opts['optimizer.lr'] == 6e-5 and opts['data.samples_per_gpu'] == 2
    assert opts['a.b'] == [1, 2] and opts['x'] == 'SyncBN'
    assert math.isnan(opts['model.decode_head.loss_decode.loss_weight'])
    with pytest.raises(CGRSegError, match='KEY=VALUE'):
        parse_options(['lr'])


def relaunched(monkeypatch, argv, extra=()):
    """The command `cgrseg train` runs when it re-launches itself for ``argv``."""
    from cgrseg.runner import preempt, train
    seen = []
    monkeypatch.setattr(preempt, 'run_child', lambda cmd, **kwargs: (seen.append(cmd), (0, None))[1])
    args = cli.build_parser('train').parse_args(argv)
    args.argv = argv   # as cgrseg.cli.main records it
    train._relaunch(args, ['python'], SimpleNamespace(fd=3, child_env=lambda env: env), extra=extra)
    return seen[0]


def test_relaunch_repeats_the_command_line(monkeypatch):
    """torchrun (--gpus N) and the CPU re-launch run exactly the command the user typed."""
    argv = ['train', 'c.py', '--work-dir', 'w', '--data-root', 'd', '--iters', '4', '--crop', '64',
            '--samples-per-gpu', '2', '--workers', '0', '--gpus', '2', '--seed', '3',
            '--pretrained', 'false', '--no-validate', '--cfg-options', 'a=1', 'b=x']
    command = relaunched(monkeypatch, argv, extra=['--launcher', 'pytorch'])
    assert command == ['python', '-m', 'cgrseg.cli', *argv, '--launcher', 'pytorch']
    again = vars(cli.build_parser('train').parse_args(command[3:]))
    assert again == {**vars(cli.build_parser('train').parse_args(argv)), 'launcher': 'pytorch'}


def test_the_rules_none_keeps_the_configs_value_and_switches_take_true_or_false():
    parse = cli.build_parser('train').parse_args
    args = parse(['train', 'c.py', '--work-dir', 'w', '--iters', 'None', '--crop', 'none',
                  '--pretrained', 'False', '--validate', 'TRUE', '--cfg-options'])
    assert args.iters is None and args.crop is None and args.cfg_options == []
    assert args.pretrained is False and args.validate is True
    assert parse(['train', 'c.py', '--work-dir', 'w', '--no-pretrained']).pretrained is False
    assert parse(['train', 'c.py', '--work-dir', 'w', '--validate']).validate is True


def test_cfg_options_reach_the_config():
    cfg = C.load_config(ADE, parse_options(['optimizer.lr=6e-5']))
    assert cfg.optimizer.lr == 6e-5


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(CGRSegError, match='no such config'):
        C.load_config(tmp_path / 'missing.py')
    bad = tmp_path / 'bad.py'
    bad.write_text("_base_ = ['nowhere.py']\n")
    with pytest.raises(CGRSegError, match=f'{bad}: cannot load config'):
        C.load_config(bad)


def test_data_prefix_moves_every_split_and_can_move_again(ade):
    C.set_data_prefix(ade, '/x/prep')
    for split in ('train', 'val', 'test'):
        assert ade.data[split].data_root == '/x/prep/ade/ADEChallengeData2016'
    C.set_data_prefix(ade, 'other')
    assert ade.data.test.data_root == 'other/ade/ADEChallengeData2016'


def test_data_prefix_refuses_a_root_outside_it(ade):
    ade.data.val.data_root = '/elsewhere/ade'
    with pytest.raises(CGRSegError, match='val data_root /elsewhere/ade is not under data/prepared'):
        C.set_data_prefix(ade, '/x')


def test_check_data_names_the_missing_directory(ade, tmp_path):
    C.set_data_prefix(ade, tmp_path)
    with pytest.raises(CGRSegError, match='images/training: img_dir of the train set does not exist'):
        C.check_data(ade, ('train',))


def test_crop_rewrites_train_and_test_scales_consistently(ade, pascal):
    C.set_crop(ade, 64)
    train = steps(ade, 'train')
    assert train['RandomCrop'].crop_size == (64, 64) and train['Pad'].size == (64, 64)
    assert train['Resize'].img_scale == (256, 64)            # (2048, 512) / 8
    for split in ('val', 'test'):
        assert steps(ade, split)['MultiScaleFlipAug'].img_scale == (256, 64)
    C.set_crop(pascal, 96)                                     # 480 -> 96: factor 1/5
    assert steps(pascal, 'train')['Resize'].img_scale == (104, 104)
    assert steps(pascal, 'test')['MultiScaleFlipAug'].img_scale == (104, 104)
    with pytest.raises(CGRSegError, match='--crop: 16 is less than the minimum of 32'):
        C.set_crop(ade, 16)


def test_iters_compress_the_schedule(ade):
    C.scale_schedule(ade, 80000)
    assert ade.runner.max_iters == 80000 and ade.lr_config.warmup_iters == 750
    assert ade.evaluation.interval == 2000 and ade.checkpoint_config.interval == 2000
    assert ade.log_config.interval == 50


def test_tiny_iters_still_warm_up_evaluate_and_checkpoint(ade):
    C.scale_schedule(ade, 4)
    assert ade.runner.max_iters == 4
    assert ade.lr_config.warmup_iters == ade.evaluation.interval == ade.log_config.interval == 1
    assert ade.checkpoint_config.interval == 4               # once, at the end


@pytest.mark.parametrize('iters,interval', [(20, 20), (100, 100), (1000, 100), (8000, 200)])
def test_short_runs_checkpoint_at_most_every_100_iterations(ade, iters, interval):
    C.scale_schedule(ade, iters)                              # the config's 4000 of 160k, scaled
    assert ade.checkpoint_config.interval == interval
    C.set_checkpoint_interval(ade, 1)                         # an explicit interval still wins
    assert ade.checkpoint_config.interval == 1


def test_iters_equal_to_the_config_change_nothing(ade):
    before = ade.pretty_text
    C.scale_schedule(ade, 160000)
    assert ade.pretty_text == before
    with pytest.raises(CGRSegError):
        C.scale_schedule(ade, 0)


def test_pretrained_path_and_dropping_it(ade):
    assert C.pretrained_path(ade) == 'checkpoints/efficientformerv2_s1.pth'
    C.drop_pretrained(ade)
    assert C.pretrained_path(ade) is None and ade.model.backbone.init_cfg is None


def test_resolved_text_is_loadable_and_has_no_stale_template_values(ade, tmp_path):
    from mmcv import Config
    C.set_crop(ade, 64)
    text = C.resolved_text(ade)
    assigned = {line.split(' = ')[0] for line in text.splitlines() if ' = ' in line}
    assert not assigned & {'train_pipeline', 'test_pipeline', 'crop_size', 'data_root'}
    path = tmp_path / 'resolved.py'
    path.write_text(text)
    again = Config.fromfile(str(path))
    assert steps(again, 'train')['RandomCrop'].crop_size == (64, 64)
    assert again.experiment.model == 'cgrseg-t'


def test_experiment_is_required(tmp_path):
    plain = tmp_path / 'plain.py'
    plain.write_text('x = 1\n')
    with pytest.raises(CGRSegError, match='experiment=dict'):
        C.experiment(C.load_config(plain), plain)


def _touch(path):
    path.write_bytes(b'x')
    return path


def test_latest_checkpoint_picks_the_newest(tmp_path):
    assert checkpoints.latest_checkpoint(tmp_path) is None
    for n in (2, 10, 9):
        _touch(tmp_path / f'iter_{n}.pth')
    _touch(tmp_path / 'best_mIoU_iter_99.pth')            # not a resume candidate
    assert checkpoints.latest_checkpoint(tmp_path).name == 'iter_10.pth'   # numeric order
    os.symlink('iter_9.pth', tmp_path / 'latest.pth')
    assert checkpoints.latest_checkpoint(tmp_path).name == 'iter_9.pth'    # mmcv's pointer wins
    (tmp_path / 'iter_9.pth').unlink()                     # dangling pointer: fall back
    assert checkpoints.latest_checkpoint(tmp_path).name == 'iter_10.pth'


def test_load_meta_rejects_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CGRSegError, match='cannot read checkpoint'):
        checkpoints.load_meta(_touch(tmp_path / 'iter_1.pth'))
    with pytest.raises(CGRSegError, match='no such checkpoint'):
        checkpoints.load_meta(tmp_path / 'iter_2.pth')


def _runner(loss):
    return SimpleNamespace(outputs={'log_vars': {'loss': loss}}, iter=6)


@pytest.mark.parametrize('loss', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_loss_stops_training(loss):
    with pytest.raises(NonFiniteLossError, match=f'loss is {loss} at iteration 7'):
        NonFiniteLossHook().after_train_iter(_runner(loss))


def test_finite_loss_passes():
    NonFiniteLossHook().after_train_iter(_runner(2.5))


def test_nan_hook_runs_before_the_optimizer_step(tmp_path):
    """The hooks `cgrseg train` adds, registered as mmseg's train_segmentor does, put the NaN check
    before mmcv's OptimizerHook, so a diverged step is never applied."""
    import logging
    from mmcv import Config
    from mmcv.runner import HOOKS, IterBasedRunner, OptimizerHook
    from mmcv.utils import build_from_cfg
    from cgrseg.runner.train import _add_runtime_hooks

    cfg = Config(dict(custom_hooks=[], runner=dict(type='IterBasedRunner', max_iters=1)))
    _add_runtime_hooks(cfg, None)
    runner = IterBasedRunner(SimpleNamespace(train_step=None), work_dir=str(tmp_path),
                             logger=logging.getLogger('test'))
    runner.register_training_hooks(lr_config=None, optimizer_config=dict(grad_clip=None))
    for hook_cfg in cfg.custom_hooks:
        hook_cfg = dict(hook_cfg)
        priority = hook_cfg.pop('priority', 'NORMAL')
        runner.register_hook(build_from_cfg(hook_cfg, HOOKS), priority=priority)
    order = [type(h) for h in runner.hooks]
    assert order.index(NonFiniteLossHook) < order.index(OptimizerHook)


def test_resume_continues_after_the_saved_step(monkeypatch):
    """mmcv stores iter = k - 1 in iter_k.pth; resuming at k - 1 would repeat step k."""
    from mmcv.runner import IterBasedRunner
    calls = []

    def mmcv_resume(self, path, resume_optimizer=True, map_location='default'):
        calls.append((path, map_location))
        self._iter = self._inner_iter = 4     # what mmcv restores from iter_5.pth

    monkeypatch.setattr(IterBasedRunner, 'resume', mmcv_resume)
    runner = ExactResumeRunner.__new__(ExactResumeRunner)
    runner.logger = SimpleNamespace(info=lambda msg: None)
    ExactResumeRunner.resume(runner, 'w/iter_5.pth')
    assert calls == [('w/iter_5.pth', 'cpu')] and runner.iter == 5   # on the CPU: works without GPU


def test_metrics_are_percent_with_null_for_absent_classes():
    out = metrics_from({'aAcc': 0.8012, 'mIoU': 0.4361, 'mAcc': 0.552,
                        'IoU.wall': 0.701, 'IoU.bed ': float('nan'), 'Acc.wall': 0.9})
    assert out == {'mIoU': 43.61, 'mAcc': 55.2, 'aAcc': 80.12,
                   'per_class_iou': {'wall': 70.1, 'bed': None}}


def test_demo_flag_is_implied_by_synthetic_data_crop_or_short_schedule():
    full = {'iter': 159999, 'cgrseg': {'crop': None}}
    assert not is_demo(False, {'synthetic': False}, full, 160000)
    assert is_demo(True, None, full, 160000)
    assert is_demo(False, {'synthetic': True}, full, 160000)
    assert is_demo(False, None, {'iter': 3, 'cgrseg': {'crop': None}}, 160000)
    assert is_demo(False, None, {'iter': 159999, 'cgrseg': {'crop': 64}}, 160000)


def test_provenance_helpers(tmp_path):
    path = tmp_path / 'f.txt'
    path.write_text('abc')
    assert sha256_file(path) == 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    assert git_commit(tmp_path) is None


def run_cli(capsys, *argv):
    """(exit code, the stderr lines that are cgrseg errors) of an in-process cgrseg call."""
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    return code, [line for line in capsys.readouterr().err.splitlines() if ': error: ' in line]


def test_train_cli_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # no checkpoints/ folder here
    code, errors = run_cli(capsys, 'train', tmp_path / 'missing.py', '--work-dir', tmp_path / 'w')
    assert code == 2 and errors == [
        f'cgrseg train: error: {tmp_path}/missing.py: no such config file']
    code, errors = run_cli(capsys, 'train', ADE, '--work-dir', tmp_path / 'w', '--gpus', '0',
                  '--data-root', tmp_path, '--iters', '2')
    assert code == 2 and len(errors) == 1
    assert 'efficientformerv2_s1.pth: backbone checkpoint not found; run `cgrseg pretrained`' \
        in errors[0]
    assert not (tmp_path / 'w').exists()


def test_evaluate_cli_errors_leave_no_output(capsys, tmp_path):
    out = tmp_path / 'metrics.json'
    code, errors = run_cli(capsys, 'evaluate', ADE, tmp_path / 'none.pth', '--out', out)
    assert code == 2 and errors == [
        f'cgrseg evaluate: error: {tmp_path}/none.pth: no such checkpoint file']
    bad = tmp_path / 'bad.pth'
    bad.write_text('not a checkpoint')
    manifest = tmp_path / 'm.json'
    manifest.write_text(json.dumps({'synthetic': True}))
    code, errors = run_cli(capsys, 'evaluate', ADE, bad, '--out', out, '--manifest', manifest)
    assert code == 2 and len(errors) == 1
    assert f'{bad}: cannot read checkpoint: not a torch checkpoint in zip format' in errors[0]
    assert not out.exists()


def test_the_resolved_config_is_python_even_with_a_quote_in_a_data_root(ade):
    import ast
    C.set_data_prefix(ade, "data/it's \"here\"")   # mmcv's own text quotes strings without escaping
    tree = ast.parse(C.resolved_text(ade))
    roots = {ast.literal_eval(node) for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and 'here' in node.value}
    assert 'data/it\'s "here"/ade/ADEChallengeData2016' in roots
