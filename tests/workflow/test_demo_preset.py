"""The demo preset: CGRSeg-T trains long enough to learn the synthetic scenes, without paying for
what a short CPU run does not need (validation during training, mmcv's pause after every epoch,
a checkpoint every few iterations); B and L only run the code path."""
import shlex
from pathlib import Path

import pytest
import yaml

from cgrseg import cli

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / 'params.yaml').read_text())


def test_iterations_are_per_variant_in_the_demo(workflow, demo_dag):
    iters = PARAMS['presets']['demo']['iters']
    for command in workflow.commands(demo_dag, 'exec cgrseg train'):
        variant = command.split('cgrseg-', 1)[1][0]
        assert workflow.option(command, '--iters') == str(iters[variant])
    assert iters['t'] > iters['b'] and iters['t'] > iters['l']


def test_demo_skips_what_a_short_cpu_run_does_not_need(workflow, demo_dag):
    for command in workflow.commands(demo_dag, 'exec cgrseg train'):
        assert workflow.option(command, '--validate') == 'False'
        assert int(workflow.option(command, '--train-repeat')) > 1
        assert workflow.option(command, '--checkpoint-interval') != 'None'


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    pytest.importorskip('mmseg')
    root = tmp_path_factory.mktemp('data')
    synth, raw = root / 'synthetic', root / 'raw'
    images = str(PARAMS['synth_images'])
    assert cli.main(['synth', 'ade20k', '--out', str(synth), '--images', images]) == 0
    assert cli.main(['download', 'ade20k', '--dest', str(raw),
                     '--sources', str(synth / 'sources.yaml')]) == 0
    assert cli.main(['prepare', 'ade20k', '--raw', str(raw), '--out', str(root / 'prepared')]) == 0
    return root / 'prepared'


@pytest.fixture(scope='module')
def demo_train_config(prepared, workflow, demo_dag):
    """The config `cgrseg train` builds from the demo rule's command for CGRSeg-T on ADE20K."""
    from cgrseg.runner.train import build_config
    command = next(c for c in workflow.commands(demo_dag, 'exec cgrseg train') if 'cgrseg-t_ade20k' in c)
    argv = shlex.split(command.split(' > ')[0])[2:]
    argv[argv.index('--data-root') + 1] = str(prepared)
    return build_config(cli.build_parser('train').parse_args(argv), gpus=0, distributed=False)


def test_a_demo_training_never_reaches_an_epoch_end(demo_train_config):
    """mmcv's IterBasedRunner sleeps 2 s whenever the data loader runs out (an epoch end); with
    8 images and a batch of 4 that was 1 s of every iteration."""
    from mmseg.datasets import build_dataset
    cfg = demo_train_config
    batches_per_epoch = len(build_dataset(cfg.data.train)) // cfg.data.samples_per_gpu
    assert batches_per_epoch >= cfg.runner.max_iters


def test_the_demo_rules_settings_reach_the_mmseg_config(demo_train_config):
    cfg, demo = demo_train_config, PARAMS['presets']['demo']
    assert cfg.checkpoint_config.interval == demo['checkpoint_interval']
    assert cfg.runner.max_iters == demo['iters']['t']
    assert cfg.optimizer.lr == demo['cfg_options']['optimizer.lr']
    assert cfg.data.samples_per_gpu == demo['samples_per_gpu']
    assert cfg.model.backbone.init_cfg is None     # --pretrained False
