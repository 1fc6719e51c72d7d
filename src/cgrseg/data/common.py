"""Helpers shared by the dataset converters and the synthetic-archive writers."""
import functools
import io
import json
import multiprocessing
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import CGRSegError

# A synthetic archive carries this file (the official archives never do) at its dataset root.
MARKER = 'CGRSEG_SYNTHETIC.json'
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)   # fixed timestamps make synthetic archives byte-reproducible

_worker = {}   # per-process state set by the pool initializer (an open zip, the output root)


# ---------------------------------------------------------------- parallel conversion

def init_worker(archive=None, root=None):
    _worker['zip'] = open_zip(archive) if archive else None
    _worker['root'] = Path(root) if root else None


def worker_zip():
    return _worker['zip']


def worker_root():
    return _worker['root']


def parallel_map(fn, tasks, jobs, desc, initargs=()):
    """Yield ``fn(task)`` for every task (in any order) over ``jobs`` processes, with a progress bar.

    ``initargs`` go to :func:`init_worker` in each process. Errors raised by ``fn`` propagate.
    """
    bar = dict(total=len(tasks), desc=desc, unit='img', disable=None, file=sys.stderr)
    if jobs <= 1 or len(tasks) <= 1:
        init_worker(*initargs)
        yield from tqdm(map(fn, tasks), **bar)
        return
    chunksize = max(1, min(64, len(tasks) // (8 * jobs)))
    with multiprocessing.Pool(jobs, init_worker, initargs) as pool:
        yield from tqdm(pool.imap_unordered(fn, tasks, chunksize), **bar)


def collect(results):
    """Aggregate per-image ``(split, stem, histogram[, counters])`` results by split:
    ``({split: {'ids': sorted stems, 'hist': summed histogram}}, summed counters)``."""
    splits, counters = {}, {}
    for split, stem, hist, *extra in results:
        entry = splits.setdefault(split, {'ids': [], 'hist': np.zeros(256, dtype=np.int64)})
        entry['ids'].append(stem)
        entry['hist'] += hist
        for key, value in (extra[0] if extra else {}).items():
            counters[key] = counters.get(key, 0) + value
    for entry in splits.values():
        entry['ids'].sort()
    return splits, counters


def guarded(fn):
    """Report any unexpected error of a per-image task as a CGRSegError naming the task (task[1])."""
    @functools.wraps(fn)   # keeps module and name, so that the pool can pickle it by reference
    def run(task):
        try:
            return fn(task)
        except CGRSegError:
            raise
        except Exception as err:  # noqa: BLE001 -- any decoder error means a broken input file
            raise CGRSegError(f'{task[1]}: {type(err).__name__}: {err}') from None
    return run


def histogram(labels):
    return np.bincount(np.asarray(labels, dtype=np.uint8).ravel(), minlength=256)


def write_png(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(labels, dtype=np.uint8), mode='L').save(path, format='PNG')


def write_bytes(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def image_size(data, name):
    """(width, height) of encoded image bytes; only the header is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception as err:  # noqa: BLE001 -- PIL raises several unrelated types
        raise CGRSegError(f'{name}: not a readable image ({err})') from None


# ---------------------------------------------------------------- archives

def open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise CGRSegError(f'{path}: not a readable zip archive ({err})') from None


def read_member(archive, name):
    try:
        return archive.read(name)
    except KeyError:
        raise CGRSegError(f'{archive.filename}: missing {name}') from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CGRSegError(f'{archive.filename}: {name} is damaged ({err})') from None


def zip_marker(path, prefix=''):
    """The synthetic marker of the zip at ``path`` (under ``prefix``), or None for a real archive."""
    archive = open_zip(path)
    with archive:
        if prefix + MARKER not in archive.namelist():
            return None
        return parse_marker(read_member(archive, prefix + MARKER), f'{path}:{prefix}{MARKER}')


def tar_marker(path):
    """The marker if it is the first member of the tar at ``path`` (where synth puts it), else None."""
    try:
        with tarfile.open(path) as tar:
            first = tar.next()
            if first is None or Path(first.name).name != MARKER:
                return None
            return parse_marker(tar.extractfile(first).read(), f'{path}:{first.name}')
    except (tarfile.TarError, OSError, EOFError) as err:
        raise CGRSegError(f'{path}: not a readable tar archive ({err})') from None


def parse_marker(data, where):
    try:
        marker = json.loads(data)
        counts = marker['counts']
        if sorted(counts) != ['train', 'val'] or not all(isinstance(n, int) for n in counts.values()):
            raise ValueError('counts must be {train: N, val: N}')
    except (ValueError, KeyError, TypeError) as err:
        raise CGRSegError(f'{where}: broken synthetic marker ({err})') from None
    return marker


def marker_bytes(dataset, seed, counts):
    marker = {'generator': 'cgrseg synth', 'dataset': dataset, 'seed': seed, 'counts': counts,
              'note': 'synthetic data in the official archive format; never compare to the paper'}
    return (json.dumps(marker, indent=2) + '\n').encode()


class ZipWriter:
    """A zip whose bytes depend only on what is added (fixed timestamps and order)."""

    def __init__(self, path):
        self.zip = zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED)

    def add(self, name, data):
        info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self.zip.writestr(info, data)

    def close(self):
        self.zip.close()


class TarWriter:
    """An uncompressed tar whose bytes depend only on what is added."""

    def __init__(self, path):
        self.tar = tarfile.open(path, 'w', format=tarfile.USTAR_FORMAT)

    def add(self, name, data):
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def close(self):
        self.tar.close()


# ---------------------------------------------------------------- synthetic scenes

@functools.lru_cache(maxsize=None)
def palette(value):
    """A fixed colour per label value, so that colour predicts the class (learnable)."""
    rng = np.random.default_rng(1000 + int(value))
    return rng.integers(20, 236, size=3)


def scene(rng, shape, background, choices, forced=()):
    """A label map: ``background`` with 2-4 random rectangles/ellipses of ``choices``, then each
    ``forced`` label as a block in its own cell of a 3x3 grid (so it is always visible).

    Returns (labels, shapes) where shapes lists (label, boolean mask) in painting order.
    """
    h, w = shape
    labels = np.full(shape, background, dtype=np.int32)
    shapes = []
    yy, xx = np.mgrid[:h, :w]
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(h // 8, h // 3), rng.integers(w // 8, w // 3)
        if rng.random() < 0.5:
            mask = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        else:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        shapes.append((int(rng.choice(choices)), mask))
    cells = rng.permutation(9)[:len(forced)]
    for value, cell in zip(forced, cells):
        top, left = (cell // 3) * h // 3, (cell % 3) * w // 3
        mask = np.zeros(shape, dtype=bool)
        mask[top + 2:top + h // 3 - 2, left + 2:left + w // 3 - 2] = True
        shapes.append((int(value), mask))
    for value, mask in shapes:
        labels[mask] = value
    return labels, shapes


def render(rng, labels):
    """JPEG bytes of an image whose colours follow ``labels`` plus noise and a brightness shift."""
    colours = np.stack([palette(v) for v in range(int(labels.max()) + 1)])
    image = colours[labels].astype(np.float32)
    image += rng.normal(0, 12, size=image.shape) + rng.uniform(-20, 20)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, format='JPEG', quality=92)
    return buffer.getvalue()


def random_shape(rng):
    """(height, width) of a small synthetic image."""
    return int(rng.integers(96, 129)), int(rng.integers(96, 129))
