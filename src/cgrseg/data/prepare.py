"""``cgrseg prepare``: convert downloaded archives into mmseg's layout under OUT, check them, and
write ``OUT/<dataset>.manifest.json`` last (the marker that the data is ready).

The dataset folder is built next to its final place and renamed into it only when every image
converted and every count matched; on any error nothing new is left under OUT.
"""
import contextlib
import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import CGRSegError
from ..io import atomic_dir, check_output_dir, claim_output_dir, read_json
from ..layout import DATASETS
from . import sources as src
from .common import disk_error, one_line

MANIFEST_VERSION = 1


def module(dataset):
    return importlib.import_module(f'cgrseg.data.{dataset}')


def manifest_path(out, dataset):
    return Path(out) / f'{dataset}.manifest.json'


def _only_manifests(folder):
    """A folder holding nothing but manifests of ours (an unmarked one is rebuilt, never trusted)."""
    names = {manifest_path(folder, d).name for d in DATASETS}
    return all(p.is_file() and p.name in names for p in folder.iterdir())


def prepare(dataset, raw, out, sources=None, jobs=None, force=False):
    spec = module(dataset)
    raw, out = Path(raw), Path(out)
    paths = [_archive(raw, dataset, name) for name in spec.ARCHIVES]
    archives = {p.name: _fingerprint(p) for p in paths}
    manifest = manifest_path(out, dataset)
    check_output_dir(out, 'prepare', inputs=(raw, sources), recognised=_only_manifests)
    if not force and _up_to_date(manifest, out / spec.DATA_ROOT, archives):
        print(f'{manifest}: up to date (same archives); nothing to do', file=sys.stderr)
        return manifest
    marker = spec.read_marker(paths)
    expected = marker['counts'] if marker else _real_counts(dataset, sources, raw, archives)
    try:
        with _new_output(out / spec.DATA_ROOT, manifest) as (root, manifest_tmp):
            splits, origins, notes = spec.convert(paths, root, jobs or _cpu_count())
            for split, count in expected.items():
                found = len(splits.get(split, {}).get('ids', ()))
                if found != count:
                    raise CGRSegError(f'{origins[split]}: {found} {split} images, expected {count}')
            doc = _manifest(dataset, spec, marker, archives, splits, notes)
            manifest_tmp.write_text(json.dumps(doc, indent=2) + '\n')
            with contextlib.suppress(FileNotFoundError):
                manifest.unlink()   # from here on the old manifest would describe new data
    except OSError as err:   # writing failed: full disk, quota, permissions
        raise disk_error(err, out) or CGRSegError(
            f'{err.filename or out}: {err.strerror or one_line(err)}') from None
    return manifest


def _archive(raw, dataset, name):
    path = raw / name
    if not path.is_file():
        raise CGRSegError(f'{raw}: no {name} (RAW must be the folder that `cgrseg download {dataset} '
                       '--dest RAW` filled)')
    return path


def _fingerprint(path):
    digests = src.file_digests(path, src.ALGORITHMS)
    return {'bytes': path.stat().st_size, **digests}


def _up_to_date(manifest, root, archives):
    try:
        old = read_json(manifest, 'manifest')
        recorded = {name: a.get('sha256') for name, a in old.get('archives', {}).items()}
        version = old.get('manifest_version')
    except (CGRSegError, AttributeError):   # missing, unreadable, or not the manifest's shape
        return False
    return (root.is_dir() and version == MANIFEST_VERSION
            and recorded == {name: a['sha256'] for name, a in archives.items()})


def _real_counts(dataset, sources, raw, archives):
    """Expected counts of a real dataset, after checking the archives against the data file (or,
    where it pins no checksum, against the sha256 that `cgrseg download` recorded in RAW)."""
    path = Path(sources) if sources else src.default_path()
    entry = src.dataset_entry(src.load(path), dataset, path)
    for archive in entry['archives']:
        expected = archive['checksum']
        record = raw / f'{archive["name"]}.sha256'
        advice = ''
        if expected is None and record.is_file():
            expected = f'sha256:{src.read_record(record)}'
            advice = (f' (recorded in {record}; if that record is the wrong one, delete it and run '
                      '`cgrseg download` again)')
        pinned = src.parse_checksum(expected)
        got = archives.get(archive['name'])
        if pinned and got and got[pinned[0]] != pinned[1]:
            raise CGRSegError(f'{archive["name"]}: checksum mismatch: expected {expected}, '
                           f'got {pinned[0]}:{got[pinned[0]]}{advice}')
    return entry['counts']


@contextlib.contextmanager
def _new_output(root, manifest):
    """Yield (a temporary folder that becomes ``root``, a temporary file that becomes ``manifest``):
    both take their names only on success; on failure they and the folders created for them go."""
    created = [p for p in (root.parent, *root.parent.parents) if not p.exists()]
    manifest_tmp = manifest.with_name(f'.{manifest.name}.tmp')
    try:
        with atomic_dir(root, 'prepare') as tmp:
            yield tmp, manifest_tmp
        claim_output_dir(manifest.parent, 'prepare')
        os.replace(manifest_tmp, manifest)
    except BaseException:
        with contextlib.suppress(OSError):
            manifest_tmp.unlink()
        for folder in created:   # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _manifest(dataset, spec, marker, archives, splits, notes):
    return {
        'manifest_version': MANIFEST_VERSION,
        'dataset': dataset,
        'synthetic': marker is not None,
        'synthetic_marker': marker,
        'data_root': spec.DATA_ROOT,
        'num_classes': spec.NUM_CLASSES,
        'reduce_zero_label': True,
        'archives': {name: {'bytes': a['bytes'], 'sha256': a['sha256']}
                     for name, a in archives.items()},
        'splits': {split: _split_summary(spec, split, splits.get(split)) for split in spec.LAYOUT},
        'notes': notes,
    }


def _split_summary(spec, split, entry):
    ids = entry['ids'] if entry else []
    hist = entry['hist'] if entry else np.zeros(256, dtype=np.int64)
    values = [int(v) for v in np.flatnonzero(hist)]
    return {
        **spec.LAYOUT[split],
        'count': len(ids),
        # sha256 of the image ids, sorted, one per line ("\n"-terminated): for Pascal Context this
        # is the written split file; for the others the list of images that the split contains
        'list_sha256': hashlib.sha256(''.join(f'{i}\n' for i in ids).encode()).hexdigest(),
        'label_values': values,                                   # as stored on disk
        'classes_present': [v - 1 for v in values if v >= 1],     # after reduce_zero_label
        'pixels': int(hist.sum()),
        'ignored_pixels': int(hist[0]),
    }


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
