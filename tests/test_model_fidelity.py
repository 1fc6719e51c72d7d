"""Our CGRSeg-T/B/L against the official implementation (../shared/reference)."""
import numpy as np
import pytest
import torch

from cgrseg.models.build import build_model
from reference import VARIANTS, ade20k_config, reference_file, weights_module


def official_rows(variant):
    return weights_module().read_keys(reference_file(f'cgrseg-{variant}_ade20k.keys.tsv'))


def reference_model(variant, seed=0):
    """Our model, built from our config, carrying the deterministic weights of the reference."""
    model = build_model(ade20k_config(variant))
    weights = weights_module().make_weights(official_rows(variant), seed)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected
    assert all(model.state_dict()[k].dtype == torch.int64 for k in missing)
    return model.eval()


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return np.linalg.norm(ours - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize('variant', VARIANTS)
def test_state_dict_is_the_official_one(variant):
    rows = official_rows(variant)
    sd = build_model(ade20k_config(variant)).state_dict()
    assert [k for k, _, _ in rows] == list(sd)  # same keys, same order
    for key, shape, dtype in rows:
        assert tuple(sd[key].shape) == shape, key
        assert str(sd[key].dtype) == f'torch.{dtype}', key


@pytest.mark.parametrize('variant', VARIANTS)
def test_official_checkpoint_loads_strictly(variant):
    official = build_model(ade20k_config(variant)).state_dict()
    official.update(weights_module().make_weights(official_rows(variant), 3))
    build_model(ade20k_config(variant)).load_state_dict(official, strict=True)


@pytest.mark.parametrize('variant', VARIANTS)
def test_outputs_match_official(variant):
    ref = np.load(reference_file(f'cgrseg-{variant}_ade20k.seed0.npz'))
    model = reference_model(variant)
    x = weights_module().make_input((1, 3, 256, 256), 1)
    with torch.no_grad():
        feats = model.backbone(x)
        logits = model.decode_head(feats)
    for i, f in enumerate(feats):
        assert rel_err(f, ref[f'backbone_{i}']) < 1e-4, f'backbone_{i}'
    assert logits.shape == ref['logits'].shape
    assert rel_err(logits, ref['logits']) < 1e-4
