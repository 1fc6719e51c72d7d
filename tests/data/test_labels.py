"""The label conversions checked on data prepared in this process (``--jobs 1``).

tests/data/test_prepare.py checks the same facts on the session's ``prepared_datasets``, converted by a
pool of worker processes; mutation testing (scripts/mutation.sh, module ``labels``) learns which tests
run a function only from calls in the test's own process, so it needs the conversion done here. The
checks are test_data_prepare's own, called on this folder. Below them, the parts called directly: the
label tables (against mmseg's converters as written in them), COCO-Stuff's label maps (.mat checks,
the mapping in row blocks) and Pascal Context's list of images to convert.
"""
import io
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

import test_prepare as P
from conftest import exactly, make_prepared_datasets
from cgrseg.data import coco_stuff10k, common, labels, pascal_context
from cgrseg.errors import CGRSegError


@pytest.fixture(scope='module')
def prepared_here(synth_archives, tmp_path_factory):
    raw, out = tmp_path_factory.mktemp('raw'), tmp_path_factory.mktemp('prepared')
    return make_prepared_datasets(synth_archives, raw, out, ('coco_stuff10k', 'pascal_context'), jobs=1)


def test_coco_stuff_labels(prepared_here, synth_archives):
    P.test_coco_stuff_pixels_follow_mmseg_mapping(prepared_here, synth_archives)
    P.test_manifest_describes_the_prepared_data(prepared_here, 'coco_stuff10k', 171)


def test_pascal_context_labels(prepared_here, synth_archives):
    P.test_pascal_context_pixels_follow_the_59_class_mapping(prepared_here, synth_archives)
    P.test_pascal_context_later_annotations_win(prepared_here, synth_archives)
    P.test_pascal_context_split_lists_come_from_the_json_phases(prepared_here, synth_archives)
    P.test_manifest_describes_the_prepared_data(prepared_here, 'pascal_context', 59)
    P.test_manifest_list_hash_is_the_pascal_split_file(prepared_here)


# ---------------------------------------------------------------- the label tables

# COCO-Stuff's 11 thing ids that were never annotated, as mmseg 0.30's coco_stuff10k.py leaves them
# out of its clsID_to_trID (which maps every other id 0..182 to its rank: 11 -> 11, 13 -> 12,
# 25 -> 24, 27 -> 25, 28 -> 26, 31 -> 27, 92 -> 81, 182 -> 171)
COCO_UNUSED = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}
MMSEG_COCO_SAMPLES = {0: 0, 11: 11, 13: 12, 25: 24, 27: 25, 28: 26, 31: 27, 92: 81, 182: 171}
# mmseg 0.30 pascal_context.py (after the Detail API's 459 categories): np.sort of this list,
# position k of the sorted list is written as k (0 = background)
MMSEG_PASCAL_MAPPING = [
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162,
    420, 454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458,
    34, 207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115]
UNUSED_TEXT = '12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91'


def test_coco_stuff_table_maps_each_used_id_to_its_rank_and_everything_else_to_minus_one():
    lut = labels.coco_stuff_lut()
    assert lut.dtype == np.int16 and lut.shape == (256,)
    used = [i for i in range(183) if i not in COCO_UNUSED]
    expected = np.full(256, -1)
    expected[used] = range(len(used))
    assert lut.tolist() == expected.tolist()   # 183 (one past the last id) .. 255: -1, rejected
    assert {i: int(lut[i]) for i in MMSEG_COCO_SAMPLES} == MMSEG_COCO_SAMPLES
    assert lut[183] == -1 and lut[255] == -1 and max(lut) == 171


def test_pascal_context_table_maps_the_59_classes_to_1_to_59_and_the_rest_to_background():
    lut = labels.pascal_context_lut()
    assert lut.dtype == np.uint8 and lut.shape == (460,)   # Detail category ids 0..459
    expected = np.zeros(460)
    for value, category in enumerate(sorted(MMSEG_PASCAL_MAPPING)):
        expected[category] = value
    assert lut.tolist() == expected.tolist()
    assert lut[459] == 0 and sorted(set(lut.tolist())) == list(range(60))


# ---------------------------------------------------------------- COCO-Stuff label maps

def mat(**fields):
    buffer = io.BytesIO()
    savemat(buffer, fields)
    return buffer.getvalue()


@pytest.mark.parametrize('shape,slice_,blocks', [
    ((5, 3), 6, [2, 2, 1]),          # taller and wider than a slice: blocks of whole rows
    ((5, 4), 6, [1, 1, 1, 1, 1]),    # a row fits, two do not
    ((3, 8), 6, [1, 1, 1]),          # a row wider than a slice is one block
    ((7, 1), 3, [3, 3, 1]),          # one column
    ((2, 3), 1 << 20, [2]),          # small maps: one block
])
def test_map_labels_works_in_row_blocks_as_large_as_the_slice_allows(monkeypatch, shape, slice_,
                                                                        blocks):
    monkeypatch.setattr(common, 'SLICE', slice_)
    ids = [0, 1, 11, 13, 25, 92, 118, 150, 182]
    raw = np.resize(np.array(ids, dtype=np.uint16), shape)
    expected = np.resize(np.array([0, 1, 11, 12, 24, 81, 107, 139, 171]), shape)
    seen, convert = [], coco_stuff10k._map_slice
    monkeypatch.setattr(coco_stuff10k, '_map_slice',
                        lambda part, name: seen.append(part.copy()) or convert(part, name))
    out = coco_stuff10k.map_labels(raw, 'x.mat')
    assert out.dtype == np.uint8 and out.tolist() == expected.tolist()
    assert [len(part) for part in seen] == blocks   # each row once, in order
    assert np.array_equal(np.concatenate(seen), raw)


def test_map_labels_converts_every_pixel_to_uint8_train_ids():
    raw = np.array([[0, 11, 13], [92, 182, 25]], dtype=np.uint16)
    for stored in (raw, raw.astype(np.float64), raw.astype(np.float32), raw.astype(np.int32)):
        out = coco_stuff10k.map_labels(stored, 'x.mat')   # whole-number floats are accepted
        assert out.dtype == np.uint8 and out.tolist() == [[0, 11, 12], [81, 171, 24]]


@pytest.mark.parametrize('raw,message', [
    (np.array([[1.0, 1.5]]), 'x.mat: S must be a 2-D map of whole-number labels, not float64 '
                             'with fractions'),
    (np.array([[np.nan]], np.float32), 'x.mat: S must be a 2-D map of whole-number labels, not '
                                       'float32 with fractions'),
    (np.array([[1, 12]], np.uint8), f'x.mat: label id 12 out of range (0..182 without the unused '
                                    f'ids {UNUSED_TEXT})'),
    (np.array([[1, 183]], np.uint8), f'x.mat: label id 183 out of range (0..182 without the '
                                     f'unused ids {UNUSED_TEXT})'),
    (np.array([[1, 256, 1000]], np.uint16), f'x.mat: label id 256 out of range (0..182 without '
                                            f'the unused ids {UNUSED_TEXT})'),
    (np.array([[1, -1]], np.int16), f'x.mat: label id -1 out of range (0..182 without the unused '
                                    f'ids {UNUSED_TEXT})'),
    (np.array([[1.0, 183.0]]), f'x.mat: label id 183 out of range (0..182 without the unused ids '
                               f'{UNUSED_TEXT})'),
    (np.array([[1.0, np.inf]]), f'x.mat: label id inf out of range (0..182 without the unused ids '
                                f'{UNUSED_TEXT})'),
])
def test_bad_label_values_are_one_error_naming_the_file(raw, message):
    with pytest.raises(CGRSegError, match=exactly(message)):
        coco_stuff10k.map_labels(raw, 'x.mat')


S_3x5 = np.arange(15, dtype=np.float64).reshape(3, 5)   # 3 rows, 5 columns: 120 bytes


@pytest.mark.parametrize('data,limits,message', [
    (mat(labels=S_3x5), {}, 'x.mat: no label field S (fields: labels)'),
    (b'not a MATLAB file', {}, 'x.mat: not a readable MATLAB file (Mat file appears to be '
                               'truncated)'),
    (mat(S=np.ones((2, 3, 4))), {}, 'x.mat: S must be a 2-D map of whole-number labels, not a '
                                    'double array of shape (2, 3, 4)'),
    (mat(S=np.ones((2, 3), bool)), {}, 'x.mat: S must be a 2-D map of whole-number labels, not a '
                                       'logical array of shape (2, 3)'),
    (mat(S=S_3x5 + 1j), {}, 'x.mat: S must be a 2-D map of whole-number labels, not complex128 '
                            '(3, 5)'),
    (mat(S=S_3x5), {'MAX_PIXELS': 14}, 'x.mat: S: 5x3 is 15 pixels, more than the 14 an image of '
                                       'these datasets may have'),
    (mat(S=S_3x5), {'MAX_S_BYTES': 119}, 'x.mat: S declares 120 bytes, more than the 119 a label '
                                         'map may have'),
    (mat(S=S_3x5.astype(np.uint8)), {'MAX_S_BYTES': 14}, 'x.mat: S declares 15 bytes, more than '
                                                         'the 14 a label map may have'),
])
def test_bad_mat_files_are_one_error_naming_the_file(monkeypatch, data, limits, message):
    for limit, value in limits.items():
        monkeypatch.setattr(common if limit == 'MAX_PIXELS' else coco_stuff10k, limit, value)
    with pytest.raises(CGRSegError, match=exactly(message)):
        coco_stuff10k.label_field(data, 'x.mat', (3, 5))


def test_label_map_must_be_as_large_as_its_image():
    with pytest.raises(CGRSegError, match=r'^x\.mat: S is 5x3 for a 6x4 image$'):
        coco_stuff10k.label_field(mat(S=S_3x5), 'x.mat', (4, 6))


def test_label_map_at_the_limits_is_read(monkeypatch):
    monkeypatch.setattr(common, 'MAX_PIXELS', 15)
    monkeypatch.setattr(coco_stuff10k, 'MAX_S_BYTES', 120)
    raw = coco_stuff10k.label_field(mat(S=S_3x5, names=np.array(['a'], dtype=object)), 'x.mat',
                                    (3, 5))
    assert raw.dtype == np.float64 and raw.tolist() == S_3x5.tolist()


# ---------------------------------------------------------------- Pascal Context's image list

JSON_PATH = Path('/raw/trainval_merged.json')
TAR_PATH = Path('/raw/VOCtrainval_03-May-2010.tar')


def pascal_image(name, phase, image_id, height=4, width=5):
    return {'file_name': name, 'phase': phase, 'image_id': image_id, 'height': height,
            'width': width}


def pascal_tasks(tmp_path, images, image_ids=()):
    """_tasks on these images (their JPEGs made in tmp_path) and annotations of ``image_ids`` in
    file order; each annotation's columns are (category = its position, offset, length = 2 x its
    position, height, width, form = 0)."""
    (tmp_path / 'JPEGImages').mkdir(exist_ok=True)
    for image in images:
        if isinstance(image.get('file_name'), str) and '/' not in image['file_name']:
            (tmp_path / 'JPEGImages' / image['file_name']).write_bytes(b'')
    n = len(image_ids)
    annotations = {'image_id': np.array(image_ids, np.int64), 'category_id': np.arange(n),
                   'id': np.arange(n) + 1, 'offset': np.arange(n) * 2, 'length': np.arange(n) * 2,
                   'height': np.full(n, 4), 'width': np.full(n, 5), 'form': np.zeros(n, np.int64)}
    return pascal_context._tasks(images, annotations, JSON_PATH, TAR_PATH, tmp_path)


def test_pascal_tasks_list_train_and_val_images_with_their_annotations_in_file_order(tmp_path):
    images = [pascal_image('a.jpg', 'train', 1), pascal_image('t.jpg', 'test', 2),
              pascal_image('v.jpg', 'val', 3), pascal_image('b.jpg', 'train', 4, 1, 1),
              pascal_image('n.jpg', None, 5)]
    rng = np.random.default_rng(0)
    image_ids = rng.choice([1, 2, 4, 7], 600).tolist()   # 3 has none, 7 is no listed image
    tasks = pascal_tasks(tmp_path, images, image_ids)
    assert [task[:6] for task in tasks] == [
        ('train', 'trainval_merged.json:a.jpg', 'a', 'a.jpg', 4, 5),
        ('val', 'trainval_merged.json:v.jpg', 'v', 'v.jpg', 4, 5),   # no annotation: background
        ('train', 'trainval_merged.json:b.jpg', 'b', 'b.jpg', 1, 1)]
    for task, image_id in zip(tasks, (1, 3, 4)):
        mine = [k for k, i in enumerate(image_ids) if i == image_id]   # file order: later wins
        assert task[6].tolist() == [[k, 2 * k, 2 * k, 4, 5, 0] for k in mine]
    assert tasks[1][6].shape == (0, 6)


@pytest.mark.parametrize('image,message', [
    (pascal_image('../a.jpg', 'train', 1), "{json}: image: '../a.jpg' is not a plain file name "
                                           "(it would be written outside the output folder)"),
    (pascal_image(None, 'val', 1), '{json}: image: None is not a plain file name (it would be '
                                   'written outside the output folder)'),
    (pascal_image('gone/x.jpg', 'train', 1), "{json}: image: 'gone/x.jpg' is not a plain file "
                                             "name (it would be written outside the output folder)"),
    (pascal_image('a.jpg', 'train', 1, height=0), "{json}: image 'a.jpg' has size 5x0"),
    (pascal_image('a.jpg', 'train', 1, width=-3), "{json}: image 'a.jpg' has size -3x4"),
    (pascal_image('a.jpg', 'train', 1, height=2.0), "{json}: image 'a.jpg' has size 5x2.0"),
    (pascal_image('a.jpg', 'train', 1, width=True), "{json}: image 'a.jpg' has size Truex4"),
    (pascal_image('a.jpg', 'train', '1'), "{json}: image 'a.jpg' has image_id '1'"),
    (pascal_image('a.jpg', 'train', None), "{json}: image 'a.jpg' has image_id None"),
    (pascal_image('a.jpg', 'train', 1, 4, 6), "{json}: image 'a.jpg': 6x4 is 24 pixels, more "
                                              "than the 20 an image of these datasets may have"),
])
def test_bad_pascal_images_are_one_error_naming_the_image(monkeypatch, tmp_path, image, message):
    monkeypatch.setattr(common, 'MAX_PIXELS', 20)
    images = [pascal_image('ok.jpg', 'train', 9), image]
    with pytest.raises(CGRSegError, match=exactly(message.format(json=JSON_PATH))):
        pascal_tasks(tmp_path, images, [9, 1])


def test_pascal_image_missing_from_the_tar_is_an_error(tmp_path):
    images = [pascal_image('a.jpg', 'train', 1)]
    (tmp_path / 'JPEGImages').mkdir()
    annotations = {f: np.zeros(0, np.int64) for f in pascal_context.ANNOTATION}
    with pytest.raises(CGRSegError, match=f'^{re.escape(str(JSON_PATH))}: image a.jpg is not in '
                                          f'{re.escape(str(TAR_PATH))}:VOCdevkit/VOC2010/'
                                          r'JPEGImages$'):
        pascal_context._tasks(images, annotations, JSON_PATH, TAR_PATH, tmp_path)


@pytest.mark.parametrize('second', [pascal_image('a.jpg', 'val', 2),
                                    pascal_image('a.jpg', 'train', 1)])
def test_pascal_image_listed_twice_is_an_error(tmp_path, second):
    images = [pascal_image('a.jpg', 'train', 1), pascal_image('b.jpg', 'val', 3), second]
    with pytest.raises(CGRSegError, match=f"^{re.escape(str(JSON_PATH))}: image 'a.jpg' is listed "
                                          r'twice \(the same image in two entries or splits\)$'):
        pascal_tasks(tmp_path, images, [1, 3])
