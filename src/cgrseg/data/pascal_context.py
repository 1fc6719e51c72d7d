"""Pascal Context, 59 classes: VOC2010 images (VOCtrainval_03-May-2010.tar) + the PASCAL in Detail
annotations (trainval_merged.json). Replaces mmseg's converter, whose Detail API is not on PyPI:
the JSON's RLE masks are decoded with pycocotools and painted in file order (later annotations
overwrite earlier ones, as Detail's ``getMask``), then mapped to 1..59 (0 = background/other).

The JSON (about 590 MiB) is streamed with ijson, never parsed whole: one pass keeps the images and
categories (small) and copies each annotation's RLE string into a spool file in the output folder,
indexed by image; each worker then reads its image's masks from there.

Splits: the JSON images' ``phase`` (``train``/``val``), as Detail and mmseg use; the manifest also
records whether they agree with VOC2010's ImageSets/Main/{train,val}.txt.
"""
import json
import shutil
import tarfile
from array import array
from pathlib import Path, PurePosixPath

import ijson
import numpy as np
from pycocotools import mask as coco_mask
from tqdm import tqdm

from ..errors import CGRSegError
from ..io import GuardedReader, JsonGuard
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
# The real trainval_merged.json (~590 MiB) lists 14,288 images (4,996 train, 5,104 val, 4,188
# test) and their masks; anything far larger is not it.
MAX_JSON_BYTES = 2 << 30
MAX_IMAGES = 100_000
MAX_ANNOTATIONS = 1_000_000       # the index costs 64 bytes each
MAX_RLE_BYTES = 16 << 20          # one JSON string (an RLE mask); what ijson holds at a time
SPOOL = '.annotations.rle'        # in the dataset folder while it is built; deleted before the rename
SECTIONS = ('images', 'annos_segmentation', 'categories')
# the fields read from the stream (prefix -> name); everything else is skipped
FIELDS = {'images.item.image_id': 'image_id', 'images.item.file_name': 'file_name',
          'images.item.height': 'height', 'images.item.width': 'width',
          'images.item.phase': 'phase', 'categories.item.category_id': 'category_id',
          'annos_segmentation.item.id': 'id', 'annos_segmentation.item.image_id': 'image_id',
          'annos_segmentation.item.category_id': 'category_id',
          'annos_segmentation.item.segmentation': 'form',
          'annos_segmentation.item.segmentation.counts': 'counts',
          'annos_segmentation.item.segmentation.size': 'size'}
RLE, POLYGONS, UNCOMPRESSED, OTHER = range(4)   # forms of a mask; Detail's getMask decodes RLE only
ANNOTATION = ('image_id', 'category_id', 'id', 'offset', 'length', 'height', 'width', 'form')
SPLIT_SOURCE = ("trainval_merged.json images' phase field (train/val), as the Detail API and "
                "mmseg's converter use it")


def read_marker(paths):
    return common.tar_marker(paths[0])


def convert(paths, root, jobs):
    tar_path, json_path = paths
    _extract(tar_path, root)
    images, annotations = _read_detail(json_path, root / SPOOL)
    tasks = _tasks(images, annotations, json_path, tar_path, root)
    splits, counters = common.collect(
        common.parallel_map(_convert_one, tasks, jobs, 'pascal_context', (None, root)))
    (root / SPOOL).unlink()
    for split, listed in LISTS.items():
        ids = splits.get(split, {}).get('ids', [])
        common.write_bytes(root / listed, ''.join(f'{stem}\n' for stem in ids).encode())
    notes = {'split_source': SPLIT_SOURCE, 'split_vs_voc2010_main': _compare_main(root, splits),
             **counters}
    return splits, {split: f'{json_path} (phase {split})' for split in LISTS}, notes


def _extract(path, root):
    """Stream the regular files under VOCdevkit/VOC2010/ into ``root``, refusing hostile members."""
    try:
        with common.open_tar(path) as tar, tqdm(desc='extract', unit='file', disable=None) as bar:
            for count in range(common.MAX_MEMBERS + 1):
                if (member := tar.next()) is None:
                    break
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
            else:
                raise CGRSegError(f'{path}: more than {common.MAX_MEMBERS} members, more than a '
                                  'dataset archive has')
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


def _read_detail(path, spool):
    """Stream the JSON at ``path``: (images, annotations). ``images``: one dict per entry of
    "images" (its scalar fields); ``annotations``: one int64 column per ANNOTATION field, in file
    order, whose masks (RLE strings) were written to ``spool`` at ``offset``/``length``. The
    category of every annotation is checked against "categories", as the converter did."""
    size = Path(path).stat().st_size
    if size > MAX_JSON_BYTES:
        raise CGRSegError(f'{path}: {size} bytes, more than the {MAX_JSON_BYTES} the annotation JSON '
                          'may have')
    stream = _DetailStream(path)
    try:
        with open(path, 'rb') as f, open(spool, 'wb') as out:
            guarded = GuardedReader(f, JsonGuard(path, max_token=MAX_RLE_BYTES))
            stream.read(ijson.parse(guarded, buf_size=64 << 10, use_float=True), out)
    except (ijson.JSONError, ValueError) as err:   # ValueError: e.g. a number of 5000 digits
        raise CGRSegError(f'{path}: not readable JSON ({common.one_line(err)})') from None
    for key in SECTIONS:
        if key not in stream.lists:
            raise CGRSegError(f'{path}: no "{key}" list -- not the PASCAL in Detail trainval JSON')
    annotations = {field: np.frombuffer(column, np.int64) for field, column in stream.columns.items()}
    _check_categories(path, annotations, stream.categories)
    return stream.images, annotations


class _DetailStream:
    """Collects what prepare needs from the parser's events (prefix, event, value), keeping only
    the FIELDS of each entry of the three SECTIONS."""

    def __init__(self, path):
        self.path, self.lists, self.keys = path, set(), set()
        self.images, self.categories = [], set()
        self.columns = {field: array('q') for field in ANNOTATION}

    def read(self, events, spool):
        entry = section = None
        for prefix, event, value in events:
            if entry is not None:
                if prefix == section and event == 'end_map':
                    self._add(section, entry, spool)
                    entry = None
                elif prefix in FIELDS:
                    self._field(entry, FIELDS[prefix], event, value)
                elif prefix == 'annos_segmentation.item.segmentation.size.item':
                    if len(entry.get('size', ())) < 3:   # a third value already makes it invalid
                        entry['size'] = entry.get('size', ()) + (value,)
            elif prefix.endswith('.item') and prefix[:-5] in SECTIONS:
                if event != 'start_map':
                    self._malformed(f'an entry of "{prefix[:-5]}" is a {event}, not an object')
                entry, section = {}, prefix
            elif prefix == '':
                self._top(event, value)
            elif prefix in SECTIONS and event == 'start_array':
                self.lists.add(prefix)

    def _top(self, event, value):
        if event == 'map_key':
            if value in self.keys:   # json.load would keep the last one silently
                self._malformed(f'the key "{value}" appears twice at the top level')
            self.keys.add(value)
        elif event not in ('start_map', 'end_map'):
            self._malformed('the document is not a JSON object')

    @staticmethod
    def _field(entry, name, event, value):
        if event in ('end_map', 'end_array', 'map_key'):
            return
        if name == 'form':   # the segmentation: a mapping (RLE) or a list (polygons)
            entry['form'] = {'start_map': RLE, 'start_array': POLYGONS}.get(event, OTHER)
        elif name == 'size':
            entry['size'] = ()
        elif name == 'counts' and event == 'start_array':
            entry['form'] = UNCOMPRESSED
        elif event in ('string', 'number', 'boolean', 'null'):
            entry[name] = value

    def _add(self, section, entry, spool):
        if section == 'images.item':
            if len(self.images) == MAX_IMAGES:
                self._malformed(f'more than {MAX_IMAGES} images')
            self.images.append(entry)
        elif section == 'categories.item':
            self.categories.add(entry.get('category_id'))
        else:
            self._annotation(entry, spool)

    def _annotation(self, entry, spool):
        if len(self.columns['id']) == MAX_ANNOTATIONS:
            self._malformed(f'more than {MAX_ANNOTATIONS} annotations')
        values = {'id': entry.get('id') if _is_int(entry.get('id')) else -1}
        for name in ('image_id', 'category_id'):
            if not _is_int(entry.get(name)):
                self._malformed(f'annotation {entry.get("id")!r} has {name} {entry.get(name)!r}')
            values[name] = entry[name]
        size, counts, form = entry.get('size', ()), entry.get('counts'), entry.get('form', OTHER)
        height, width = size if len(size) == 2 and all(map(_is_int, size)) else (-1, -1)
        try:
            data = counts.encode('ascii') if form == RLE else b''
        except (AttributeError, UnicodeEncodeError):   # no counts text, or not RLE characters
            data, form = b'', OTHER
        values.update(offset=spool.tell(), length=len(data), height=height, width=width, form=form)
        spool.write(data)
        try:
            for field in ANNOTATION:
                self.columns[field].append(values[field])
        except OverflowError:
            self._malformed(f'annotation {entry.get("id")!r} has a number beyond 64 bits')

    def _malformed(self, problem):
        raise CGRSegError(f'{self.path}: malformed entry ({problem})')


def _is_int(value):
    return type(value) is int   # not bool, not a float such as 1.0


def _check_categories(path, annotations, categories):
    known = np.array(sorted(c for c in categories if _is_int(c) and 0 < c <= PASCAL_CONTEXT_MAX_ID),
                     dtype=np.int64)
    bad = ~np.isin(annotations['category_id'], known)
    if bad.any():
        first = int(np.argmax(bad))
        ann_id = int(annotations['id'][first])
        raise CGRSegError(f'{path}: annotation {ann_id if ann_id >= 0 else None} has category_id '
                          f'{int(annotations["category_id"][first])}, not one of the categories '
                          f'(1..{PASCAL_CONTEXT_MAX_ID})')


def _tasks(images, annotations, path, tar_path, root):
    order = np.argsort(annotations['image_id'], kind='stable')   # stable: file order per image
    image_ids = annotations['image_id'][order]
    columns = np.stack([annotations[f] for f in ('category_id', 'offset', 'length', 'height',
                                                 'width', 'form')], axis=1)[order]
    tasks, stems = [], set()
    for img in images:
        if img.get('phase') not in LISTS:
            continue
        file_name = common.plain_name(img.get('file_name'), f'{path}: image')
        stem = Path(file_name).stem
        if stem in stems:
            raise CGRSegError(f'{path}: image {file_name!r} is listed twice (the same image in '
                              'two entries or splits)')
        stems.add(stem)
        if not (root / 'JPEGImages' / file_name).is_file():
            raise CGRSegError(f'{path}: image {file_name} is not in {tar_path}:{PREFIX}JPEGImages')
        height, width, image_id = img.get('height'), img.get('width'), img.get('image_id')
        if not all(_is_int(n) and n > 0 for n in (height, width)):
            raise CGRSegError(f'{path}: image {file_name!r} has size {width!r}x{height!r}')
        if not _is_int(image_id):
            raise CGRSegError(f'{path}: image {file_name!r} has image_id {image_id!r}')
        common.check_pixels((width, height), f'{path}: image {file_name!r}')
        rows = slice(*_rows(image_ids, image_id))
        tasks.append((img['phase'], f'{path.name}:{file_name}', stem, file_name, height, width,
                      columns[rows]))
    return tasks


def _rows(image_ids, image_id):
    """(first, end) of ``image_id``'s annotations in the sorted ``image_ids``."""
    if not -2 ** 63 <= image_id < 2 ** 63:   # no annotation (an int64 column) can have it
        return 0, 0
    return (int(np.searchsorted(image_ids, image_id, 'left')),
            int(np.searchsorted(image_ids, image_id, 'right')))


@common.guarded
def _convert_one(task):
    split, name, stem, file_name, height, width, annotations = task
    root = common.worker_root()
    size = common.image_size(root / 'JPEGImages' / file_name,
                             f'{ARCHIVES[0]}:{PREFIX}JPEGImages/{file_name}', decode=True)
    if size != (width, height):
        raise CGRSegError(f'{name}: JSON says {width}x{height}, the image is {size[0]}x{size[1]}')
    categories = np.zeros((height, width), dtype=np.int16)
    with open(root / SPOOL, 'rb') as spool:
        for category, offset, length, mask_height, mask_width, form in annotations.tolist():
            spool.seek(offset)
            rle = _rle(spool.read(length), (mask_height, mask_width), form, height, width, name)
            categories[coco_mask.decode(rle).astype(bool)] = category
    labels = LUT[categories]
    outside = int(np.count_nonzero((categories > 0) & (labels == 0)))
    common.write_png(root / 'SegmentationClassContext' / f'{stem}.png', labels)
    counters = {'pixels_outside_59': outside, 'images_with_pixels_outside_59': int(outside > 0)}
    return split, stem, common.histogram(labels), counters


def _rle(counts, size, form, height, width, name):
    """The compressed RLE of one mask, as pycocotools decodes it (and refuses runs that do not sum
    to the image: ValueError, reported naming the image)."""
    if form != RLE:
        kind = {POLYGONS: 'polygons', UNCOMPRESSED: 'an uncompressed RLE'}.get(form, 'not a mask')
        raise CGRSegError(f'{name}: a segmentation is {kind}; only compressed RLE masks are read, '
                          "as the Detail API's getMask decodes them")
    if size != (height, width):
        raise CGRSegError(f'{name}: mask size {list(size)} does not match the image '
                          f'({height}x{width})')
    return {'size': [height, width], 'counts': counts}


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
