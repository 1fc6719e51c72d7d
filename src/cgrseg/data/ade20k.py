"""ADE20K (SceneParsing, ADEChallengeData2016.zip): already in mmseg's layout, so preparing it
means extracting it and checking every pair (sizes, 8-bit labels 0..150; 0 = "other", ignored)."""
import io
import re

import numpy as np
from PIL import Image

from ..errors import CGRSegError
from . import common
from .labels import ADE20K_NUM_CLASSES

ARCHIVES = ('ADEChallengeData2016.zip',)
DATA_ROOT = 'ade/ADEChallengeData2016'
NUM_CLASSES = ADE20K_NUM_CLASSES
PREFIX = 'ADEChallengeData2016/'
FOLDERS = {'train': 'training', 'val': 'validation'}
LAYOUT = {split: {'img_dir': f'images/{folder}', 'ann_dir': f'annotations/{folder}', 'split': None}
          for split, folder in FOLDERS.items()}
EXTRAS = ('objectInfo150.txt', 'sceneCategories.txt')


def read_marker(paths):
    return common.zip_marker(paths[0], PREFIX)


def convert(paths, root, jobs):
    archive = common.open_zip(paths[0])
    with archive:
        names = set(archive.namelist())
        tasks = [task for split in FOLDERS for task in _pairs(paths[0], names, split)]
        _no_overlap(paths[0], tasks)
        for extra in EXTRAS + (common.MARKER,):
            if PREFIX + extra in names:   # streamed, and only if of a plausible size
                common.copy_member(archive, PREFIX + extra, root / extra, common.MAX_TEXT_BYTES)
    splits, _ = common.collect(
        common.parallel_map(_copy_pair, tasks, jobs, 'ade20k', (paths[0], root)))
    sources = {split: f'{paths[0]}:{PREFIX}images/{folder}' for split, folder in FOLDERS.items()}
    return splits, sources, {}


def _pairs(path, names, split):
    folder = FOLDERS[split]
    images = _stems(names, f'{PREFIX}images/{folder}/', '.jpg')
    labels = _stems(names, f'{PREFIX}annotations/{folder}/', '.png')
    if not images:
        raise CGRSegError(f'{path}: no {PREFIX}images/{folder}/*.jpg -- not the ADEChallengeData2016 '
                       'archive')
    for stem in sorted(images ^ labels):
        kind = 'annotation' if stem in images else 'image'
        raise CGRSegError(f'{path}: {folder}/{stem} has no {kind}')
    for stem in images:
        common.plain_name(f'{stem}.jpg', f'{path}: {PREFIX}images/{folder}')
    return [(split, f'{path.name}:{folder}/{stem}', folder, stem) for stem in sorted(images)]


def _no_overlap(path, tasks):
    """The same image in both splits would evaluate on training data."""
    seen = {}
    for _, _, folder, stem in tasks:
        if seen.setdefault(stem, folder) != folder:
            raise CGRSegError(f'{path}: {stem} is in {seen[stem]} and {folder} (the splits overlap)')


def _stems(names, folder, suffix):
    pattern = re.compile(re.escape(folder) + r'([^/]+)' + re.escape(suffix) + '$')
    return {m.group(1) for m in map(pattern.match, names) if m}


@common.guarded
def _copy_pair(task):
    split, name, folder, stem = task
    archive, root = common.worker_zip(), common.worker_root()
    image_path = root / 'images' / folder / f'{stem}.jpg'
    common.copy_member(archive, f'{PREFIX}images/{folder}/{stem}.jpg', image_path)
    width, height = common.image_size(image_path, f'{name}.jpg', decode=True)
    label_bytes = common.read_member(archive, f'{PREFIX}annotations/{folder}/{stem}.png')
    labels = _labels(label_bytes, f'{name}.png', (width, height))
    common.write_bytes(root / 'annotations' / folder / f'{stem}.png', label_bytes)
    return split, stem, common.histogram(labels)


def _labels(data, name, size):
    """The decoded label map, after checking its header: mode, and the image's size."""
    common.image_size(data, name)   # refuses a huge map before decoding it
    with Image.open(io.BytesIO(data)) as img:
        if img.mode not in ('L', 'P'):
            raise CGRSegError(f'{name}: labels must be an 8-bit single-channel PNG, not mode {img.mode}')
        if img.size != size:
            raise CGRSegError(f'{name}: {img.size[0]}x{img.size[1]} labels for a '
                              f'{size[0]}x{size[1]} image')
        try:
            labels = np.asarray(img)
        except Exception as err:  # noqa: BLE001 -- a truncated or damaged PNG (PIL: several types)
            raise CGRSegError(f'{name}: not a readable image ({common.one_line(err)})') from None
    if labels.max() > NUM_CLASSES:
        raise CGRSegError(f'{name}: label {labels.max()} out of range 0..{NUM_CLASSES}')
    return labels


# ---------------------------------------------------------------- synthetic twin

# 0 ("other", ignored), the first and the last class, and a few in between.
SYNTH_LABELS = (0, 1, 3, 5, 13, 150)
SYNTH_FORCED = (0, 1, 150)


def synthesize(out, counts, seed):
    """Write ``out/ADEChallengeData2016.zip`` with ``counts`` train/val pairs."""
    rng = np.random.default_rng(seed)
    writer = common.ZipWriter(out / ARCHIVES[0])
    writer.add(PREFIX + common.MARKER, common.marker_bytes('ade20k', seed, counts))
    pixels = np.zeros(NUM_CLASSES + 1, dtype=np.int64)
    images = np.zeros((2, NUM_CLASSES + 1), dtype=np.int64)
    for row, (split, folder) in enumerate(FOLDERS.items()):
        prefix = 'ADE_train' if split == 'train' else 'ADE_val'
        for index in range(1, counts[split] + 1):
            labels, _ = common.scene(rng, common.random_shape(rng), int(rng.choice(SYNTH_LABELS)),
                                     SYNTH_LABELS, SYNTH_FORCED if index == 1 else ())
            stem = f'{prefix}_{index:08d}'
            writer.add(f'{PREFIX}images/{folder}/{stem}.jpg', common.render(rng, labels))
            png = io.BytesIO()
            Image.fromarray(labels.astype(np.uint8), mode='L').save(png, format='PNG')
            writer.add(f'{PREFIX}annotations/{folder}/{stem}.png', png.getvalue())
            hist = np.bincount(labels.ravel(), minlength=NUM_CLASSES + 1)
            pixels += hist
            images[row] += hist > 0
    writer.add(PREFIX + 'objectInfo150.txt', _object_info(pixels, images))
    writer.add(PREFIX + 'sceneCategories.txt', ''.join(
        f'{p}_{i:08d} synthetic\n' for p, split in (('ADE_train', 'train'), ('ADE_val', 'val'))
        for i in range(1, counts[split] + 1)).encode())
    writer.close()
    return [ARCHIVES[0]]


def _object_info(pixels, images):
    """objectInfo150.txt in the official columns: pixel ratio, images per split containing the
    class, name (placeholder names for synthetic data)."""
    lines = ['Idx\tRatio\tTrain\tVal\tName']
    for idx in range(1, NUM_CLASSES + 1):
        lines.append(f'{idx}\t{pixels[idx] / pixels.sum():.4f}\t{images[0, idx]}\t{images[1, idx]}'
                     f'\tsynthetic class {idx}')
    return ('\n'.join(lines) + '\n').encode()
