"""ImageNet EfficientFormerV2 weights: timm/original key conversion, checks, offline behaviour."""
import os
import subprocess
import sys

import pytest
import torch

timm = pytest.importorskip('timm')

from cgrseg.errors import CGRSegError  # noqa: E402
from cgrseg.models.efficientformer_v2 import EfficientFormerV2  # noqa: E402
from cgrseg.io import sha256_file  # noqa: E402
from cgrseg.models.pretrained import convert_state_dict, prepare_pretrained  # noqa: E402


def random_timm(arch, seed=0):
    """timm's model with every float tensor random (so swapped norms or scales would show)."""
    model = timm.create_model(f'efficientformerv2_{arch}', pretrained=False)
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    for key, value in sd.items():
        if not value.is_floating_point():
            continue
        if key.endswith('attention_biases'):
            value.zero_()  # timm's ImageNet table; our segmentation table starts at zero too
        elif key.endswith('running_var'):
            value.copy_(0.5 + torch.rand(value.shape, generator=g))
        else:
            value.copy_(0.2 * torch.randn(value.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize('arch', ['s1', 's2', 'l'])
def test_timm_weights_give_timm_features(arch):
    ref = random_timm(arch)
    ours = EfficientFormerV2(arch=arch)
    missing, unexpected = ours.load_state_dict(convert_state_dict(ref.state_dict(), arch), strict=False)
    assert not unexpected
    assert all('attention_bias' in k for k in missing)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=4, intermediates_only=True)
        got = ours.eval()(x)
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e, rtol=1e-4, atol=1e-4)


def test_original_checkpoint_format_and_record(tmp_path):
    """An original-style checkpoint ({'model': official keys + classifier}) converts and is recorded."""
    backbone = EfficientFormerV2(arch='s1').state_dict()
    original = {k: v for k, v in backbone.items() if 'attention_biases_seg' not in k and 'idxs' not in k}
    original.update({'norm.weight': torch.ones(224), 'head.weight': torch.zeros(1000, 224),
                     'dist_head.weight': torch.zeros(1000, 224)})
    src = tmp_path / 'eformer_s1_450.pth'
    torch.save({'model': original}, src)
    record = prepare_pretrained('s1', out=tmp_path / 'out.pth', source=src)
    assert record['source_sha256'] == sha256_file(src)
    assert record['checkpoint_sha256'] == sha256_file(tmp_path / 'out.pth')
    saved = torch.load(tmp_path / 'out.pth', weights_only=False)['state_dict']
    assert not any(k.startswith(('head', 'dist_head', 'norm.')) for k in saved)
    assert (tmp_path / 'out.json').exists()


def test_wrong_architecture_is_one_clear_error(tmp_path):
    with pytest.raises(CGRSegError, match='shape'):
        convert_state_dict(random_timm('s1').state_dict(), 's2')


def test_offline_download_fails_clearly(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HOME=str(tmp_path / 'hf'))
    out = tmp_path / 'w.pth'
    proc = subprocess.run([sys.executable, '-m', 'cgrseg.cli', 'pretrained', 's1', '--out', str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('cgrseg pretrained: error: cannot download timm/efficientformerv2_s1.snap_dist_in1k')
    assert '--from' in last
    assert not out.exists()
