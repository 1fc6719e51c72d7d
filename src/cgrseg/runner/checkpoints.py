"""Writing, finding and reading the checkpoints of a work directory.

A checkpoint is written to a hidden temporary name, flushed to disk, renamed to ``iter_N.pth``
and only then pointed at by ``latest.pth`` (itself replaced atomically), so a kill at any moment
leaves either the previous checkpoint or the new one, never a truncated file under a real name.
On resume, a checkpoint that cannot be read (one written by an older version, a damaged disk) is
skipped with a warning for the next newest.
"""
import os
import re
from pathlib import Path

from cgrseg.errors import CGRSegError

_ITER_CKPT = re.compile(r'iter_(\d+)\.pth$')
LATEST = 'latest.pth'
TMP_SUFFIX = '.tmp'


def completed_iters(meta_iter):
    """Optimizer steps in a checkpoint whose ``meta['iter']`` is ``meta_iter``.

    mmcv writes iter_k.pth after the k-th step but records iter = k - 1 (its counter is bumped
    after the hooks run).
    """
    return meta_iter + 1


def numbered(work_dir):
    """``iter_N.pth`` files of ``work_dir``, newest (highest N) first."""
    found = []
    for path in Path(work_dir).glob('iter_*.pth'):
        match = _ITER_CKPT.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def candidates(work_dir):
    """Checkpoints a rerun may resume from, in order of preference.

    ``latest.pth`` first (a dangling link -- its target deleted by max_keep_ckpts or by a workflow
    cleaning up a failed job -- is ignored), then every ``iter_N.pth``, newest first.
    """
    work_dir = Path(work_dir)
    latest = work_dir / LATEST
    order = [latest.resolve()] if latest.exists() else []
    return order + [p for p in numbered(work_dir) if p.resolve() not in order]


def latest_checkpoint(work_dir):
    """The preferred resume candidate, or None in a fresh work directory (not checked for readability)."""
    found = candidates(work_dir)
    return found[0] if found else None


def load(path, weights_only=False):
    """The whole checkpoint dict, read on the CPU; one clear error for anything unreadable.

    ``weights_only=True`` reads it as mmcv's resume does (torch's safe unpickler).
    """
    import torch
    path = Path(path)
    if not path.is_file():
        raise CGRSegError(f'{path}: no such checkpoint')
    if path.stat().st_size == 0:
        raise CGRSegError(f'{path}: cannot read checkpoint: the file is empty')
    try:
        ckpt = torch.load(str(path), map_location='cpu', weights_only=weights_only)
    except Exception as err:  # truncated zip, pickle garbage, foreign format
        raise CGRSegError(f'{path}: cannot read checkpoint: {first_line(err)}') from None
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise CGRSegError(f'{path}: not an mmcv checkpoint (no state_dict)')
    return ckpt


def load_meta(path, weights_only=False):
    """The ``meta`` dict of a checkpoint (iteration, classes, config), read on the CPU."""
    meta = load(path, weights_only).get('meta') or {}
    if not isinstance(meta, dict):
        raise CGRSegError(f'{path}: not an mmcv checkpoint (meta is not a dict)')
    return meta


def first_line(err):
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def resumable(work_dir, warn):
    """(path, meta) of the newest readable checkpoint, or (None, None); ``warn(msg)`` for each skipped."""
    for path in candidates(work_dir):
        try:
            return path, load_meta(path, weights_only=True)
        except CGRSegError as err:
            warn(f'skipping an unreadable checkpoint: {err}')
    return None, None


def remove_stale_temporaries(work_dir):
    """Temporary files of checkpoints whose writer was killed (call while holding the work dir lock)."""
    for path in Path(work_dir).glob(f'.*.pth.*{TMP_SUFFIX}'):
        path.unlink(missing_ok=True)


def _fsync(path):
    """Flush a file's data, or a directory's entries (a rename), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path):
    return path.with_name(f'.{path.name}.{os.getpid()}{TMP_SUFFIX}')


def save_atomically(write, path):
    """``write(tmp)`` then fsync and rename onto ``path``; a failed write leaves nothing behind."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        write(str(tmp))
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as err:
        raise CGRSegError(f'{path}: cannot write checkpoint: {err.strerror or err}') from None
    except RuntimeError as err:  # torch's own file writer reports a full disk this way
        raise CGRSegError(f'{path}: cannot write checkpoint: {first_line(err)}') from None
    finally:
        tmp.unlink(missing_ok=True)


def point_latest(path):
    """Make ``latest.pth`` next to ``path`` a relative link to it, replacing the old link atomically."""
    path = Path(path)
    link = path.with_name(LATEST)
    tmp = _temporary(link)
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(path.name, tmp)
        os.replace(tmp, link)
        _fsync(path.parent)
    except OSError as err:
        raise CGRSegError(f'{link}: cannot update the link: {err.strerror or err}') from None
    finally:
        tmp.unlink(missing_ok=True)


def prune(work_dir, keep):
    """Delete all but the newest ``keep`` ``iter_N.pth`` (``keep`` <= 0: keep all)."""
    if keep > 0:
        for path in numbered(work_dir)[keep:]:
            path.unlink(missing_ok=True)
