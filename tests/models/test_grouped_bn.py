"""GroupedBatchNorm2d beyond the defaults: another eps and momentum, no affine, no running statistics.

tests/runner/test_ddp.py compares the grouped BN with one BatchNorm2d per GPU at torch's defaults, where an eps
or momentum that is dropped or swapped is invisible (the default takes its place).
"""
import copy

import pytest
import torch

from cgrseg.models.grouped_bn import GroupedBatchNorm2d


@pytest.mark.parametrize('options', [dict(eps=1e-2, momentum=0.3), dict(eps=0.5, affine=False),
                                     dict(eps=1e-3, track_running_stats=False)])
def test_a_copied_batchnorm_keeps_its_options_and_normalises_each_group_like_it(options):
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64) * 0.05 + torch.arange(8.).view(8, 1, 1, 1)
    bn = torch.nn.BatchNorm2d(3, **options)   # float32, as from_batchnorm expects
    if bn.affine:
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
            bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    gpus = [copy.deepcopy(bn).double() for _ in range(2)]
    grouped = GroupedBatchNorm2d.from_batchnorm(bn, group_size=4)
    assert (grouped.eps, grouped.momentum, grouped.affine, grouped.track_running_stats) == \
        (bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    assert grouped.training and list(grouped.state_dict()) == list(bn.state_dict())
    grouped.double()
    reference = torch.cat([gpu(part) for gpu, part in zip(gpus, x.split(4))])
    torch.testing.assert_close(grouped(x), reference, rtol=0, atol=1e-12)
    if bn.track_running_stats:   # rank 0's statistics, with this momentum
        torch.testing.assert_close(grouped.running_var, gpus[0].running_var, rtol=0, atol=1e-12)
    assert grouped.eval().training is False and GroupedBatchNorm2d.from_batchnorm(bn.eval(), 4).training is False


def test_a_batch_that_does_not_split_names_its_size():
    with pytest.raises(ValueError, match='^a batch of 6 images does not split into groups of 4$'):
        GroupedBatchNorm2d(2, group_size=4)(torch.randn(6, 2, 3, 3))
    with pytest.raises(ValueError, match='group_size must be at least 1, not 0'):
        GroupedBatchNorm2d(2, group_size=0)
    assert 'group_size=4' in repr(GroupedBatchNorm2d(2, group_size=4))


def test_groups_of_one_image_normalise_each_image_alone():
    # a layout of 1 image per GPU (e.g. 8 GPUs x 1): legal, and each image has its own statistics
    torch.manual_seed(1)
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64) + torch.arange(3.).view(3, 1, 1, 1)
    grouped = GroupedBatchNorm2d(2, group_size=1).double()
    alone = torch.cat([torch.nn.BatchNorm2d(2).double()(image[None]) for image in x])
    torch.testing.assert_close(grouped(x), alone, rtol=0, atol=1e-12)
