"""Helpers shared by the dataset converters and the synthetic-archive writers."""
import errno
import functools
import io
import json
import shutil
import sys
import tarfile
import warnings
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import CGRSegError
from ..io import parse_json

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
    """Yield ``fn(task)`` for every task (in task order) over ``jobs`` processes, with a progress bar.

    ``initargs`` go to :func:`init_worker` in each process. The first error raised by ``fn`` propagates
    once the chunks already started have ended (the rest are cancelled); a worker that dies is an error.
    Not multiprocessing.Pool: its terminate() kills workers that may hold the result queue's lock, and
    then waits for that lock forever (seen after a bad image with images left), and it waits forever
    for the results of a worker killed for memory.
    """
    bar = dict(total=len(tasks), desc=desc, unit='img', disable=None, file=sys.stderr)
    if jobs <= 1 or len(tasks) <= 1:
        init_worker(*initargs)
        yield from tqdm(map(fn, tasks), **bar)
        return
    chunksize = max(1, min(64, len(tasks) // (8 * jobs)))
    pool = ProcessPoolExecutor(jobs, initializer=init_worker, initargs=initargs)
    try:
        yield from tqdm(pool.map(fn, tasks, chunksize=chunksize), **bar)
    except BrokenProcessPool:
        raise CGRSegError(f'{desc}: a conversion process ended abruptly (killed, or out of memory); '
                          'nothing was kept') from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
        except OSError as err:
            where = worker_root().parent if worker_root() else task[1]
            raise disk_error(err, where) or CGRSegError(
                f'{task[1]}: {type(err).__name__}: {one_line(err)}') from None
        except Exception as err:  # noqa: BLE001 -- any decoder error means a broken input file
            raise CGRSegError(f'{task[1]}: {type(err).__name__}: {one_line(err)}') from None
    return run


def histogram(labels):
    """Counts of each value 0..255 of a uint8 label map, in slices (bincount widens to int64)."""
    flat = np.asarray(labels, dtype=np.uint8).ravel()
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, flat.size, SLICE):
        counts += np.bincount(flat[start:start + SLICE], minlength=256)
    return counts


# ---------------------------------------------------------------- limits and confinement

# Limits that no image of the three datasets comes near (COCO <= 640 px, VOC <= 500 px, ADE20K
# challenge images a few Mpx) and that keep one worker's working set far below ~300 MB.
MAX_PIXELS = 4096 * 4096          # per image or label map
MAX_MEMBER_BYTES = 64 << 20       # one image, label map or .mat file, as stored (decompressed)
MAX_TEXT_BYTES = 16 << 20         # a text copied as it is: objectInfo150.txt, sceneCategories.txt
MAX_LIST_BYTES = 2 << 20          # a text that is parsed: a split list (COCO: 261 kB), a marker
SLICE = 1 << 20                   # elements processed at a time in the label maps
# Images and .mat files hardly compress, so an official zip expands to about its own size; a zip
# that declares more than this many times its size (and over EXPANSION_FLOOR) is a zip bomb.
MAX_EXPANSION = 10
EXPANSION_FLOOR = 1 << 30
# zipfile reads the whole central directory and keeps an object per member (~0.3 kB), in every
# worker; the real ADE20K zip has ~44,500 members and a ~6 MB directory. A tar is read a header at
# a time, but a GNU long name or a PAX header is read whole (the real VOC tar's names are < 100 B).
MAX_MEMBERS = 100_000
MAX_DIRECTORY_BYTES = 16 << 20
MAX_TAR_HEADER_BYTES = 64 << 10
MAX_HEADER_CHAIN = 4              # extended headers (PAX, long name, long link) before one member
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def plain_name(name, where):
    """``name`` if it is a single file name (so ``root / name`` stays under root), else an error."""
    if (not isinstance(name, str) or name in ('', '.', '..') or '/' in name or '\\' in name
            or '\0' in name or not name.isprintable()):
        raise CGRSegError(f'{where}: {name!r} is not a plain file name (it would be written outside '
                          'the output folder)')
    return name


def member_problem(name):
    """Why an archive member name is hostile (absolute, or '..' anywhere), or None."""
    if name.startswith('/') or '\0' in name or '..' in PurePosixPath(name).parts:
        return 'escapes the archive root (absolute or ..)'
    return None


def check_members(path, names):
    for name in names:
        problem = member_problem(name)
        if problem:
            raise CGRSegError(f'{path}: member {name!r} {problem}')


def one_line(text):
    return ' '.join(str(text).split())


def disk_error(err, where):
    """A CGRSegError for an OSError raised while writing (full disk, quota, read-only, denied)."""
    if err.errno not in WRITE_ERRNOS:
        return None
    return CGRSegError(f'{where}: cannot write: {err.strerror} (nothing was kept; free space or fix '
                       'the permissions and run again)')


def write_png(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(labels, dtype=np.uint8), mode='L').save(path, format='PNG')


def write_bytes(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def image_size(source, name, decode=False):
    """(width, height) of an encoded image (bytes or a path). Its header is read first, refusing
    more than MAX_PIXELS; with ``decode``, every pixel is then decoded too, so that a truncated or
    damaged image is refused here, naming it, and never reaches training or evaluation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                check_pixels(img.size, name)
                if decode:
                    img.load()
                return img.size
    except CGRSegError:
        raise
    except Image.DecompressionBombError as err:
        raise CGRSegError(f'{name}: {one_line(err)} (more than {MAX_PIXELS} pixels)') from None
    except Exception as err:  # noqa: BLE001 -- PIL raises several unrelated types
        raise CGRSegError(f'{name}: not a readable image ({one_line(err)})') from None


def check_pixels(size, name):
    width, height = size
    if width * height > MAX_PIXELS:
        raise CGRSegError(f'{name}: {width}x{height} is {width * height} pixels, more than the '
                          f'{MAX_PIXELS} an image of these datasets may have')


# ---------------------------------------------------------------- archives

ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError,
              ValueError)   # ValueError: UnicodeDecodeError of a member name flagged as UTF-8


def open_zip(path):
    """The zip at ``path``, after refusing hostile member names."""
    problem = zip_directory_problem(path)
    if problem:
        raise CGRSegError(f'{path}: {problem}')
    try:
        archive = zipfile.ZipFile(path)
    except UnicodeDecodeError as err:
        raise CGRSegError(f'{path}: not a readable zip archive (a member name is not UTF-8 although '
                          f'flagged so: {err.reason} at byte {err.start})') from None
    except ZIP_ERRORS as err:
        raise CGRSegError(f'{path}: not a readable zip archive ({one_line(err)})') from None
    check_members(path, archive.namelist())
    declared = sum(info.file_size for info in archive.infolist())
    limit = max(EXPANSION_FLOOR, MAX_EXPANSION * Path(path).stat().st_size)
    if declared > limit:
        archive.close()
        raise CGRSegError(f'{path}: its members declare {declared} bytes, more than {limit} '
                          f'({MAX_EXPANSION} times the archive; a zip bomb?)')
    return archive


def zip_directory_problem(path):
    """Why zipfile should not read the central directory of the zip at ``path``, or None: more
    than MAX_DIRECTORY_BYTES, or more than MAX_MEMBERS records (zipfile makes an object of each).
    The records are counted by their signatures, not taken from the end record, which may lie."""
    try:
        with open(path, 'rb') as f:
            end = zipfile._EndRecData(f)
            if end is None:
                return None   # not a zip: zipfile says so
            size = end[zipfile._ECD_SIZE]
            if size > MAX_DIRECTORY_BYTES:
                return (f'its central directory has {size} bytes, more than the '
                        f'{MAX_DIRECTORY_BYTES} a dataset archive needs')
            start = end[zipfile._ECD_LOCATION] - size
            if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
                start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
            f.seek(max(start, 0))
            records = max(end[zipfile._ECD_ENTRIES_TOTAL], f.read(size).count(b'PK\x01\x02'))
    except ZIP_ERRORS as err:
        return f'not a readable zip archive ({one_line(err)})'
    if records > MAX_MEMBERS:
        return f'{records} members, more than the {MAX_MEMBERS} a dataset archive has'
    return None


def member_info(archive, name, limit):
    """The ZipInfo of ``name``, refusing a declared size above ``limit`` before reading anything."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise CGRSegError(f'{archive.filename}: missing {name}') from None
    if info.file_size > limit:
        raise CGRSegError(f'{archive.filename}:{name} declares {info.file_size} bytes, more than '
                          f'the {limit} such a member may have')
    return info


def read_member(archive, name, limit=MAX_MEMBER_BYTES):
    """The bytes of member ``name`` (at most ``limit``; zipfile never returns more than declared)."""
    info = member_info(archive, name, limit)
    try:
        with archive.open(info) as f:
            return f.read(limit)
    except ZIP_ERRORS as err:
        raise CGRSegError(f'{archive.filename}: {name} is damaged ({one_line(err)})') from None


def copy_member(archive, name, path, limit=MAX_MEMBER_BYTES):
    """Stream member ``name`` into the file ``path`` (never whole in memory)."""
    info = member_info(archive, name, limit)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(info) as fin, open(path, 'wb') as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except OSError as err:
        if err.errno in WRITE_ERRNOS:
            raise
        raise CGRSegError(f'{archive.filename}: {name} is damaged ({one_line(err)})') from None
    except ZIP_ERRORS as err:
        raise CGRSegError(f'{archive.filename}: {name} is damaged ({one_line(err)})') from None


def read_text(archive, name):
    """A text member (a split list) decoded as UTF-8, at most MAX_LIST_BYTES (each line becomes
    an object: a deflated list of millions of short lines would expand in memory)."""
    try:
        return read_member(archive, name, MAX_LIST_BYTES).decode()
    except UnicodeDecodeError as err:
        raise CGRSegError(f'{archive.filename}: {name} is not UTF-8 text ({err.reason} at byte '
                          f'{err.start})') from None


def zip_marker(path, prefix=''):
    """The synthetic marker of the zip at ``path`` (under ``prefix``), or None for a real archive."""
    archive = open_zip(path)
    with archive:
        if prefix + MARKER not in archive.namelist():
            return None
        data = read_member(archive, prefix + MARKER, MAX_LIST_BYTES)
        return parse_marker(data, f'{path}:{prefix}{MARKER}')


class RefusedTarHeader(tarfile.HeaderError):
    """A tar header that is refused before it costs memory (reported as an unreadable tar)."""


class BoundedTarInfo(tarfile.TarInfo):
    """A tar header reader that refuses, before reading them, what tarfile would hold in memory
    whole: a GNU long name/link or a PAX header over MAX_TAR_HEADER_BYTES, a chain of more than
    MAX_HEADER_CHAIN such headers (tarfile recurses once per header), and sparse members (whose
    maps tarfile reads block after block)."""

    def _proc_gnulong(self, tar):
        return self._extended(tar, super()._proc_gnulong)

    def _proc_pax(self, tar):
        return self._extended(tar, super()._proc_pax)

    def _extended(self, tar, proc):
        if self.size > MAX_TAR_HEADER_BYTES:
            raise RefusedTarHeader(f'an extended header (long member name or PAX record) of '
                                   f'{self.size} bytes, more than the {MAX_TAR_HEADER_BYTES} allowed')
        tar.header_chain = getattr(tar, 'header_chain', 0) + 1
        try:
            if tar.header_chain > MAX_HEADER_CHAIN:
                raise RefusedTarHeader(f'more than {MAX_HEADER_CHAIN} extended headers in a row')
            return proc(tar)
        finally:
            tar.header_chain -= 1

    def _sparse(self, *args):
        raise RefusedTarHeader('a sparse member (a dataset archive has none)')

    _proc_sparse = _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _sparse


def open_tar(path):
    """The uncompressed tar at ``path`` (as the official VOC tar), read with BoundedTarInfo."""
    return tarfile.open(path, 'r:', tarinfo=BoundedTarInfo)


def tar_marker(path):
    """The marker if it is the first member of the tar at ``path`` (where synth puts it), else None."""
    try:
        with open_tar(path) as tar:
            first = tar.next()
            if first is None or Path(first.name).name != MARKER or not first.isfile():
                return None
            if first.size > MAX_LIST_BYTES:
                raise CGRSegError(f'{path}:{first.name} declares {first.size} bytes, more than '
                                  f'the {MAX_LIST_BYTES} a marker may have')
            return parse_marker(tar.extractfile(first).read(), f'{path}:{first.name}')
    except (tarfile.TarError, OSError, EOFError) as err:
        raise CGRSegError(f'{path}: not a readable tar archive ({one_line(err)})') from None


def parse_marker(data, where):
    marker = parse_json(data, where, MAX_LIST_BYTES)
    try:
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
