"""Properties of the model beyond the reference fixture: bias numbering, any input size, registry."""
import pytest
import torch

from cgrseg.models.attention import bias_index
from cgrseg.models.build import build_model
from cgrseg.models.naive import naive_bias_index, naive_mode
from reference import BACKBONE_OF, VARIANTS, ade20k_config, official_keys


@pytest.mark.parametrize('query_res,key_res,step', [(5, 5, 1), (16, 16, 1), (4, 7, 2), (16, 32, 2), (3, 6, 2)])
def test_bias_index_is_the_first_appearance_numbering(query_res, key_res, step):
    fast, n_fast = bias_index(query_res, key_res, step)
    slow, n_slow = naive_bias_index(query_res, key_res, step)
    assert n_fast == n_slow
    assert torch.equal(fast, slow)


@pytest.mark.parametrize('shape', [(64, 64), (224, 320), (160, 96)])
def test_any_multiple_of_32_matches_the_naive_path(shape):
    torch.manual_seed(0)
    model = build_model(ade20k_config('t'))
    for p in model.parameters():
        p.data.normal_(0, 0.1)  # nonzero attention biases, so their resizing matters
    model.eval()
    x = torch.randn(2, 3, *shape)
    with torch.no_grad():
        fast = model.encode_decode(x, None)
        fast_again = model.encode_decode(x, None)  # second call uses the cached bias
        with naive_mode():
            naive = model.encode_decode(x, None)
    assert fast.shape == (2, 150, *shape)
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)
    assert torch.equal(fast, fast_again)


def test_bias_cache_follows_weight_changes_and_training():
    model = build_model(ade20k_config('t')).eval()
    attn = model.backbone.network[4][-1].token_mixer
    first = attn.bias(64, 64)
    with torch.no_grad():
        attn.attention_biases_seg.add_(1.0)
    assert torch.allclose(attn.bias(64, 64), first + 1.0, atol=1e-5)
    model.train()
    assert attn.bias(64, 64).requires_grad


@pytest.mark.parametrize('variant', VARIANTS)
def test_official_registry_names_build_the_official_architecture(variant):
    """The authors' config names (``efficientformerv2_{s1,s2,l}_feat`` + ``CGRSeg``) build the
    segmentor whose state dict is the official key list of that variant."""
    from mmcv import Config
    from mmcv.cnn.utils import revert_sync_batchnorm
    from mmseg.models import build_segmentor
    cfg = Config.fromfile(str(ade20k_config(variant)))
    cfg.model.backbone = dict(type=f'efficientformerv2_{BACKBONE_OF[variant]}_feat', style='pytorch')
    cfg.model.decode_head.type = 'CGRSeg'
    state = revert_sync_batchnorm(build_segmentor(cfg.model)).state_dict()
    assert [(k, tuple(v.shape), str(v.dtype)) for k, v in state.items()] == [
        (k, shape, f'torch.{dtype}') for k, shape, dtype in official_keys(variant)]
