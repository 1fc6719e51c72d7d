"""COCO-Stuff-10k v1.1 (cocostuff-10k-v1.1.zip): ``images/<id>.jpg``, ``annotations/<id>.mat``
(label map in field ``S``: 0 = unlabeled, 1..182), ``imageLists/{train,test}.txt``. Converted as
mmseg 0.30's ``coco_stuff10k.py`` does: ``images/{train2014,test2014}/<id>.jpg`` and
``annotations/{train2014,test2014}/<id>_labelTrainIds.png`` with the 182 -> 171 class mapping."""
import io
import struct
import zlib

import numpy as np
from scipy.io import loadmat, savemat, whosmat
from scipy.io.matlab import MatReadError, matfile_version, varmats_from_mat

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
MI_COMPRESSED = 15   # the MATLAB 5 element type of a zlib-compressed variable
# the classes scipy's whosmat names that a label map may have -> bytes per element
MAT_NUMERIC = {'double': 8, 'single': 4, 'int8': 1, 'uint8': 1, 'int16': 2, 'uint16': 2,
               'int32': 4, 'uint32': 4, 'int64': 8, 'uint64': 8}


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
    width, height = common.image_size(image_path, f'{archive.filename}:images/{stem}.jpg',
                                      decode=True)
    raw = label_field(common.read_member(archive, f'annotations/{stem}.mat'), name, (height, width))
    labels = map_labels(raw, name)
    common.write_png(root / 'annotations' / FOLDERS[split] / f'{stem}{SUFFIX}', labels)
    return split, stem, common.histogram(labels)


def label_field(data, name, shape=None):
    """Field ``S`` of a .mat file, read as mmseg's converter reads it (``loadmat(f)['S']``) once
    its one ``S`` variable has passed the checks on its header: exactly one variable named S, a
    dense real numeric 2-D matrix, as large as the image (``shape``: its (height, width)) and
    within the size limits. Nothing is allocated for S before."""
    try:
        variable = _only_s(data, name)
        (_, size, kind), = whosmat(variable)
        if kind not in MAT_NUMERIC or len(size) != 2:
            raise CGRSegError(f'{name}: S must be a 2-D map of whole-number labels, not a {kind} '
                              f'array of shape {size}')
        common.check_pixels(size[::-1], f'{name}: S')
        if size[0] * size[1] * MAT_NUMERIC[kind] > MAX_S_BYTES:
            raise CGRSegError(f'{name}: S declares {size[0] * size[1] * MAT_NUMERIC[kind]} bytes, '
                              f'more than the {MAX_S_BYTES} a label map may have')
        if shape is not None and tuple(size) != shape:
            raise CGRSegError(f'{name}: S is {size[1]}x{size[0]} for a {shape[1]}x{shape[0]} image')
        variable.seek(0)
        raw = loadmat(variable)['S']
    except (ValueError, TypeError, NotImplementedError, OSError, IndexError, KeyError,
            struct.error, zlib.error, MatReadError, MemoryError) as err:
        # MemoryError: a length field asking for gigabytes (refused by the allocator at once)
        raise CGRSegError(f'{name}: not a readable MATLAB file ({common.one_line(err)})') from None
    if raw.ndim != 2 or raw.dtype.kind not in 'iuf':
        raise CGRSegError(f'{name}: S must be a 2-D map of whole-number labels, not {raw.dtype} '
                          f'{raw.shape}')
    return raw


def _only_s(data, name):
    """The variable S of the MATLAB 5 file ``data`` as a file of its own (scipy's varmats), after
    refusing a file with none or several, and any compressed variable that would inflate beyond
    the limits (scipy inflates a variable's elements as their headers declare)."""
    if matfile_version(io.BytesIO(data)) != (1, 0):
        raise ValueError('not a MATLAB 5 file (v4 and v7.3 files are not COCO-Stuff annotations)')
    _check_inflation(data, name)
    variables = varmats_from_mat(io.BytesIO(data))
    found = [variable for var_name, variable in variables if var_name == 'S']
    if not found:
        fields = ', '.join(var_name for var_name, _ in variables) or 'none'
        raise CGRSegError(f'{name}: no label field S (fields: {fields})')
    if len(found) > 1:
        raise CGRSegError(f'{name}: {len(found)} variables named S; which one is the label map?')
    return found[0]


def _check_inflation(data, name):
    """Walk the file's top-level elements (tag: type, byte count) and inflate each compressed one
    as a stream, counting bytes without keeping them."""
    order = '<' if data[126:128] == b'IM' else '>'
    position, view = 128, memoryview(data)
    while position + 8 <= len(data):
        kind, size = struct.unpack_from(order + 'II', data, position)
        if kind == MI_COMPRESSED:
            inflater, pending, total = zlib.decompressobj(), view[position + 8:position + 8 + size], 0
            while pending and not inflater.eof:
                total += len(inflater.decompress(pending, 1 << 20))
                pending = inflater.unconsumed_tail
                if total > MAX_S_BYTES + (1 << 20):
                    raise CGRSegError(f'{name}: a compressed variable inflates to more than '
                                      f'{MAX_S_BYTES + (1 << 20)} bytes')
        position += 8 + (size if kind == MI_COMPRESSED else -(-size // 8) * 8)


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
    return trained   # 0..171 here; map_labels stores it into its uint8 map


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
