"""The rewrites a params preset applies to a config (runner/config_rewrites.py) beyond the data root,
crop and schedule: a repeated train set, the checkpoint interval and the batch per GPU, each at its
bound, with the words of its error (survivors of the `configs` mutation module)."""
import copy

import pytest

pytest.importorskip('mmseg')

from cgrseg.errors import CGRSegError  # noqa: E402
from cgrseg.runner import config_rewrites as C  # noqa: E402
from reference import ade20k_config  # noqa: E402


@pytest.fixture(scope='module')
def loaded():
    return C.load_config(ade20k_config('t'))


@pytest.fixture
def cfg(loaded):
    return copy.deepcopy(loaded)


def test_a_repeated_train_set_wraps_the_original_once(cfg):
    train = copy.deepcopy(cfg.data.train)
    C.rewrite(cfg, train_repeat=3)
    assert cfg.data.train == dict(type='RepeatDataset', times=3, dataset=train)
    assert [ds for split, ds in C.dataset_cfgs(cfg, ('train',))] == [train]   # seen through the wrapper


def test_a_train_set_repeated_once_is_the_config_unchanged(cfg, loaded):
    assert C.rewrite(cfg, train_repeat=1).data.train == loaded.data.train


def test_data_roots_move_inside_a_repeated_and_a_concatenated_set(cfg, tmp_path):
    C.rewrite(cfg, train_repeat=2)
    cfg.data.val = dict(type='ConcatDataset', datasets=[copy.deepcopy(cfg.data.val), copy.deepcopy(cfg.data.val)])
    C.set_data_prefix(cfg, tmp_path)
    roots = [ds['data_root'] for _, ds in C.dataset_cfgs(cfg)]
    assert len(roots) == 4 and set(roots) == {str(tmp_path / 'ade/ADEChallengeData2016')}
    assert cfg.data.train['dataset']['data_root'] == roots[0]


def test_the_checkpoint_interval_is_clamped_to_the_schedule(cfg):
    assert C.rewrite(cfg, iters=100, checkpoint_interval=40).checkpoint_config['interval'] == 40
    assert C.rewrite(cfg, checkpoint_interval=1000).checkpoint_config['interval'] == 100
    assert C.rewrite(cfg, checkpoint_interval=1).checkpoint_config['interval'] == 1


def test_the_batch_per_gpu_is_set(cfg):
    assert C.rewrite(cfg, samples_per_gpu=1).data.samples_per_gpu == 1


@pytest.mark.parametrize('option,flag', [('train_repeat', '--train-repeat'), ('iters', '--iters'),
                                         ('checkpoint_interval', '--checkpoint-interval'),
                                         ('samples_per_gpu', '--samples-per-gpu')])
def test_a_count_below_one_is_refused_naming_its_flag(cfg, option, flag):
    with pytest.raises(CGRSegError, match=f'^{flag}: 0 is less than the minimum of 1$'):
        C.rewrite(cfg, **{option: 0})
