"""Our CGRSeg-T/B/L against the official implementation (tests/reference, shipped with the repo)."""
import numpy as np
import pytest
import torch

from cgrseg.models.build import build_model
from reference import (VARIANTS, ade20k_config, official_input, official_keys, official_outputs,
                       official_state_dict, official_weights)

# float32 reimplementations of the same graph agree to rounding; the bound is loose enough for
# other BLAS builds and thread counts, and far below what any changed operation produces.
TOLERANCE = 1e-5


def reference_model(variant, seed=0):
    """Our model, built from our config, carrying the deterministic weights of the reference."""
    model = build_model(ade20k_config(variant))
    weights = official_weights(official_keys(variant), seed)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected
    assert missing and all(model.state_dict()[k].dtype == torch.int64 for k in missing)
    return model.eval()


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return np.linalg.norm(ours - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize('variant', VARIANTS)
def test_state_dict_is_the_official_one(variant):
    rows = official_keys(variant)
    sd = build_model(ade20k_config(variant)).state_dict()
    assert [k for k, _, _ in rows] == list(sd)  # same keys, same order
    for key, shape, dtype in rows:
        assert tuple(sd[key].shape) == shape, key
        assert str(sd[key].dtype) == f'torch.{dtype}', key


@pytest.mark.parametrize('variant', VARIANTS)
def test_official_checkpoint_loads_strictly(variant):
    """A state dict made only from the official key list (names, shapes, dtypes) loads strictly."""
    official = official_state_dict(official_keys(variant), 3)
    model = build_model(ade20k_config(variant))
    model.load_state_dict(official, strict=True)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in official.items())


@pytest.mark.parametrize('variant', VARIANTS)
def test_outputs_match_official(variant):
    ref = official_outputs(variant)
    model = reference_model(variant)
    x = official_input(tuple(ref['input_shape']), 1)
    with torch.no_grad():
        feats = model.backbone(x)
        logits = model.decode_head(feats)
    assert len(feats) == 4
    for i, f in enumerate(feats):
        assert f.shape == ref[f'backbone_{i}'].shape
        assert rel_err(f, ref[f'backbone_{i}']) < TOLERANCE, f'backbone_{i}'
    assert logits.shape == ref['logits'].shape
    assert rel_err(logits, ref['logits']) < TOLERANCE


def test_a_changed_weight_changes_the_outputs():
    """The comparison is sensitive: another weight seed is far outside the tolerance."""
    ref = official_outputs('t')
    model = reference_model('t', seed=1)
    with torch.no_grad():
        logits = model.decode_head(model.backbone(official_input((1, 3, 256, 256), 1)))
    assert rel_err(logits, ref['logits']) > 1e-2


@pytest.mark.parametrize('variant', VARIANTS)
def test_parameter_totals_of_the_key_lists(variant):
    """The key lists are the documented ones (T 9.365 M, B 19.115 M, L 35.678 M parameters)."""
    # attention_biases: the ImageNet bias tables, kept in checkpoints but unused by the segmentation
    # model (it uses attention_biases_seg); not part of the documented totals
    buffers = ('running_mean', 'running_var', 'num_batches_tracked', 'attention_biases',
               'attention_bias_idxs', 'attention_bias_idxs_seg')
    total = sum(int(np.prod(shape)) for key, shape, _ in official_keys(variant)
                if key.rsplit('.', 1)[-1] not in buffers)
    assert round(total / 1e6, 3) == {'t': 9.365, 'b': 19.115, 'l': 35.678}[variant]


def test_a_missing_reference_file_fails(tmp_path, monkeypatch):
    import reference
    monkeypatch.setattr(reference, 'HERE', tmp_path)
    (tmp_path / 'SHA256SUMS').write_text('')
    with pytest.raises(FileNotFoundError):
        official_keys('t')


def test_an_altered_reference_file_fails(tmp_path, monkeypatch):
    import reference
    name = 'cgrseg-t_ade20k.keys.tsv'
    (tmp_path / name).write_text(reference.reference_file(name).read_text() + 'x\t1\tfloat32\n')
    (tmp_path / 'SHA256SUMS').write_text((reference.HERE / 'SHA256SUMS').read_text())
    monkeypatch.setattr(reference, 'HERE', tmp_path)
    with pytest.raises(AssertionError, match='sha256'):
        official_keys('t')
