"""Finding and reading the checkpoints mmcv writes into a work directory."""
import re
from pathlib import Path

from cgrseg.errors import CGRSegError

_ITER_CKPT = re.compile(r'iter_(\d+)\.pth$')


def completed_iters(meta_iter):
    """Optimizer steps in a checkpoint whose ``meta['iter']`` is ``meta_iter``.

    mmcv writes iter_k.pth after the k-th step but records iter = k - 1 (its counter is bumped
    after the hooks run).
    """
    return meta_iter + 1


def latest_checkpoint(work_dir):
    """The checkpoint a rerun should resume from, or None in a fresh work directory.

    mmcv points ``latest.pth`` at a checkpoint only after writing it completely, so it wins; a
    dangling link (its target deleted, e.g. by max_keep_ckpts or by a workflow cleaning up a failed
    job's outputs) or a missing one falls back to the highest ``iter_N.pth``.
    """
    work_dir = Path(work_dir)
    latest = work_dir / 'latest.pth'
    if latest.exists():
        return latest.resolve()
    numbered = []
    for path in work_dir.glob('iter_*.pth'):
        match = _ITER_CKPT.search(path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    return max(numbered)[1] if numbered else None


def load_meta(path):
    """The ``meta`` dict of a checkpoint (iteration, classes, config), read on the CPU."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise CGRSegError(f'{path}: no such checkpoint')
    try:
        ckpt = torch.load(str(path), map_location='cpu', weights_only=False)
    except Exception as err:
        raise CGRSegError(f'{path}: cannot read checkpoint: {str(err).splitlines()[0]}') from err
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise CGRSegError(f'{path}: not an mmcv checkpoint (no state_dict)')
    return ckpt.get('meta') or {}
