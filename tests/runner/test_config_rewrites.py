"""The rewrites a params preset applies to a config (runner/config_rewrites.py) beyond the data root,
crop and schedule: a repeated train set, the checkpoint interval and the batch per GPU, each at its
bound, with the words of its error (survivors of the `configs` mutation module)."""
import copy
import re

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


# --- the crop, the schedule, the data checks and the experiment record, value by value ---------------

CONFIGS = sorted(ade20k_config('t').parents[2].glob('configs/cgrseg/*.py'))
DATASETS = {'ade20k': 'ade20k', 'coco-stuff10k': 'coco_stuff10k', 'pascal-context-59': 'pascal_context'}
PAPER_MODES = {'ade20k': 'ss', 'coco_stuff10k': 'ms', 'pascal_context': 'ms_flip'}


@pytest.fixture(scope='module')
def nine():
    from mmcv import Config
    return {path.stem: Config.fromfile(str(path)) for path in CONFIGS}


def _config(**entries):
    from mmcv import Config
    return Config(copy.deepcopy(entries))


def test_the_nine_configs_are_found():
    assert len(CONFIGS) == 9


def test_a_crop_rewrites_every_size_of_each_real_config_and_nothing_else(nine):
    for name, original in nine.items():
        cfg = copy.deepcopy(original)
        C.rewrite(cfg, crop=96)
        pascal = 'pascal' in name
        scale = (104, 104) if pascal else (384, 96)       # 520 x 96/480; (2048, 512) x 96/512
        expected = copy.deepcopy(original.to_dict())
        for split in ('train', 'val', 'test'):
            for step in expected['data'][split]['pipeline']:
                if step['type'] == 'Resize':
                    assert step['ratio_range'] == (0.5, 2.0)   # a ratio of the scale: kept
                    step['img_scale'] = scale
                elif step['type'] in ('RandomCrop', 'Pad'):
                    step['crop_size' if step['type'] == 'RandomCrop' else 'size'] = (96, 96)
                elif step['type'] == 'MultiScaleFlipAug':
                    step['img_scale'] = scale                  # its inner Pad(size_divisor=32) kept
        assert cfg.to_dict() == expected, name
        assert cfg.model.test_cfg == dict(mode='whole')


def _slide_config():
    """A small config with every place a crop lives: a slide test, a multi-scale Resize, two Pads,
    a repeated train set, a test set scaled by ratios (no img_scale)."""
    inner = [dict(type='Resize', keep_ratio=True), dict(type='Pad', size_divisor=32)]
    return _config(
        model=dict(type='EncoderDecoder', pretrained=None, backbone=dict(type='B'),
                   test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341))),
        data=dict(
            train=dict(type='RepeatDataset', times=2, dataset=dict(type='D', pipeline=[
                dict(type='Resize', img_scale=[(2048, 512), (1024, 256)], ratio_range=None),
                dict(type='Resize', img_scale=None, ratio_range=(0.5, 2.0)),
                dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
                dict(type='Pad', size=(512, 512), pad_val=0, seg_pad_val=255),
                dict(type='Pad', size_divisor=32)])),
            val=dict(type='D', pipeline=[
                dict(type='MultiScaleFlipAug', img_scale=(2048, 512), flip=False, transforms=inner)]),
            test=dict(type='D', pipeline=[
                dict(type='MultiScaleFlipAug', img_scale=None, img_ratios=[0.5, 1.0], transforms=inner)])))


def test_a_crop_rewrites_a_slide_test_and_every_pipeline_exactly():
    cfg = _slide_config()
    C.rewrite(cfg, crop=64)                                    # 512 -> 64: factor 1/8
    inner = [dict(type='Resize', keep_ratio=True), dict(type='Pad', size_divisor=32)]
    assert cfg.to_dict() == dict(
        model=dict(type='EncoderDecoder', pretrained=None, backbone=dict(type='B'),
                   test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(43, 43))),   # 341/8 = 42.6
        data=dict(
            train=dict(type='RepeatDataset', times=2, dataset=dict(type='D', pipeline=[
                dict(type='Resize', img_scale=[(256, 64), (128, 32)], ratio_range=None),
                dict(type='Resize', img_scale=None, ratio_range=(0.5, 2.0)),
                dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=0.75),
                dict(type='Pad', size=(64, 64), pad_val=0, seg_pad_val=255),
                dict(type='Pad', size_divisor=32)])),
            val=dict(type='D', pipeline=[
                dict(type='MultiScaleFlipAug', img_scale=(256, 64), flip=False, transforms=inner)]),
            test=dict(type='D', pipeline=[
                dict(type='MultiScaleFlipAug', img_scale=None, img_ratios=[0.5, 1.0], transforms=inner)])))


def test_a_whole_image_test_or_a_model_without_test_cfg_is_left_as_it_is():
    cfg = _slide_config()
    cfg.model.test_cfg = dict(mode='whole', crop_size=(512, 512), stride=(341, 341))
    C.set_crop(cfg, 64)
    assert cfg.model.test_cfg == dict(mode='whole', crop_size=(512, 512), stride=(341, 341))
    del cfg.model['test_cfg']
    C.set_crop(cfg, 32)
    assert 'test_cfg' not in cfg.model


def test_a_size_scaled_below_one_pixel_is_one_pixel():
    cfg = _slide_config()
    cfg.model.test_cfg.stride = (8, 24)
    C.set_crop(cfg, 32)                                        # factor 1/16: 0.5 and 1.5 pixels
    assert cfg.model.test_cfg.stride == (1, 2) and cfg.model.test_cfg.crop_size == (32, 32)


def test_a_non_square_crop_scales_by_its_first_side():
    cfg = _slide_config()
    cfg.data.train.dataset.pipeline[2].crop_size = (256, 512)  # mmseg's (h, w)
    assert C.train_crop(cfg) == (256, 512)
    C.set_crop(cfg, 64)                                        # factor 64/256
    assert cfg.data.train.dataset.pipeline[0].img_scale == [(512, 128), (256, 64)]
    assert cfg.data.train.dataset.pipeline[2].crop_size == (64, 64)


def test_the_crop_is_read_from_the_train_pipeline_only():
    cfg = _slide_config()
    crop = cfg.data.train.dataset.pipeline.pop(2)
    cfg.data.val.pipeline.insert(0, crop)                      # a RandomCrop elsewhere does not count
    for rewrite in (C.train_crop, lambda cfg: C.set_crop(cfg, 64)):
        with pytest.raises(CGRSegError, match=r'^config has no RandomCrop step in its train pipeline$'):
            rewrite(cfg)


@pytest.mark.parametrize('iters,interval', [(4, 1), (20, 2), (25, 2), (99, 9), (1000, 50)])
def test_a_short_run_logs_every_tenth_of_its_iterations_in_whole_iterations(cfg, iters, interval):
    C.rewrite(cfg, iters=iters)
    assert cfg.log_config['interval'] == interval
    assert type(cfg.log_config['interval']) is int


def test_dropping_the_pretrained_weights_clears_both_places_and_adds_no_key(cfg):
    cfg.model['pretrained'] = 'checkpoints/x.pth'
    keys = set(cfg.model)
    C.drop_pretrained(cfg)
    assert set(cfg.model) == keys
    assert cfg.model['pretrained'] is None and cfg.model.backbone['init_cfg'] is None


def test_the_fallback_resolved_text_assigns_exactly_the_configs_own_keys(cfg):
    import ast
    C.set_data_prefix(cfg, "data/it's")                      # mmcv's pretty_text fails on the quote
    tree = ast.parse(C.resolved_text(cfg))
    assigned = [node.targets[0].id for node in tree.body]
    assert assigned == [k for k in cfg if k not in C.TEMPLATE_VARS]


# check_data -----------------------------------------------------------------------------------------

def _missing(path, key, split):
    return (f'^{re.escape(str(path))}: {key} of the {split} set does not exist '
            r'\(run `cgrseg prepare`, or point --data-root at the prepared data\)$')


def _data_config(root, **datasets):
    return _config(data={split: dict(type='D', pipeline=[], **({'data_root': str(root)} if root else {}), **ds)
                         for split, ds in datasets.items()})


def _dirs(root, *names):
    for name in names:
        (root / name).mkdir(parents=True)


def test_check_data_passes_a_complete_set_read_under_its_data_root(tmp_path, monkeypatch):
    _dirs(tmp_path / 'root', 'img', 'ann')
    (tmp_path / 'root/list.txt').write_text('a\n')
    monkeypatch.chdir(tmp_path)                                # not the data root
    C.check_data(_data_config(tmp_path / 'root', train=dict(img_dir='img', ann_dir='ann', split='list.txt')),
                 ('train',))


def test_check_data_names_each_missing_directory_and_its_split(tmp_path):
    root = tmp_path / 'root'
    cfg = _data_config(root, train=dict(img_dir='img', ann_dir='ann', split='list.txt'))
    with pytest.raises(CGRSegError, match=_missing(root / 'img', 'img_dir', 'train')):
        C.check_data(cfg, ('train',))
    _dirs(root, 'img')
    with pytest.raises(CGRSegError, match=_missing(root / 'ann', 'ann_dir', 'train')):
        C.check_data(cfg, ('train',))
    _dirs(root, 'ann')
    with pytest.raises(CGRSegError, match=_missing(root / 'list.txt', 'split', 'train')):
        C.check_data(cfg, ('train',))


def test_check_data_skips_unset_keys_but_checks_the_rest(tmp_path):
    _dirs(tmp_path, 'img')
    cfg = _data_config(tmp_path, test=dict(img_dir='img', ann_dir=None, split='list.txt'))
    with pytest.raises(CGRSegError, match=_missing(tmp_path / 'list.txt', 'split', 'test')):
        C.check_data(cfg, ('test',))


def test_check_data_without_a_data_root_reads_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _data_config(None, val=dict(img_dir='img', ann_dir='ann'))
    with pytest.raises(CGRSegError, match=_missing('img', 'img_dir', 'val')):
        C.check_data(cfg, ('val',))
    _dirs(tmp_path, 'img', 'ann')
    C.check_data(cfg, ('val',))


def test_check_data_checks_only_the_splits_asked_for(tmp_path):
    _dirs(tmp_path, 'img')
    cfg = _data_config(tmp_path, train=dict(img_dir='img'), val=dict(img_dir='missing'))
    C.check_data(cfg, ('train',))
    with pytest.raises(CGRSegError, match=_missing(tmp_path / 'missing', 'img_dir', 'val')):
        C.check_data(cfg, ('train', 'val'))


def test_a_data_prefix_moves_the_roots_after_a_set_without_one(tmp_path):
    cfg = _data_config('data/prepared/x', train=dict(img_dir='img'), val=dict(img_dir='img'))
    del cfg.data.train['data_root']                            # e.g. absolute image directories
    C.set_data_prefix(cfg, tmp_path)
    assert 'data_root' not in cfg.data.train and cfg.data.val.data_root == str(tmp_path / 'x')


# experiment -----------------------------------------------------------------------------------------

def test_the_experiment_of_each_config_is_its_model_variant_dataset_and_paper_mode(nine):
    for name, cfg in nine.items():
        model, dataset = name.split('_')[0], DATASETS[name.split('_')[1]]
        assert C.experiment(cfg, name) == dict(model=model, variant=model[-1], dataset=dataset,
                                               paper_mode=PAPER_MODES[dataset]), name
        assert type(C.experiment(cfg, name)) is dict


@pytest.mark.parametrize('missing', ['model', 'variant', 'dataset', 'paper_mode', None])
def test_an_experiment_lacking_a_key_is_refused_naming_all_four(missing):
    exp = dict(model='m', variant='t', dataset='ade20k', paper_mode='ss')
    cfg = _config(experiment={k: v for k, v in exp.items() if k != missing}) if missing else _config(x=1)
    with pytest.raises(CGRSegError, match=r'^c\.py: config has no '
                                          r'experiment=dict\(model, variant, dataset, paper_mode\) entry$'):
        C.experiment(cfg, 'c.py')
