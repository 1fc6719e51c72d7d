"""The demo profile: CGRSeg-T trains long enough to learn the synthetic scenes, without paying for
what a short CPU run does not need (validation during training, mmcv's pause after every epoch,
a checkpoint every few iterations); B and L only run the code path."""
import copy
from pathlib import Path

import pytest
import yaml

from cgrseg import cli
from cgrseg import workflow as wf

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / 'params.yaml').read_text())


def params(profile='demo'):
    return dict(copy.deepcopy(PARAMS), profile=profile)


def option(args, name):
    args = args.split()
    return args[args.index(name) + 1] if name in args else None


def test_iterations_are_per_variant_in_the_demo():
    config = params()
    iters = PARAMS['profiles']['demo']['iters']
    for variant in ('t', 'b', 'l'):
        assert option(wf.train_args(config, variant), '--iters') == str(iters[variant])
    assert iters['t'] > iters['b'] and iters['t'] > iters['l']
    assert option(wf.train_args(params('paper'), 't'), '--iters') is None


def test_per_variant_iterations_must_name_every_variant():
    config = params()
    config['profiles']['demo']['iters'] = {'t': 300}
    # a variant left out would silently train the config's whole schedule
    with pytest.raises(wf.ConfigError, match=r"profiles.demo.iters.b: missing \(one count for every variant\)"):
        wf.check(config)


def test_demo_skips_what_a_short_cpu_run_does_not_need_and_paper_keeps_it():
    demo = wf.train_args(params(), 't')
    assert '--no-validate' in demo
    assert int(option(demo, '--train-repeat')) > 1
    assert option(demo, '--checkpoint-interval') is not None
    assert demo.endswith(f"--cfg-options optimizer.lr={PARAMS['profiles']['demo']['lr']}")
    paper = wf.train_args(params('paper'), 't')
    assert '--no-validate' not in paper and '--cfg-options' not in paper
    assert option(paper, '--train-repeat') is None and option(paper, '--checkpoint-interval') is None


def test_relaunch_repeats_the_new_train_options():
    from cgrseg.runner.train import relaunch_argv
    argv = ['train', 'c.py', '--work-dir', 'w', '--train-repeat', '50', '--checkpoint-interval', '7']
    args = cli.build_parser('train').parse_args(argv)
    assert vars(cli.build_parser('train').parse_args(relaunch_argv(args))) == vars(args)


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


def demo_train_config(prepared, variant='t'):
    """The config `cgrseg train` builds from the demo rule's arguments."""
    from cgrseg.runner.train import build_config
    argv = ['train', str(REPO / 'configs/cgrseg/cgrseg-t_ade20k_160k.py'), '--work-dir', 'unused',
            '--data-root', str(prepared), *wf.train_args(params(), variant).split()]
    return build_config(cli.build_parser('train').parse_args(argv), gpus=0, distributed=False)


def test_a_demo_training_never_reaches_an_epoch_end(prepared):
    """mmcv's IterBasedRunner sleeps 2 s whenever the data loader runs out (an epoch end); with
    8 images and a batch of 4 that was 1 s of every iteration."""
    from mmseg.datasets import build_dataset
    cfg = demo_train_config(prepared)
    batches_per_epoch = len(build_dataset(cfg.data.train)) // cfg.data.samples_per_gpu
    assert batches_per_epoch >= cfg.runner.max_iters


def test_demo_checkpoints_every_n_iterations_not_the_scaled_interval(prepared):
    cfg = demo_train_config(prepared)
    assert cfg.checkpoint_config.interval == PARAMS['profiles']['demo']['checkpoint_interval']
    assert cfg.runner.max_iters == PARAMS['profiles']['demo']['iters']['t']


def test_two_cores_run_the_data_first_then_the_longest_trainings():
    config = params()
    data = [wf.priority(config, rule) for rule in ('synth', 'download', 'prepare')]
    trains = {v: wf.priority(config, 'train', v) for v in ('t', 'b', 'l')}
    assert min(data) > max(trains.values())
    assert trains['t'] > trains['b'] > wf.priority(config, 'evaluate')
    assert wf.priority(params('paper'), 'train', 't') > 0
