"""The authors' optimisation (4 GPUs x 4 images, SyncBN, plain BNs per GPU) on any process count.

Unit tests of the grouped batch norm and of the loss averaging, and the end-to-end proof: one process
with 16 images trains exactly like 4 DDP processes (gloo, launched as `cgrseg train --gpus 4` is) with
4 images each, and not without the grouping.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('mmseg')
torch = pytest.importorskip('torch')

from cgrseg import cli  # noqa: E402
from cgrseg.errors import CGRSegError  # noqa: E402
from cgrseg.models.grouped_bn import GroupedBatchNorm2d, group_plain_batchnorm  # noqa: E402
from cgrseg.runner import config_rewrites as C  # noqa: E402
from cgrseg.runner import ddp  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {v: ROOT / f'configs/cgrseg/cgrseg-{v}_ade20k_160k.py' for v in 'tbl'}
# RCM `norm` + RCA `excite` BN in the context stack (next_repeat) and in the three per-level RCMs
PLAIN_BNS = {'t': 16, 'b': 18, 'l': 16}


def test_grouped_bn_normalises_each_group_as_its_own_gpu():
    """Against an independent reference: one nn.BatchNorm2d per group of 4, as on 4 GPUs."""
    torch.manual_seed(0)
    x = torch.randn(16, 3, 5, 5, dtype=torch.float64) * 3 + torch.arange(16.).view(16, 1, 1, 1)
    grouped = GroupedBatchNorm2d(3, group_size=4).double()
    gpus = [torch.nn.BatchNorm2d(3).double() for _ in range(4)]
    for bn in [grouped, *gpus]:
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
            bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = grouped(xs[0])
    ref = torch.cat([bn(part) for bn, part in zip(gpus, xs[1].split(4))])
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=0, atol=1e-12)
    # DDP sums the weight gradients of the 4 GPUs (then averages, as the 16-image mean loss does)
    torch.testing.assert_close(grouped.weight.grad, sum(bn.weight.grad for bn in gpus))
    # running statistics: rank 0's
    torch.testing.assert_close(grouped.running_mean, gpus[0].running_mean)
    torch.testing.assert_close(grouped.running_var, gpus[0].running_var)
    assert grouped.num_batches_tracked.item() == 1
    # negative control: one BN over the 16 images is not the 4-GPU computation
    plain = torch.nn.BatchNorm2d(3).double()
    plain.load_state_dict(gpus[0].state_dict())
    assert not torch.allclose(plain.train()(x), ref, atol=1e-3)


def test_grouped_bn_is_plain_bn_for_one_group_and_in_eval():
    torch.manual_seed(0)
    grouped, plain = GroupedBatchNorm2d(2, group_size=4), torch.nn.BatchNorm2d(2)
    x = torch.randn(4, 2, 3, 3)
    torch.testing.assert_close(grouped(x), plain(x), rtol=0, atol=0)
    big = torch.randn(8, 2, 3, 3)
    torch.testing.assert_close(grouped.eval()(big), plain.eval()(big), rtol=0, atol=0)
    with pytest.raises(ValueError, match='groups of 4'):
        grouped.train()(torch.randn(6, 2, 3, 3))


def test_only_plain_bns_are_grouped_and_keys_stay():
    """16 plain BNs in CGRSeg-T, none in the backbone; SyncBN layers and the state dict unchanged."""
    import cgrseg.models  # noqa: F401  (registers the model in mmseg)
    from mmseg.models import build_segmentor
    model = build_segmentor(C.load_config(CONFIG['t']).model)
    keys = list(model.state_dict())
    syncs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert group_plain_batchnorm(model, 4) == PLAIN_BNS['t']
    grouped = [n for n, m in model.named_modules() if isinstance(m, GroupedBatchNorm2d)]
    assert all(n.startswith('decode_head.') and (n.endswith('.norm') or '.excite.' in n) for n in grouped)
    assert [n for n, m in model.named_modules() if isinstance(m, torch.nn.SyncBatchNorm)] == syncs
    assert syncs and list(model.state_dict()) == keys


@pytest.mark.parametrize('variant', 'bl')
def test_plain_bn_count_of_the_larger_heads(variant):
    import cgrseg.models  # noqa: F401
    from mmseg.models import build_head
    head = build_head(C.load_config(CONFIG[variant]).model.decode_head)
    assert group_plain_batchnorm(head, 4) == PLAIN_BNS[variant]


def test_bn_group_is_the_authors_images_per_gpu():
    cfg = C.load_config(CONFIG['t'])
    assert cfg.bn_group == 4 == cfg.data.samples_per_gpu   # the official configs' 4 images per GPU
    assert ddp.bn_group(cfg) is None                        # 4 per process: nothing to group
    for per_process, group in ((16, 4), (8, 4), (2, None)):
        cfg.data.samples_per_gpu = per_process
        assert ddp.bn_group(cfg) == group
    cfg.data.samples_per_gpu = 6
    with pytest.raises(CGRSegError, match='6 images per process do not split into groups of bn_group=4'):
        ddp.check_config(cfg)
    for bad in (0, 2.5, True):
        cfg.bn_group = bad
        with pytest.raises(CGRSegError, match='bn_group must be a positive integer'):
            ddp.check_config(cfg)
    cfg.bn_group, cfg.train_dtype = None, 'float16'
    with pytest.raises(CGRSegError, match='train_dtype must be one of float32, float64'):
        ddp.check_config(cfg)


def test_cpu_processes_exclude_gpus(run_cli):
    result = run_cli('train', CONFIG['t'], '--work-dir', 'unused', '--cpu-processes', '0')
    assert result.code == 2 and result.error_lines == [
        'cgrseg train: error: argument --cpu-processes: 0 is less than the minimum of 1']
    result = run_cli('train', CONFIG['t'], '--work-dir', 'unused', '--cpu-processes', '2', '--gpus', '1')
    assert result.code == 2 and result.error_lines == [
        'cgrseg train: error: --cpu-processes 2 trains on the CPU; it excludes --gpus 1']
    assert not Path('unused').exists()


def test_loss_is_the_batch_mean_whatever_each_gpu_ignores():
    """mmseg 0.x's CrossEntropyLoss as configured (avg_non_ignore=False) divides by all pixels, ignored
    ones included: the mean of 4 GPUs' losses (DDP's gradient mean) is the 16-image loss even when
    the GPUs ignore different numbers of pixels. Averaging over non-ignored pixels would break that."""
    import torch.nn.functional as F
    from mmseg.models import build_loss
    loss_cfg = C.load_config(CONFIG['t']).model.decode_head.loss_decode
    assert not loss_cfg.get('avg_non_ignore', False)
    torch.manual_seed(0)
    logits = torch.randn(16, 5, 6, 6, dtype=torch.float64)
    labels = torch.randint(0, 5, (16, 6, 6))
    labels[:4, :, :4] = 255   # GPU 0 ignores 2/3 of its pixels, GPU 1 one row, the others none
    labels[4:8, :1] = 255

    def gpu_mean(loss):
        return sum(loss(x, y, ignore_index=255) for x, y in zip(logits.split(4), labels.split(4))) / 4

    loss = build_loss(loss_cfg)
    reference = F.cross_entropy(logits, labels, ignore_index=255, reduction='sum') / labels.numel()
    torch.testing.assert_close(loss(logits, labels, ignore_index=255), reference)
    torch.testing.assert_close(gpu_mean(loss), reference)
    non_ignore = build_loss(dict(loss_cfg, avg_non_ignore=True))
    assert not math.isclose(gpu_mean(non_ignore), non_ignore(logits, labels, ignore_index=255),
                            rel_tol=1e-3)


# --- end to end: 1 process x 16 images == 4 DDP processes x 4 images ---------------------------------

IMAGES, CROP, ITERS = 16, 64, 2
# A deterministic train pipeline (no random resize, crop, flip or photometric distortion), so that
# every run sees the same pixels; the data order is arranged below.
PIPELINE = [
    {'type': 'LoadImageFromFile'}, {'type': 'LoadAnnotations', 'reduce_zero_label': True},
    {'type': 'RandomFlip', 'prob': 0.0},     # never flips; records the flip meta data
    {'type': 'Normalize', 'mean': [123.675, 116.28, 103.53], 'std': [58.395, 57.12, 57.375],
     'to_rgb': True},
    {'type': 'DefaultFormatBundle'}, {'type': 'Collect', 'keys': ['img', 'gt_semantic_seg']}]
OPTIONS = [
    f'data.train.pipeline={PIPELINE!r}',
    "data.train_dataloader={'shuffle': False}",
    'model.decode_head.dropout_ratio=0.0',   # dropout masks are random per process
    'lr_config.warmup=None',                  # every iteration a full step
    'checkpoint_config.interval=160000',      # scaled to ITERS: one checkpoint, at the end
    'train_dtype=float64',                    # float32 rounding would blur the comparison
]


@pytest.fixture(scope='module')
def tiny_ade20k(tmp_path_factory):
    """16 ADE20K-layout images of 64x64; images differ in brightness and in how many pixels are
    ignored (label 0), so that groups have different statistics and GPUs different ignored counts."""
    from PIL import Image
    root = tmp_path_factory.mktemp('ddp')
    base = root / 'prepared/ade/ADEChallengeData2016'
    images, labels = base / 'images/training', base / 'annotations/training'
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        image = rng.normal(60 + 10 * i, 20 + 3 * i, (CROP, CROP, 3)).clip(0, 255).astype(np.uint8)
        label = rng.integers(1, 151, (CROP, CROP), dtype=np.uint8)
        label[:3 * i] = 0
        Image.fromarray(image).save(images / f'{i:02d}.jpg')
        Image.fromarray(label).save(labels / f'{i:02d}.png')
    return root


def test_bad_batch_for_bn_group_is_one_error_line_and_writes_nothing(tiny_ade20k, run_cli):
    work_dir = tiny_ade20k / 'never'
    result = run_cli('train', CONFIG['t'], '--work-dir', work_dir, '--data-root', tiny_ade20k / 'prepared',
                     '--gpus', 0, '--samples-per-gpu', 6, '--no-pretrained', '--no-validate')
    assert result.code == 2 and result.error_lines == [
        f'cgrseg train: error: {CONFIG["t"]}: 6 images per process do not split into groups of '
        f'bn_group=4 (the images per GPU of the run it reproduces); use a multiple of 4 or set '
        f'bn_group=None']
    assert not work_dir.exists()


def test_cpu_processes_are_launched_by_torchrun():
    assert ddp.torchrun(4)[-2:] == ['--standalone', '--nproc_per_node=4']


def sampler_order(world):
    """The dataset order for which mmseg's DistributedSampler (no shuffle) gives rank r of ``world``
    ranks the images of groups r*k .. r*k+k-1 (k = groups per rank); world 1 gives them in order.

    Group g is images 4g..4g+3 in every layout, so every run normalises the same images together and
    rank 0 (or the first group of one process) always holds group 0."""
    per_rank = IMAGES // world
    ranks = [list(range(r * per_rank, (r + 1) * per_rank)) for r in range(world)]
    return [ranks[i % world][i // world] for i in range(IMAGES)]


def train(data, work_dir, world, *options):
    """`cgrseg train` with ``world`` processes of 16 / world images; (state dict, logged losses)."""
    split = work_dir.parent / f'{work_dir.name}.txt'
    split.write_text(''.join(f'{i:02d}\n' for i in sampler_order(world)))
    launch = ['--cpu-processes', world] if world > 1 else ['--gpus', 0]
    argv = ['train', CONFIG['t'], '--work-dir', work_dir, '--data-root', data / 'prepared',
            '--iters', ITERS, '--samples-per-gpu', IMAGES // world, '--workers', 0, '--no-pretrained',
            '--no-validate', *launch, '--cfg-options', *OPTIONS, f'data.train.split={split}', *options]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's processes; several threads crawl on a loaded machine
    try:
        assert cli.main([str(a) for a in argv]) == 0
    finally:
        torch.set_num_threads(threads)
    log = next(work_dir.glob('*.log.json')).read_text().splitlines()
    losses = [r['loss'] for r in map(json.loads, log) if r.get('mode') == 'train']
    state = torch.load(work_dir / 'latest.pth', map_location='cpu', weights_only=False)['state_dict']
    return state, losses


def max_difference(a, b, buffers):
    """Largest absolute difference over the parameters (``buffers=False``) or the BN buffers."""
    assert list(a) == list(b)
    names = [k for k in a if a[k].is_floating_point() and ('running_' in k) == buffers]
    return max((a[k] - b[k]).abs().max().item() for k in names)


@pytest.fixture(scope='module')
def one_process(tiny_ade20k):
    """The paper profile's layout: 1 process x 16 images, plain BNs in groups of bn_group=4."""
    return train(tiny_ade20k, tiny_ade20k / 'one', 1)


def differences(a, b):
    return max_difference(a, b, buffers=False), max_difference(a, b, buffers=True)


@pytest.mark.slow
def test_one_process_with_16_images_trains_like_4_ddp_processes(tiny_ade20k, one_process):
    one, one_losses = one_process
    ddp4, ddp4_losses = train(tiny_ade20k, tiny_ade20k / 'ddp4', 4)
    assert all(v.dtype == torch.float64 for v in ddp4.values() if v.is_floating_point())
    assert len(one_losses) == ITERS and one_losses == pytest.approx(ddp4_losses, abs=2e-5)  # log: 5 digits
    same = differences(one, ddp4)
    assert max(same) < 1e-12, f'1 x 16 differs from 4 x 4: parameters {same[0]}, running stats {same[1]}'
    # negative control: without the grouping the same comparison fails, far beyond rounding
    ungrouped, _ = train(tiny_ade20k, tiny_ade20k / 'ungrouped', 1, 'bn_group=None')
    control = differences(ungrouped, ddp4)
    assert min(control) > 1e-4, control


@pytest.mark.slow
def test_two_ddp_processes_with_two_groups_each_train_alike(tiny_ade20k, one_process):
    """2 x 8: grouping inside each DDP process, SyncBN across them."""
    one, one_losses = one_process
    ddp2, ddp2_losses = train(tiny_ade20k, tiny_ade20k / 'ddp2', 2)
    assert one_losses == pytest.approx(ddp2_losses, abs=2e-5)
    assert max(differences(one, ddp2)) < 1e-12
