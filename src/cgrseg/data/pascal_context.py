"""Pascal Context, 59 classes: VOC2010 images (VOCtrainval_03-May-2010.tar) + the PASCAL in Detail
annotations (trainval_merged.json). Replaces mmseg's converter, whose Detail API is not on PyPI:
the JSON's RLE masks are decoded with pycocotools and painted in file order (later annotations
overwrite earlier ones, as Detail's ``getMask``), then mapped to 1..59 (0 = background/other).

Splits: the JSON images' ``phase`` (``train``/``val``), as Detail and mmseg use; the manifest also
records whether they agree with VOC2010's ImageSets/Main/{train,val}.txt.
"""
import json
import shutil
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
from pycocotools import mask as coco_mask
from tqdm import tqdm

from ..errors import CGRSegError
from . import common
from .labels import (
    PASCAL_CONTEXT_59_IDS,
    PASCAL_CONTEXT_MAX_ID,
    PASCAL_CONTEXT_NAMES,
    PASCAL_CONTEXT_NUM_CLASSES,
    pascal_context_lut,
)

ARCHIVES = ('VOCtrainval_03-May-2010.tar', 'trainval_merged.json')
DATA_ROOT = 'VOCdevkit/VOC2010'
NUM_CLASSES = PASCAL_CONTEXT_NUM_CLASSES
PREFIX = 'VOCdevkit/VOC2010/'
LISTS = {split: f'ImageSets/SegmentationContext/{split}.txt' for split in ('train', 'val')}
LAYOUT = {split: {'img_dir': 'JPEGImages', 'ann_dir': 'SegmentationClassContext', 'split': listed}
          for split, listed in LISTS.items()}
LUT = pascal_context_lut()
# The real trainval_merged.json is a few hundred MB and parsed whole; anything far larger is not it.
MAX_JSON_BYTES = 2 << 30
SPLIT_SOURCE = ("trainval_merged.json images' phase field (train/val), as the Detail API and "
                "mmseg's converter use it")


def read_marker(paths):
    return common.tar_marker(paths[0])


def convert(paths, root, jobs):
    tar_path, json_path = paths
    _extract(tar_path, root)
    tasks = _tasks(_load(json_path), json_path, tar_path, root)
    splits, counters = common.collect(
        common.parallel_map(_convert_one, tasks, jobs, 'pascal_context', (None, root)))
    for split, listed in LISTS.items():
        ids = splits.get(split, {}).get('ids', [])
        common.write_bytes(root / listed, ''.join(f'{stem}\n' for stem in ids).encode())
    notes = {'split_source': SPLIT_SOURCE, 'split_vs_voc2010_main': _compare_main(root, splits),
             **counters}
    return splits, {split: f'{json_path} (phase {split})' for split in LISTS}, notes


def _extract(path, root):
    """Stream the regular files under VOCdevkit/VOC2010/ into ``root``, refusing hostile members."""
    try:
        with tarfile.open(path, 'r:') as tar, tqdm(desc='extract', unit='file', disable=None) as bar:
            while (member := tar.next()) is not None:
                tar.members.clear()   # tarfile keeps every header it read: memory grows with them
                relative = _member_path(path, member)
                if relative is None:
                    continue
                if member.size > common.MAX_MEMBER_BYTES or member.issparse():
                    raise CGRSegError(f'{path}:{member.name} declares {member.size} bytes, more '
                                      f'than the {common.MAX_MEMBER_BYTES} a member may have')
                target = root.joinpath(*relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as fin, open(target, 'wb') as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                bar.update()
    except (tarfile.TarError, EOFError) as err:
        raise CGRSegError(f'{path}: not a readable tar archive ({common.one_line(err)})') from None
    except OSError as err:
        raise common.disk_error(err, root.parent) or CGRSegError(
            f'{path}: not a readable tar archive ({common.one_line(err)})') from None
    if not (root / 'JPEGImages').is_dir():
        raise CGRSegError(f'{path}: no {PREFIX}JPEGImages/ -- not the VOC2010 trainval archive')


def _member_path(path, member):
    """The parts of ``member``'s path under VOCdevkit/VOC2010/ if it is to be extracted, else None."""
    problem = common.member_problem(member.name)
    if problem:
        raise CGRSegError(f'{path}: member {member.name!r} {problem}')
    if not member.name.startswith(PREFIX) or not member.isfile():
        return None   # links, folders, devices: never extracted (files are written by name)
    return PurePosixPath(member.name[len(PREFIX):]).parts or None


def _load(path):
    size = Path(path).stat().st_size
    if size > MAX_JSON_BYTES:
        raise CGRSegError(f'{path}: {size} bytes, more than the {MAX_JSON_BYTES} the annotation JSON '
                          'may have')
    try:
        doc = json.loads(Path(path).read_bytes())
    except (ValueError, OSError) as err:
        raise CGRSegError(f'{path}: not readable JSON ({common.one_line(err)})') from None
    for key in ('images', 'annos_segmentation', 'categories'):
        if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
            raise CGRSegError(f'{path}: no "{key}" list -- not the PASCAL in Detail trainval JSON')
    return doc


def _tasks(doc, path, tar_path, root):
    try:
        known = {c['category_id'] for c in doc['categories']}
        by_image = {}
        for ann in doc['annos_segmentation']:
            category = ann['category_id']
            if category not in known or not 0 < category <= PASCAL_CONTEXT_MAX_ID:
                raise CGRSegError(f'{path}: annotation {ann.get("id")} has category_id {category}, '
                               f'not one of the categories (1..{PASCAL_CONTEXT_MAX_ID})')
            by_image.setdefault(ann['image_id'], []).append((category, ann['segmentation']))
        tasks, stems = [], set()
        for img in doc['images']:
            if img['phase'] not in LISTS:
                continue
            file_name = common.plain_name(img['file_name'], f'{path}: image')
            stem = Path(file_name).stem
            if stem in stems:
                raise CGRSegError(f'{path}: image {file_name!r} is listed twice (the same image in '
                                  'two entries or splits)')
            stems.add(stem)
            if not (root / 'JPEGImages' / file_name).is_file():
                raise CGRSegError(f'{path}: image {file_name} is not in {tar_path}:{PREFIX}JPEGImages')
            height, width = img['height'], img['width']
            if not all(isinstance(n, int) and n > 0 for n in (height, width)):
                raise CGRSegError(f'{path}: image {file_name!r} has size {width!r}x{height!r}')
            common.check_pixels((width, height), f'{path}: image {file_name!r}')
            tasks.append((img['phase'], f'{path.name}:{file_name}', stem, file_name,
                          height, width, by_image.get(img['image_id'], [])))
    except (KeyError, TypeError) as err:
        raise CGRSegError(f'{path}: malformed entry ({type(err).__name__}: {err})') from None
    return tasks


@common.guarded
def _convert_one(task):
    split, name, stem, file_name, height, width, annotations = task
    root = common.worker_root()
    size = common.image_size(root / 'JPEGImages' / file_name, name)
    if size != (width, height):
        raise CGRSegError(f'{name}: JSON says {width}x{height}, the image is {size[0]}x{size[1]}')
    categories = np.zeros((height, width), dtype=np.int16)
    for category, segmentation in annotations:
        categories[decode(segmentation, height, width, name)] = category
    labels = LUT[categories]
    outside = int(np.count_nonzero((categories > 0) & (labels == 0)))
    common.write_png(root / 'SegmentationClassContext' / f'{stem}.png', labels)
    counters = {'pixels_outside_59': outside, 'images_with_pixels_outside_59': int(outside > 0)}
    return split, stem, common.histogram(labels), counters


def decode(segmentation, height, width, name):
    """Boolean mask of a COCO-style segmentation (compressed/uncompressed RLE or polygons)."""
    if isinstance(segmentation, list):
        segmentation = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get('counts'), list):
        segmentation = coco_mask.frPyObjects(segmentation, height, width)
    if not isinstance(segmentation, dict) or list(segmentation.get('size', ())) != [height, width]:
        size = segmentation.get('size') if isinstance(segmentation, dict) else None
        raise CGRSegError(f'{name}: mask size {size} does not match the image ({height}x{width})')
    return coco_mask.decode(segmentation).astype(bool)


def _compare_main(root, splits):
    result = {}
    for split in LISTS:
        main = root / 'ImageSets' / 'Main' / f'{split}.txt'
        if not main.is_file():
            result[split] = f'no ImageSets/Main/{split}.txt to compare with'
            continue
        if main.stat().st_size > common.MAX_LIST_BYTES:   # the real one has 60 kB
            result[split] = f'ImageSets/Main/{split}.txt is too large to compare with'
            continue
        theirs = set(main.read_text().split())
        ours = set(splits.get(split, {}).get('ids', []))
        result[split] = 'identical' if ours == theirs else (
            f'differs: {len(ours - theirs)} only in the JSON, {len(theirs - ours)} only in '
            f'ImageSets/Main/{split}.txt')
    return result


# ---------------------------------------------------------------- synthetic twin

# Out-of-59 category 1 (accordion) must become background; 2 and 458 are the first and last of the
# 59 (1 and 59 on disk); 0 (no annotation) is background.
SYNTH_OTHER = {1: 'accordion'}
SYNTH_CHOICES = (1, 2, 9, 284, 360, 458)
SYNTH_BACKGROUNDS = (0, 158, 360)
SYNTH_FORCED = (1, 2, 458)


def synthesize(out, counts, seed):
    """Write ``out/VOCtrainval_03-May-2010.tar`` and ``out/trainval_merged.json``."""
    rng = np.random.default_rng(seed)
    tar = common.TarWriter(out / ARCHIVES[0])
    tar.add(PREFIX + common.MARKER, common.marker_bytes('pascal_context', seed, counts))
    doc = {'info': {'description': 'synthetic PASCAL in Detail annotations (cgrseg synth)'},
           'images': [], 'annos_segmentation': [], 'categories': _categories(), 'parts': [],
           'annos_occlusion': [], 'annos_boundary': [], 'annos_joints': []}
    lists = {'train': [], 'val': []}
    for split in ('train', 'val'):
        for index in range(counts[split]):
            stem = f'{2008 + len(doc["images"]) % 3}_{len(doc["images"]) + 1:06d}'
            lists[split].append(stem)
            _synth_image(rng, doc, tar, stem, split, SYNTH_FORCED if index == 0 else ())
    # VOC2010 has more images than Pascal Context uses: one that no split lists
    extra = common.scene(rng, common.random_shape(rng), 0, SYNTH_CHOICES)[0]
    tar.add(f'{PREFIX}JPEGImages/2010_999999.jpg', common.render(rng, extra))
    for name, stems in (('train', lists['train']), ('val', lists['val']),
                        ('trainval', lists['train'] + lists['val'])):
        tar.add(f'{PREFIX}ImageSets/Main/{name}.txt', ''.join(f'{s}\n' for s in sorted(stems)).encode())
    tar.close()
    (out / ARCHIVES[1]).write_text(json.dumps(doc))
    return list(ARCHIVES)


def _categories():
    named = {**dict(zip(PASCAL_CONTEXT_59_IDS, PASCAL_CONTEXT_NAMES)), **SYNTH_OTHER}
    return [{'category_id': cid, 'name': name, 'supercategory': 'object', 'onlysemantic': 0,
             'parts': []} for cid, name in sorted(named.items())]


def _synth_image(rng, doc, tar, stem, phase, forced):
    height, width = common.random_shape(rng)
    background = int(rng.choice(SYNTH_BACKGROUNDS))
    labels, shapes = common.scene(rng, (height, width), background, SYNTH_CHOICES, forced)
    image_id = int(stem.replace('_', ''))
    doc['images'].append({'image_id': image_id, 'file_name': f'{stem}.jpg', 'height': height,
                          'width': width, 'phase': phase})
    if background:
        shapes.insert(0, (background, np.ones((height, width), dtype=bool)))
    for category, mask in shapes:
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        doc['annos_segmentation'].append({
            'id': len(doc['annos_segmentation']) + 1, 'image_id': image_id,
            'category_id': category, 'iscrowd': 0, 'parts': [],
            'area': int(coco_mask.area(rle)), 'bbox': [float(v) for v in coco_mask.toBbox(rle)],
            'segmentation': {'size': [height, width], 'counts': rle['counts'].decode('ascii')}})
    tar.add(f'{PREFIX}JPEGImages/{stem}.jpg', common.render(rng, labels))
