"""Writing, finding and reading the checkpoints of a work directory.

A checkpoint is written to a hidden temporary name, flushed to disk, renamed to ``iter_N.pth``
and only then pointed at by ``latest.pth`` (itself replaced atomically), so a kill at any moment
leaves either the previous checkpoint or the new one, never a truncated file under a real name.
On resume, a checkpoint that cannot be read (one written by an older version, a damaged disk) is
skipped with a warning for the next newest. Reading a checkpoint never runs code in it (``read``).
"""
import os
import re
from pathlib import Path

from cgrseg.errors import CGRSegError
from cgrseg.io import redact

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


# A checkpoint is untrusted data (docs/security.md): it is read with torch's weights-only unpickler,
# from a zip container checked first, so that reading it runs no code and costs about its size.
MAX_BYTES = 4 << 30           # a CGRSeg-L checkpoint with its optimizer state is about 0.43 GB
MAX_PICKLE_BYTES = 8 << 20    # data.pkl holds structure and metadata; tensor data lives in records
MAX_RECORDS = 100_000         # one record per tensor: about 3000 in a CGRSeg-L training checkpoint
REMOTE = 'remote checkpoints are not read: fetch the file, check it, and give its path'


class RefusedCheckpoint(CGRSegError):
    """A checkpoint that is readable but must not be used (it would run code, its weights are not
    finite, its resume state is malformed): an error, never a candidate to skip for an older one."""


def _check_container(path, size):
    """Refuse what torch.load would inflate beyond the file's size (a deflated record: a zip bomb),
    a pickle larger than metadata needs, or a directory of absurdly many records."""
    import zipfile
    if size > MAX_BYTES:
        raise CGRSegError(f'{path}: cannot read checkpoint: {size} bytes, more than the '
                          f'{MAX_BYTES >> 30} GiB any CGRSeg checkpoint needs')
    try:
        with open(path, 'rb') as f:
            end = zipfile._EndRecData(f)  # the directory's size and count, before parsing it
        if end is None:
            raise zipfile.BadZipFile('no zip directory')
        if end[zipfile._ECD_ENTRIES_TOTAL] > MAX_RECORDS:
            raise CGRSegError(f'{path}: cannot read checkpoint: {end[zipfile._ECD_ENTRIES_TOTAL]} '
                              f'records, more than {MAX_RECORDS}')
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise CGRSegError(f'{path}: cannot read checkpoint: not a torch checkpoint in zip format '
                          f'(as torch.save writes since torch 1.6; {first_line(err)})') from None
    if any(r.compress_type != zipfile.ZIP_STORED for r in records) \
            or sum(r.file_size for r in records) > size:
        raise CGRSegError(f'{path}: cannot read checkpoint: compressed records (torch.save never '
                          'compresses; they would expand beyond the file in memory)')
    pickled = [r for r in records if r.filename.endswith('/data.pkl')]
    if pickled and pickled[0].file_size > MAX_PICKLE_BYTES:
        raise CGRSegError(f'{path}: cannot read checkpoint: its data.pkl has {pickled[0].file_size} '
                          f'bytes, more than the {MAX_PICKLE_BYTES >> 20} MiB metadata needs')


def _unpickle_problem(err):
    """The line of a weights-only refusal that names what was refused, with the line after it where
    it only announces the reason (torch 2.6+: 'WeightsUnpickler error:', then 'Unsupported operand 130')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for at, line in enumerate(lines):
        if 'GLOBAL' in line or 'Unpickler error' in line:
            return ' '.join(lines[at:at + 2]) if line.endswith(':') else line
    return lines[0] if lines else type(err).__name__


def read(path, map_location='cpu'):
    """The object saved in the file at ``path``, read with ``torch.load(weights_only=True)``: tensors
    and plain data only, so that reading runs no code; one ``CGRSegError`` for anything else."""
    import pickle
    import torch
    path = Path(path)
    if not path.is_file():
        raise CGRSegError(f'{path}: no such checkpoint')
    size = path.stat().st_size
    if size == 0:
        raise CGRSegError(f'{path}: cannot read checkpoint: the file is empty')
    _check_container(path, size)
    try:
        return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        problem = _unpickle_problem(err)
        if 'GLOBAL' in problem:
            raise RefusedCheckpoint(f'{path}: refusing the checkpoint: it holds Python objects '
                                    f'that could run code when loaded ({problem}); only tensors '
                                    'and plain data are read') from None
        raise CGRSegError(f'{path}: cannot read checkpoint: {problem}') from None
    except Exception as err:  # truncated zip, pickle garbage, foreign format, allocation failure
        raise CGRSegError(f'{path}: cannot read checkpoint: {first_line(err)}') from None


def check_weights(state_dict, path, what='state_dict'):
    """A mapping of names to finite tensors, or one error naming the first problem."""
    import torch
    if not isinstance(state_dict, dict):
        raise CGRSegError(f'{path}: {what} is not a mapping of names to tensors '
                          f'({type(state_dict).__name__})')
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CGRSegError(f'{path}: {what} entry {str(key)[:80]!r} is not a named tensor '
                              f'({type(value).__name__})')
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise RefusedCheckpoint(f'{path}: {len(bad)} weight tensor(s) hold NaN or Inf (first: '
                                f'{bad[0][:80]}); refusing to use them')


def load(path):
    """The whole mmcv checkpoint dict (``state_dict`` of finite tensors, ``meta`` a dict), on the CPU."""
    ckpt = read(path)
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise CGRSegError(f'{path}: not an mmcv checkpoint (no state_dict)')
    check_weights(ckpt['state_dict'], path)
    if not isinstance(ckpt.get('meta') or {}, dict):
        raise CGRSegError(f'{path}: not an mmcv checkpoint (meta is not a dict)')
    return ckpt


def load_meta(path):
    """The ``meta`` dict of a checkpoint (iteration, classes, config), read on the CPU."""
    return load(path).get('meta') or {}


def first_line(err):
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _check_resume_meta(meta, path):
    for key in ('iter', 'epoch'):
        if type(meta.get(key)) is not int or meta[key] < 0:
            raise RefusedCheckpoint(f'{path}: meta[{key!r}] is not an iteration count '
                                    f'({meta.get(key)!r:.40}); not a checkpoint of cgrseg train')


def resumable(work_dir, warn):
    """(path, meta) of the newest readable checkpoint, or (None, None); ``warn(msg)`` for each skipped.

    An unreadable file (empty, truncated) is skipped for the next newest; one that must not be used
    (``RefusedCheckpoint``: code in it, NaN weights, a malformed iteration count) stops the run.
    """
    for path in candidates(work_dir):
        try:
            meta = load_meta(path)
        except RefusedCheckpoint:
            raise
        except CGRSegError as err:
            warn(f'skipping an unreadable checkpoint: {err}')
            continue
        _check_resume_meta(meta, path)
        return path, meta
    return None, None


def load_from_local_weights_only(filename, map_location=None):
    """mmcv's local checkpoint loader, weights-only (resume_from, load_from, Pretrained init_cfg)."""
    return read(filename, map_location or 'cpu')


def load_from_remote_refused(filename, map_location=None):
    raise CGRSegError(f'{redact(filename)}: {REMOTE}')   # the CLI redacts too; a library caller sees no token


def route_mmcv_loading():
    """Make every checkpoint mmcv reads for us go through ``read``: mmcv 1.7.2 calls torch.load
    without weights_only, and for URLs through torch.hub, which defaults to a full unpickler."""
    from mmcv.runner import CheckpointLoader
    for prefix in list(CheckpointLoader._schemes):  # mmcv's registry of schemes: no public listing
        loader = load_from_local_weights_only if prefix == '' else load_from_remote_refused
        CheckpointLoader.register_scheme(prefix, loader, force=True)


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
