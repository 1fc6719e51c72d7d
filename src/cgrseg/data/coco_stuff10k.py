"""COCO-Stuff-10k v1.1 (cocostuff-10k-v1.1.zip): ``images/<id>.jpg``, ``annotations/<id>.mat``
(label map in field ``S``: 0 = unlabeled, 1..182), ``imageLists/{train,test}.txt``. Converted as
mmseg 0.30's ``coco_stuff10k.py`` does: ``images/{train2014,test2014}/<id>.jpg`` and
``annotations/{train2014,test2014}/<id>_labelTrainIds.png`` with the 182 -> 171 class mapping."""
import io
import struct
import zlib

import numpy as np
from scipy.io import loadmat, savemat

from ..errors import CGRSegError
from . import common
from .labels import COCO_MAX_ID, COCO_NUM_CLASSES, COCO_UNUSED_IDS, coco_stuff_lut

ARCHIVES = ('cocostuff-10k-v1.1.zip',)
DATA_ROOT = 'coco_stuff10k'
NUM_CLASSES = COCO_NUM_CLASSES
LISTS = {'train': 'imageLists/train.txt', 'val': 'imageLists/test.txt'}
FOLDERS = {'train': 'train2014', 'val': 'test2014'}
LAYOUT = {split: {'img_dir': f'images/{folder}', 'ann_dir': f'annotations/{folder}', 'split': None}
          for split, folder in FOLDERS.items()}
SUFFIX = '_labelTrainIds.png'
LUT = coco_stuff_lut()
MAX_S_BYTES = 32 << 20   # a decoded label map (COCO images are at most 640x640)
MI_MATRIX, MI_COMPRESSED = 14, 15
MAT_ITEMSIZE = {6: 8, 7: 4, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4, 13: 4, 14: 8, 15: 8}   # class -> bytes


def read_marker(paths):
    return common.zip_marker(paths[0])


def convert(paths, root, jobs):
    archive = common.open_zip(paths[0])
    with archive:
        names = set(archive.namelist())
        if common.MARKER in names:
            common.copy_member(archive, common.MARKER, root / common.MARKER, common.MAX_LIST_BYTES)
        tasks = [task for split in LISTS for task in _tasks(archive, names, split)]
    _no_overlap(paths[0], tasks)
    splits, _ = common.collect(
        common.parallel_map(_convert_one, tasks, jobs, 'coco_stuff10k', (paths[0], root)))
    return splits, {split: f'{paths[0]}:{name}' for split, name in LISTS.items()}, {}


def _tasks(archive, names, split):
    path, listed = archive.filename, LISTS[split]
    if listed not in names:
        raise CGRSegError(f'{path}: missing split list {listed}')
    ids = [line.strip() for line in common.read_text(archive, listed).splitlines()]
    ids = [i for i in ids if i]
    if len(set(ids)) != len(ids):
        raise CGRSegError(f'{path}: {listed} lists an image twice')
    for stem in ids:
        # an id names files under OUT: refuse '../x', '/abs/x' before looking for its members
        common.plain_name(stem, f'{path}: {listed}')
        for member in (f'images/{stem}.jpg', f'annotations/{stem}.mat'):
            if member not in names:
                raise CGRSegError(f'{path}: {listed} lists {stem} but {member} is missing')
    return [(split, f'{path}:annotations/{stem}.mat', stem) for stem in ids]


def _no_overlap(path, tasks):
    """An id in both lists would put a validation image into training."""
    seen = {}
    for split, _, stem in tasks:
        if seen.setdefault(stem, split) != split:
            raise CGRSegError(f'{path}: {stem} is in {LISTS[seen[stem]]} and {LISTS[split]} '
                              '(the splits overlap)')


@common.guarded
def _convert_one(task):
    split, name, stem = task
    archive, root = common.worker_zip(), common.worker_root()
    image_path = root / 'images' / FOLDERS[split] / f'{stem}.jpg'
    common.copy_member(archive, f'images/{stem}.jpg', image_path)
    width, height = common.image_size(image_path, f'{archive.filename}:images/{stem}.jpg')
    raw = label_field(common.read_member(archive, f'annotations/{stem}.mat'), name, (height, width))
    labels = map_labels(raw, name)
    common.write_png(root / 'annotations' / FOLDERS[split] / f'{stem}{SUFFIX}', labels)
    return split, stem, common.histogram(labels)


def label_field(data, name, shape=None):
    """Field ``S`` of a .mat file; its declared shape is checked (against ``shape``, the image's
    (height, width), and the size limits) before it is decoded."""
    try:
        header = mat_headers(data)
        if 'S' not in header:
            fields = ', '.join(k for k in header if not k.startswith('__')) or 'none'
            raise CGRSegError(f'{name}: no label field S (fields: {fields})')
        size, itemsize = header['S']
        if len(size) == 2:
            common.check_pixels(size[::-1], f'{name}: S')
            if size[0] * size[1] * itemsize > MAX_S_BYTES:
                raise CGRSegError(f'{name}: S declares {size[0] * size[1] * itemsize} bytes, more '
                                  f'than the {MAX_S_BYTES} a label map may have')
        if shape is not None and tuple(size) != shape:
            raise CGRSegError(f'{name}: S is {size[1]}x{size[0]} for a {shape[1]}x{shape[0]} image')
        raw = loadmat(io.BytesIO(data), variable_names=['S'])['S']
    except (ValueError, TypeError, NotImplementedError, OSError, IndexError, struct.error,
            zlib.error) as err:
        raise CGRSegError(f'{name}: not a readable MATLAB file ({common.one_line(err)})') from None
    if raw.ndim != 2 or raw.dtype.kind not in 'iuf':
        raise CGRSegError(f'{name}: S must be a 2-D map of whole-number labels, not {raw.dtype} '
                          f'{raw.shape}')
    return raw


def mat_headers(data):
    """{variable: (shape, bytes per element)} of a MATLAB 5 file, from the array headers only.

    scipy's own header reader (whosmat) inflates a compressed variable whole; this inflates only
    the first bytes of each. Layout: a 128-byte file header, then elements (tag: type, size);
    a compressed element (15) holds a matrix (14): flags (class), dimensions, name."""
    order = {b'IM': '<', b'MI': '>'}.get(data[126:128])
    if len(data) < 128 or order is None:
        raise ValueError('no MATLAB 5 header')
    found, position = {}, 128
    while position + 8 <= len(data):
        kind, size = struct.unpack_from(order + 'II', data, position)
        body = data[position + 8:position + 8 + size]
        position += 8 + (size if kind == MI_COMPRESSED else -(-size // 8) * 8)
        if kind == MI_COMPRESSED:
            body, kind = zlib.decompressobj().decompress(body, 4096), MI_MATRIX
            kind, size = struct.unpack_from(order + 'II', body)
            body = body[8:]
        if kind == MI_MATRIX and len(body) >= 16:
            name, shape, itemsize = _matrix_header(body, order)
            found[name] = (shape, itemsize)
    return found


def _matrix_header(body, order):
    flags = struct.unpack_from(order + 'I', body, 8)[0]
    _, size = struct.unpack_from(order + 'II', body, 16)
    shape = struct.unpack_from(f'{order}{size // 4}i', body, 24)
    position = 24 + -(-size // 8) * 8
    small, = struct.unpack_from(order + 'I', body, position)
    if small >> 16:   # the "small element" form: size in the upper half, data in the next 4 bytes
        name = body[position + 4:position + 4 + (small >> 16)]
    else:
        _, length = struct.unpack_from(order + 'II', body, position)
        name = body[position + 8:position + 8 + length]
    return name.decode('latin-1'), tuple(shape), MAT_ITEMSIZE.get(flags & 0xFF, 8)


def map_labels(raw, name):
    """Raw COCO-Stuff ids -> on-disk train ids (1..171, 0 unlabeled); unknown ids are an error.

    Works in slices of rows, so that a label map stored as double never gets wider copies."""
    out = np.empty(raw.shape, dtype=np.uint8)
    rows = max(1, common.SLICE // max(1, raw.shape[1]))
    for top in range(0, raw.shape[0], rows):
        out[top:top + rows] = _map_slice(raw[top:top + rows], name)
    return out


def _map_slice(raw, name):
    # MATLAB may store labels as double: accept whole numbers of any numeric type
    if raw.dtype.kind == 'f' and not np.array_equal(raw, np.round(raw)):
        raise CGRSegError(f'{name}: S must be a 2-D map of whole-number labels, not {raw.dtype} '
                          f'with fractions')
    bad = (raw < 0) | (raw > COCO_MAX_ID)
    index = np.where(bad, 0, raw).astype(np.intp)
    trained = LUT[index]
    bad |= trained < 0
    if bad.any():
        value = raw[bad][0]
        value = int(value) if np.isfinite(value) else value
        raise CGRSegError(f'{name}: label id {value} out of range (0..{COCO_MAX_ID} '
                       f'without the unused ids {", ".join(map(str, COCO_UNUSED_IDS))})')
    return trained.astype(np.uint8)


# ---------------------------------------------------------------- synthetic twin

# 0 unlabeled; 1 and 11 (before the first unused id, kept); 13 (first id shifted by the gap at 12:
# train id 12); 92 (first stuff id: 81); 182 (last: 171); a few more.
SYNTH_LABELS = (0, 1, 11, 13, 25, 92, 118, 150, 182)
SYNTH_FORCED = (0, 11, 13, 182)


def synthesize(out, counts, seed):
    """Write ``out/cocostuff-10k-v1.1.zip`` with ``counts`` train/test images."""
    rng = np.random.default_rng(seed)
    writer = common.ZipWriter(out / ARCHIVES[0])
    writer.add(common.MARKER, common.marker_bytes('coco_stuff10k', seed, counts))
    lists = {}
    for split in ('train', 'val'):
        coco = 'train2014' if split == 'train' else 'val2014'
        lists[split] = [f'COCO_{coco}_{i + 1:012d}' for i in range(counts[split])]
        for index, stem in enumerate(lists[split]):
            labels, _ = common.scene(rng, common.random_shape(rng), int(rng.choice(SYNTH_LABELS)),
                                     SYNTH_LABELS, SYNTH_FORCED if index == 0 else ())
            writer.add(f'images/{stem}.jpg', common.render(rng, labels))
            writer.add(f'annotations/{stem}.mat', _mat_bytes(labels))
    for split, listed in LISTS.items():
        writer.add(listed, ''.join(f'{stem}\n' for stem in lists[split]).encode())
    writer.add('imageLists/all.txt', ''.join(f'{s}\n' for s in lists['train'] + lists['val']).encode())
    writer.close()
    return [ARCHIVES[0]]


def _mat_bytes(labels):
    """A .mat file like the official ones: S (uint16 label map), names, captions."""
    names = np.array(['unlabeled'] + [f'synthetic class {i}' for i in range(1, COCO_MAX_ID + 1)],
                     dtype=object)
    captions = np.array(['A synthetic scene of coloured shapes.'], dtype=object)
    buffer = io.BytesIO()
    savemat(buffer, {'S': labels.astype(np.uint16), 'names': names, 'captions': captions},
            do_compression=True)
    # the 116-byte text header carries the creation time: fix it so archives are reproducible
    header = b'MATLAB 5.0 MAT-file, Platform: posix, Created by: cgrseg synth'.ljust(116)
    return header + buffer.getvalue()[116:]
