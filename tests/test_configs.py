"""The nine CGRSeg configs: they load, carry the published settings, and their models build."""
import copy
from pathlib import Path

import pytest

mmcv = pytest.importorskip('mmcv')
torch = pytest.importorskip('torch')

from mmcv import Config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# variant -> backbone arch, head in_channels, channels, next_repeat, strip kernel, drop path.
# Source: the authors' configs (github.com/nizhenliang/CGRSeg, local_configs/cgrseg/cgrseg-{t,b,l}_
# ade20k_160k.py: backbone type, in_channels, channels, next_repeat, dw_size = neck_size) and
# drop_path_rate of efficientformerv2_{s1,s2,l}_feat in models/backbones/efficientformer_v2.py.
VARIANTS = {
    't': ('s1', [48, 120, 224], 128, 5, 11, 0.0),
    'b': ('s2', [64, 144, 288], 256, 6, 11, 0.02),
    'l': ('l', [80, 192, 384], 256, 5, 9, 0.1),
}
# config suffix -> dataset, mmseg dataset type, classes, iterations, crop, data root. Classes are
# mmseg 0.30's (ADE20KDataset 150, COCOStuffDataset 171, PascalContextDataset59 59, checked
# below against the registry); iterations and crops are the paper's implementation details
# (160k ADE20K, 80k others; 512x512, Pascal Context 480x480); data roots are this project's
# prepare layout (docs/data.md).
DATASETS = {
    'ade20k_160k': ('ade20k', 'ADE20KDataset', 150, 160000, 512,
                    'data/prepared/ade/ADEChallengeData2016'),
    'coco-stuff10k_80k': ('coco_stuff10k', 'COCOStuffDataset', 171, 80000, 512,
                          'data/prepared/coco_stuff10k'),
    'pascal-context-59_80k': ('pascal_context', 'PascalContextDataset59', 59, 80000, 480,
                              'data/prepared/VOCdevkit/VOC2010'),
}
CONFIGS = [(v, s) for v in VARIANTS for s in DATASETS]


def config_path(variant, suffix):
    return ROOT / 'configs' / 'cgrseg' / f'cgrseg-{variant}_{suffix}.py'


@pytest.fixture(scope='module')
def configs():
    """Loaded once per module and shared: a test that changes a config must change a deep copy."""
    return {key: Config.fromfile(str(config_path(*key))) for key in CONFIGS}


def test_exactly_the_nine_configs_exist():
    found = sorted(p.name for p in (ROOT / 'configs' / 'cgrseg').glob('*.py'))
    assert found == sorted(config_path(*key).name for key in CONFIGS)


@pytest.mark.parametrize('variant,suffix', CONFIGS)
def test_config_starts_with_custom_imports(variant, suffix):
    first = config_path(variant, suffix).read_text().splitlines()[0]
    assert first == "custom_imports = dict(imports=['cgrseg.models'], allow_failed_imports=False)"


@pytest.mark.parametrize('variant,suffix', CONFIGS)
def test_model_settings(configs, variant, suffix):
    cfg = configs[variant, suffix]
    arch, in_channels, channels, repeat, kernel, dpr = VARIANTS[variant]
    backbone, head = cfg.model.backbone, cfg.model.decode_head
    assert (backbone.type, backbone.arch, backbone.drop_path_rate) == ('EfficientFormerV2', arch, dpr)
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=f'checkpoints/efficientformerv2_{arch}.pth')
    assert head.type == 'CGRSegHead'
    assert (head.in_channels, head.in_index, head.channels) == (in_channels, [1, 2, 3], channels)
    assert (head.next_repeat, head.dw_size, head.neck_size) == (repeat, kernel, kernel)
    assert head.num_classes == DATASETS[suffix][2]
    assert cfg.model.test_cfg == dict(mode='whole')
    assert head.norm_cfg.type == backbone.norm_cfg.type == 'SyncBN'


@pytest.mark.parametrize('variant,suffix', CONFIGS)
def test_schedule_is_the_official_one(configs, variant, suffix):
    cfg = configs[variant, suffix]
    opt = cfg.optimizer
    assert (opt.type, opt.lr, opt.betas, opt.weight_decay) == ('AdamW', 1.2e-4, (0.9, 0.999), 0.01)
    assert opt.paramwise_cfg.custom_keys == {'absolute_pos_embed': {'decay_mult': 0.0},
                                             'head': {'lr_mult': 10.0}, 'norm': {'decay_mult': 0.0}}
    lr = cfg.lr_config
    assert (lr.policy, lr.power, lr.min_lr, lr.by_epoch) == ('poly', 1.0, 0.0, False)
    assert (lr.warmup, lr.warmup_iters, lr.warmup_ratio) == ('linear', 1500, 1e-6)
    assert cfg.runner == dict(type='IterBasedRunner', max_iters=DATASETS[suffix][3])
    assert cfg.evaluation.interval == 4000 and cfg.evaluation.metric == 'mIoU'
    # resumable: checkpoints during the run, and the schedule ends on one
    assert cfg.runner.max_iters % cfg.checkpoint_config.interval == 0
    assert cfg.data.samples_per_gpu == 4
    assert cfg.find_unused_parameters is True


@pytest.mark.parametrize('variant,suffix', CONFIGS)
def test_data_settings(configs, variant, suffix):
    cfg = configs[variant, suffix]
    dataset, dtype, classes, _, crop, root = DATASETS[suffix]
    assert cfg.experiment == dict(model=f'cgrseg-{variant}', variant=variant, dataset=dataset,
                                  paper_mode={'pascal_context': 'ms_flip', 'coco_stuff10k': 'ms'}.get(dataset, 'ss'))
    for split in ('train', 'val', 'test'):
        assert cfg.data[split].type == dtype
        assert cfg.data[split].data_root.rstrip('/') == root
    steps = {s.type: s for s in cfg.data.train.pipeline}
    assert steps['RandomCrop'].crop_size == (crop, crop)
    assert steps['Pad'].size == (crop, crop)
    assert steps['LoadAnnotations'].reduce_zero_label is True
    assert steps['Resize'].ratio_range == (0.5, 2.0)
    assert steps['Resize'].img_scale == ((520, 520) if dataset == 'pascal_context' else (2048, 512))
    test = cfg.data.test.pipeline[1]
    assert test.type == 'MultiScaleFlipAug'
    if dataset in ('pascal_context', 'coco_stuff10k'):  # the official test protocols (test_protocols.py)
        assert test.flip is (dataset == 'pascal_context') and test.img_ratios == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    else:
        assert test.flip is False and 'img_ratios' not in test


@pytest.mark.parametrize('suffix', DATASETS)
def test_num_classes_match_the_mmseg_dataset(configs, suffix):
    from mmseg.datasets import DATASETS as REGISTRY
    cfg = configs['t', suffix]
    assert len(REGISTRY.get(cfg.data.train.type).CLASSES) == cfg.model.decode_head.num_classes


@pytest.mark.parametrize('variant', VARIANTS)
def test_model_builds_and_predicts(configs, variant):
    from mmcv.cnn.utils import revert_sync_batchnorm
    from mmseg.models import build_segmentor
    model_cfg = copy.deepcopy(configs[variant, 'pascal-context-59_80k'].model)
    model_cfg.backbone.init_cfg = None
    model = revert_sync_batchnorm(build_segmentor(model_cfg)).eval()
    with torch.no_grad():
        logits = model.forward_dummy(torch.rand(1, 3, 64, 96))
    assert logits.shape == (1, 59, 64, 96)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize('variant,suffix', CONFIGS)
def test_workflow_fetches_the_backbone_weights_each_config_loads(variant, suffix):
    """The `pretrained` rule's output (cgrseg.layout.BACKBONE_WEIGHTS) is the file the config's init_cfg reads."""
    from cgrseg import layout
    from cgrseg.runner.config_rewrites import pretrained_path
    cfg = Config.fromfile(str(config_path(variant, suffix)))
    assert pretrained_path(cfg) == layout.BACKBONE_WEIGHTS.format(arch=layout.VARIANT_BACKBONES[variant])
