"""ImageNet-pretrained EfficientFormerV2 weights for the CGRSeg backbones.

Sources: timm's copies on the Hugging Face hub (``timm/efficientformerv2_{arch}.snap_dist_in1k``)
or a local file, either timm's (``model.safetensors`` / ``.pth``) or the authors' original
``eformer_{arch}_450.pth``. Keys are converted to our backbone's names, shapes are checked against
the backbone, and the result is saved with the sha256 of its source.

As in the official training, the segmentation bias tables (``attention_biases_seg``) are not in
ImageNet checkpoints and start from zero; the ImageNet tables land in the legacy buffers.
"""
import re
from pathlib import Path

import torch

from cgrseg.errors import CGRSegError
from cgrseg.io import check_output_file, sha256_file, write_json, write_with
from cgrseg.layout import BACKBONE_WEIGHTS

HUB_REPO = 'timm/efficientformerv2_{arch}.snap_dist_in1k'
ARCH_NAMES = ('s0', 's1', 's2', 'l')
CLASSIFIER = ('norm.', 'head.', 'dist_head.', 'head_dist.')

# timm name -> official name, applied in order to keys inside one block / downsample layer
_TIMM_LEAF = [
    (r'mlp\.fc1\.conv\.', 'mlp.fc1.'), (r'mlp\.fc1\.bn\.', 'mlp.norm1.'),
    (r'mlp\.mid\.conv\.', 'mlp.mid.'), (r'mlp\.mid\.bn\.', 'mlp.mid_norm.'),
    (r'mlp\.fc2\.conv\.', 'mlp.fc2.'), (r'mlp\.fc2\.bn\.', 'mlp.norm2.'),
    (r'^ls1\.gamma$', 'layer_scale_1'), (r'^ls2\.gamma$', 'layer_scale_2'),
    (r'\.q\.local\.', '.q.local.0.'),
    (r'\.q\.proj\.conv\.', '.q.proj.0.'), (r'\.q\.proj\.bn\.', '.q.proj.1.'),
    (r'\.proj\.conv\.', '.proj.1.'), (r'\.proj\.bn\.', '.proj.2.'),
    (r'\.conv\.', '.0.'), (r'\.bn\.', '.1.'),
]


def _timm_block_key(rest):
    for pattern, repl in _TIMM_LEAF:
        rest = re.sub(pattern, repl, rest)
    return rest


def _timm_downsample_key(stage, rest):
    if rest.startswith('attn.'):
        return f'network.{2 * stage - 1}.{_timm_block_key(rest)}'
    asub = stage == 3
    rest = rest.replace('conv.conv.', 'conv.' if asub else 'proj.').replace('conv.bn.', 'bn.' if asub else 'norm.')
    return f'network.{2 * stage - 1}.{rest}'


def timm_to_official(key):
    """Map one timm EfficientFormerV2 key to the official/our name (None for the classifier)."""
    if key.startswith(CLASSIFIER):
        return None
    m = re.match(r'stem\.conv([12])\.(conv|bn)\.(.*)', key)
    if m:
        index = {('1', 'conv'): 0, ('1', 'bn'): 1, ('2', 'conv'): 3, ('2', 'bn'): 4}[m.group(1), m.group(2)]
        return f'patch_embed.{index}.{m.group(3)}'
    m = re.match(r'stages\.(\d)\.blocks\.(\d+)\.(.*)', key)
    if m:
        return f'network.{2 * int(m.group(1))}.{m.group(2)}.{_timm_block_key(m.group(3))}'
    m = re.match(r'stages\.(\d)\.downsample\.(.*)', key)
    if m:
        return _timm_downsample_key(int(m.group(1)), m.group(2))
    raise KeyError(key)


def convert_state_dict(state_dict, arch):
    """Convert a timm or original ImageNet state dict to our backbone's keys, checking every shape."""
    from .efficientformer_v2 import EfficientFormerV2
    target = EfficientFormerV2(arch=arch).state_dict()
    is_timm = any(k.startswith('stem.') for k in state_dict)
    out = {}
    for key, value in state_dict.items():
        try:
            new = timm_to_official(key) if is_timm else (None if key.startswith(CLASSIFIER) else key)
        except KeyError:
            new = key
        if new is None:
            continue
        if new not in target:
            raise CGRSegError(f'unexpected key {key[:80]!r} (as {new[:80]!r}) for EfficientFormerV2-{arch.upper()}')
        if new.startswith('network.') and 'layer_scale' in new and value.numel() == target[new].numel():
            value = value.reshape(target[new].shape)
        if tuple(value.shape) != tuple(target[new].shape):
            raise CGRSegError(f'{key}: shape {tuple(value.shape)} does not fit EfficientFormerV2-{arch.upper()} '
                           f'{new} {tuple(target[new].shape)}: wrong architecture?')
        out[new] = value
    needed = {k for k in target if not re.search(r'attention_bias(es_seg|_idxs)', k)}
    missing = sorted(needed - set(out))
    if missing:
        raise CGRSegError(f'checkpoint lacks {len(missing)} backbone tensors of EfficientFormerV2-{arch.upper()}, '
                       f'e.g. {missing[0]}')
    return out


def load_any(path):
    """The weights in a timm safetensors file or a torch checkpoint (read weights-only: a weights
    file is untrusted data), as a mapping of names to finite tensors."""
    from cgrseg.runner.checkpoints import check_weights, read
    path = Path(path)
    if not path.is_file():
        raise CGRSegError(f'{path}: file not found')
    if path.suffix == '.safetensors':
        try:
            from safetensors.torch import load_file
            ckpt = load_file(str(path))
        except Exception as err:
            raise CGRSegError(f'{path}: cannot read weights: {str(err).strip()[:200] or type(err).__name__}') from None
    else:
        ckpt = read(path)
    for key in ('state_dict', 'model', 'state_dict_ema'):
        if isinstance(ckpt, dict) and key in ckpt and isinstance(ckpt[key], dict):
            ckpt = ckpt[key]
            break
    check_weights(ckpt, path, what='the weights')
    return ckpt


def download(arch):
    """Fetch timm's safetensors from the Hugging Face hub (cached by huggingface_hub)."""
    repo = HUB_REPO.format(arch=arch)
    try:
        from huggingface_hub import hf_hub_download
        return Path(hf_hub_download(repo_id=repo, filename='model.safetensors'))
    except Exception as err:
        raise CGRSegError(f'cannot download {repo} from the Hugging Face hub ({type(err).__name__}: '
                       f'{str(err).splitlines()[0] if str(err) else ""}); offline? download it elsewhere '
                       f'and pass --from FILE (timm model.safetensors or the original eformer_{arch}_450.pth)') from err


def _converted(src, arch):
    """``convert_state_dict`` of the weights in ``src``; every error names ``src``."""
    try:
        return convert_state_dict(load_any(src), arch)
    except CGRSegError as err:
        if str(err).startswith(f'{src}: '):
            raise
        raise CGRSegError(f'{src}: {err}') from None


def prepare_pretrained(arch, out=None, source=None):
    """Write ``out`` (default ``checkpoints/efficientformerv2_{arch}.pth``) and ``out.json`` with sha256s."""
    if arch not in ARCH_NAMES:
        raise CGRSegError(f'unknown arch {arch!r}; one of {", ".join(ARCH_NAMES)}')
    out = Path(out or BACKBONE_WEIGHTS.format(arch=arch))
    record_path = out.with_suffix('.json')
    if record_path == out:
        raise CGRSegError(f'{out}: the weights cannot end in .json: their record is written there')
    for path in (out, record_path):
        check_output_file(path, [source])
    src = Path(source) if source else download(arch)
    state = _converted(src, arch)
    saved = {'state_dict': state, 'meta': {'arch': arch, 'source': str(src)}}
    write_with(out, lambda tmp: torch.save(saved, tmp))
    record = {'arch': arch, 'source': str(src), 'source_sha256': sha256_file(src),
              'hub_repo': None if source else HUB_REPO.format(arch=arch),
              'checkpoint': str(out), 'checkpoint_sha256': sha256_file(out), 'tensors': len(state)}
    write_json(record_path, record)
    return record


def add_parser(sub):
    p = sub.add_parser('pretrained', help='fetch + convert ImageNet EfficientFormerV2 weights for a backbone',
                       description=__doc__.split('\n\n')[0])
    p.add_argument('arch', help='backbone: s1 (CGRSeg-T), s2 (CGRSeg-B), l (CGRSeg-L), or s0')
    p.add_argument('--from', dest='source', help='local checkpoint instead of downloading from the hub')
    p.add_argument('--out', help='output .pth (default checkpoints/efficientformerv2_{arch}.pth)')
    p.set_defaults(func=lambda a: print(prepare_pretrained(a.arch, a.out, a.source)))
