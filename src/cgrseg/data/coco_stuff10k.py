"""COCO-Stuff-10k v1.1 (cocostuff-10k-v1.1.zip): ``images/<id>.jpg``, ``annotations/<id>.mat``
(label map in field ``S``: 0 = unlabeled, 1..182), ``imageLists/{train,test}.txt``. Converted as
mmseg 0.30's ``coco_stuff10k.py`` does: ``images/{train2014,test2014}/<id>.jpg`` and
``annotations/{train2014,test2014}/<id>_labelTrainIds.png`` with the 182 -> 171 class mapping."""
import io

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


def read_marker(paths):
    return common.zip_marker(paths[0])


def convert(paths, root, jobs):
    archive = common.open_zip(paths[0])
    with archive:
        names = set(archive.namelist())
        if common.MARKER in names:
            common.write_bytes(root / common.MARKER, common.read_member(archive, common.MARKER))
        tasks = [task for split in LISTS for task in _tasks(archive, names, split)]
    splits, _ = common.collect(
        common.parallel_map(_convert_one, tasks, jobs, 'coco_stuff10k', (paths[0], root)))
    return splits, {split: f'{paths[0]}:{name}' for split, name in LISTS.items()}, {}


def _tasks(archive, names, split):
    path, listed = archive.filename, LISTS[split]
    if listed not in names:
        raise CGRSegError(f'{path}: missing split list {listed}')
    ids = [line.strip() for line in common.read_member(archive, listed).decode().splitlines()]
    ids = [i for i in ids if i]
    if len(set(ids)) != len(ids):
        raise CGRSegError(f'{path}: {listed} lists an image twice')
    for stem in ids:
        for member in (f'images/{stem}.jpg', f'annotations/{stem}.mat'):
            if member not in names:
                raise CGRSegError(f'{path}: {listed} lists {stem} but {member} is missing')
    return [(split, f'{path}:annotations/{stem}.mat', stem) for stem in ids]


@common.guarded
def _convert_one(task):
    split, name, stem = task
    archive, root = common.worker_zip(), common.worker_root()
    image = common.read_member(archive, f'images/{stem}.jpg')
    width, height = common.image_size(image, f'{archive.filename}:images/{stem}.jpg')
    raw = label_field(common.read_member(archive, f'annotations/{stem}.mat'), name)
    if raw.shape != (height, width):
        raise CGRSegError(f'{name}: S is {raw.shape[1]}x{raw.shape[0]} for a {width}x{height} image')
    labels = map_labels(raw, name)
    common.write_bytes(root / 'images' / FOLDERS[split] / f'{stem}.jpg', image)
    common.write_png(root / 'annotations' / FOLDERS[split] / f'{stem}{SUFFIX}', labels)
    return split, stem, common.histogram(labels)


def label_field(data, name):
    try:
        mat = loadmat(io.BytesIO(data))
    except (ValueError, TypeError, NotImplementedError, OSError) as err:
        raise CGRSegError(f'{name}: not a readable MATLAB file ({err})') from None
    if 'S' not in mat:
        fields = ', '.join(k for k in mat if not k.startswith('__')) or 'none'
        raise CGRSegError(f'{name}: no label field S (fields: {fields})')
    raw = mat['S']
    # MATLAB may store labels as double: accept whole numbers of any numeric type
    whole = raw.dtype.kind in 'iu' or (raw.dtype.kind == 'f' and np.array_equal(raw, np.round(raw)))
    if raw.ndim != 2 or not whole:
        raise CGRSegError(f'{name}: S must be a 2-D map of whole-number labels, not {raw.dtype} '
                       f'{raw.shape}')
    return raw.astype(np.int64)


def map_labels(raw, name):
    """Raw COCO-Stuff ids -> on-disk train ids (1..171, 0 unlabeled); unknown ids are an error."""
    bad = (raw < 0) | (raw > COCO_MAX_ID)
    trained = LUT[np.where(bad, 0, raw)]
    bad |= trained < 0
    if bad.any():
        raise CGRSegError(f'{name}: label id {int(raw[bad][0])} out of range (0..{COCO_MAX_ID} '
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
