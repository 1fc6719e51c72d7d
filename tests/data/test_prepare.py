"""cgrseg prepare on the synthetic archives: layouts, exact label mappings, counts, manifest."""
import hashlib
import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from scipy.io import loadmat, savemat

ADE_ROOT = 'ade/ADEChallengeData2016'
VOC_ROOT = 'VOCdevkit/VOC2010'


def png(path):
    return np.asarray(Image.open(path))


def manifest(root, dataset):
    return json.loads((root / f'{dataset}.manifest.json').read_text())


def test_ade20k_is_extracted_unchanged(prepared_datasets, synth_archives):
    root = prepared_datasets / ADE_ROOT
    with zipfile.ZipFile(synth_archives / 'ADEChallengeData2016.zip') as archive:
        for name in archive.namelist():
            if name.endswith(('.jpg', '.png')):
                relative = name[len('ADEChallengeData2016/'):]
                assert (root / relative).read_bytes() == archive.read(name), name
    assert len(list((root / 'images/training').glob('ADE_train_*.jpg'))) == 8
    assert len(list((root / 'annotations/validation').glob('ADE_val_*.png'))) == 4
    assert (root / 'objectInfo150.txt').read_text().startswith('Idx\tRatio\tTrain\tVal\tName\n')


def test_coco_stuff_pixels_follow_mmseg_mapping(prepared_datasets, synth_archives):
    # raw id -> on-disk train id, from mmseg 0.30 coco_stuff10k.py: ids 0..11 keep their value,
    # 12 is unused so 13 -> 12, the first stuff id 92 -> 81 (after 11 unused ids), 182 -> 171
    expected = {0: 0, 1: 1, 11: 11, 13: 12, 25: 24, 92: 81, 118: 107, 150: 139, 182: 171}
    root = prepared_datasets / 'coco_stuff10k'
    seen = set()
    with zipfile.ZipFile(synth_archives / 'cocostuff-10k-v1.1.zip') as archive:
        for split, folder in (('train', 'train2014'), ('test', 'test2014')):
            for stem in archive.read(f'imageLists/{split}.txt').decode().split():
                raw = loadmat(io.BytesIO(archive.read(f'annotations/{stem}.mat')))['S']
                stored = png(root / 'annotations' / folder / f'{stem}_labelTrainIds.png')
                assert (root / 'images' / folder / f'{stem}.jpg').is_file()
                for raw_id in np.unique(raw):
                    assert np.all(stored[raw == raw_id] == expected[int(raw_id)]), (stem, raw_id)
                    seen.add(int(raw_id))
    assert {0, 11, 13, 182} <= seen


def visible_categories(doc, image):
    """Per pixel, the category of the last annotation covering it (0 = none), decoded here."""
    out = np.zeros((image['height'], image['width']), dtype=np.int32)
    for ann in doc['annos_segmentation']:
        if ann['image_id'] == image['image_id']:
            out[coco_mask.decode(ann['segmentation']).astype(bool)] = ann['category_id']
    return out


# Detail category id -> on-disk value: the 59 classes in id order are 1..59 (aeroplane=2 -> 1,
# bag=9 -> 2, floor=158 -> 26, person=284 -> 37, sky=360 -> 47, wood=458 -> 59); accordion=1 is
# outside the 59 and, like pixels without annotation (0), becomes background 0
PASCAL_EXPECTED = {0: 0, 1: 0, 2: 1, 9: 2, 158: 26, 284: 37, 360: 47, 458: 59}


def test_pascal_context_pixels_follow_the_59_class_mapping(prepared_datasets, synth_archives):
    expected = PASCAL_EXPECTED
    doc = json.loads((synth_archives / 'trainval_merged.json').read_text())
    seen = set()
    for image in doc['images']:
        categories = visible_categories(doc, image)
        stored = png(prepared_datasets / VOC_ROOT / 'SegmentationClassContext' /
                     image['file_name'].replace('.jpg', '.png'))
        for category in np.unique(categories):
            assert np.all(stored[categories == category] == expected[int(category)])
            seen.add(int(category))
    assert {0, 1, 2, 458} <= seen


def test_pascal_context_later_annotations_win(prepared_datasets, synth_archives):
    doc = json.loads((synth_archives / 'trainval_merged.json').read_text())
    image = doc['images'][0]
    anns = [a for a in doc['annos_segmentation'] if a['image_id'] == image['image_id']]
    last = coco_mask.decode(anns[-1]['segmentation']).astype(bool)
    earlier = np.any([coco_mask.decode(a['segmentation']) for a in anns[:-1]], axis=0)
    assert (last & earlier).any(), 'the synthetic image should have overlapping annotations'
    stored = png(prepared_datasets / VOC_ROOT / 'SegmentationClassContext' /
                 image['file_name'].replace('.jpg', '.png'))
    assert np.all(stored[last] == PASCAL_EXPECTED[anns[-1]['category_id']])


def test_pascal_context_split_lists_come_from_the_json_phases(prepared_datasets, synth_archives):
    doc = json.loads((synth_archives / 'trainval_merged.json').read_text())
    lists = prepared_datasets / VOC_ROOT / 'ImageSets/SegmentationContext'
    for phase in ('train', 'val'):
        stems = sorted(i['file_name'][:-4] for i in doc['images'] if i['phase'] == phase)
        assert (lists / f'{phase}.txt').read_text() == ''.join(f'{s}\n' for s in stems)
    # the tar's extra image (in no phase) is extracted but listed nowhere
    assert (prepared_datasets / VOC_ROOT / 'JPEGImages/2010_999999.jpg').is_file()
    assert '2010_999999' not in (lists / 'train.txt').read_text() + (lists / 'val.txt').read_text()


@pytest.mark.parametrize('dataset,num_classes', [('ade20k', 150), ('coco_stuff10k', 171),
                                                 ('pascal_context', 59)])
def test_manifest_describes_the_prepared_data(prepared_datasets, dataset, num_classes):
    doc = manifest(prepared_datasets, dataset)
    assert doc['synthetic'] is True and doc['synthetic_marker']['counts'] == {'train': 8, 'val': 4}
    assert doc['num_classes'] == num_classes and doc['reduce_zero_label'] is True
    assert (prepared_datasets / doc['data_root']).is_dir()
    for split, count in (('train', 8), ('val', 4)):
        entry = doc['splits'][split]
        assert entry['count'] == count
        ann_dir = prepared_datasets / doc['data_root'] / entry['ann_dir']
        values = set()
        for path in ann_dir.glob('*.png'):
            values |= set(np.unique(png(path)).tolist())
        if dataset != 'pascal_context':   # Pascal's ann_dir holds both splits
            assert entry['label_values'] == sorted(values)
        assert 0 in entry['label_values'] and max(entry['label_values']) <= num_classes
        assert entry['classes_present'] == [v - 1 for v in entry['label_values'] if v]
    assert doc['splits']['train']['label_values'][-1] == num_classes   # edge case: last class


def test_manifest_list_hash_is_the_pascal_split_file(prepared_datasets):
    doc = manifest(prepared_datasets, 'pascal_context')
    for split in ('train', 'val'):
        listed = prepared_datasets / VOC_ROOT / doc['splits'][split]['split']
        assert doc['splits'][split]['list_sha256'] == hashlib.sha256(listed.read_bytes()).hexdigest()
    assert doc['notes']['split_vs_voc2010_main'] == {'train': 'identical', 'val': 'identical'}
    assert doc['notes']['images_with_pixels_outside_59'] >= 1


def tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def test_prepare_is_idempotent(run_cli, synth_archives, tmp_path):
    raw, out = tmp_path / 'raw', tmp_path / 'out'
    assert run_cli('download', 'coco_stuff10k', '--sources', synth_archives / 'sources.yaml',
                   '--dest', raw).code == 0
    first = run_cli('prepare', 'coco_stuff10k', '--raw', raw, '--out', out, '--jobs', 2)
    assert first.code == 0, first.err
    before = tree(out)
    again = run_cli('prepare', 'coco_stuff10k', '--raw', raw, '--out', out)
    assert again.code == 0 and 'up to date' in again.err
    forced = run_cli('prepare', 'coco_stuff10k', '--raw', raw, '--out', out, '--jobs', 1, '--force')
    assert forced.code == 0, forced.err
    assert tree(out) == before   # same bytes, serial or parallel


def strip_marker(source, target):
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, 'w') as zout:
        for info in zin.infolist():
            if not info.filename.endswith('CGRSEG_SYNTHETIC.json'):
                zout.writestr(info, zin.read(info))


def test_real_archives_get_counts_from_the_data_file(run_cli, synth_archives, tmp_path):
    # an archive without the synthetic marker is treated as real: counts come from --sources
    raw = tmp_path / 'raw'
    raw.mkdir()
    strip_marker(synth_archives / 'ADEChallengeData2016.zip', raw / 'ADEChallengeData2016.zip')
    sources = tmp_path / 'sources.yaml'
    text = (synth_archives / 'sources.yaml').read_text()
    sources.write_text(text.replace('checksum: sha256:', 'checksum: null  # ').replace(
        'train: 8', 'train: 9'))
    wrong = run_cli('prepare', 'ade20k', '--raw', raw, '--out', tmp_path / 'out',
                    '--sources', sources)
    assert wrong.code == 2
    assert wrong.error_lines == [
        f'cgrseg prepare: error: {raw / "ADEChallengeData2016.zip"}:ADEChallengeData2016/images/'
        'training: 8 train images, expected 9']
    assert not (tmp_path / 'out').exists()
    sources.write_text(text.replace('checksum: sha256:', 'checksum: null  # '))
    right = run_cli('prepare', 'ade20k', '--raw', raw, '--out', tmp_path / 'out',
                    '--sources', sources)
    assert right.code == 0, right.err
    assert manifest(tmp_path / 'out', 'ade20k')['synthetic'] is False


def test_real_archives_must_match_the_pinned_checksum(run_cli, synth_archives, tmp_path):
    raw = tmp_path / 'raw'
    raw.mkdir()
    strip_marker(synth_archives / 'ADEChallengeData2016.zip', raw / 'ADEChallengeData2016.zip')
    result = run_cli('prepare', 'ade20k', '--raw', raw, '--out', tmp_path / 'out',
                     '--sources', synth_archives / 'sources.yaml')
    assert result.code == 2
    assert 'ADEChallengeData2016.zip: checksum mismatch: expected sha256:' in result.error_lines[0]


def test_failed_rerun_keeps_the_previous_output(run_cli, synth_archives, tmp_path):
    raw, out = tmp_path / 'raw', tmp_path / 'out'
    raw.mkdir()
    shutil.copy(synth_archives / 'ADEChallengeData2016.zip', raw)
    assert run_cli('prepare', 'ade20k', '--raw', raw, '--out', out, '--jobs', 1).code == 0
    before = tree(out)
    (raw / 'ADEChallengeData2016.zip').write_bytes(b'PK\x03\x04 truncated')
    assert run_cli('prepare', 'ade20k', '--raw', raw, '--out', out).code == 2
    assert tree(out) == before


def test_real_archive_must_match_the_recorded_sha256(run_cli, synth_archives, tmp_path):
    # no pinned checksum: the sha256 that download recorded next to the archive is enforced
    raw = tmp_path / 'raw'
    raw.mkdir()
    strip_marker(synth_archives / 'ADEChallengeData2016.zip', raw / 'ADEChallengeData2016.zip')
    (raw / 'ADEChallengeData2016.zip.sha256').write_text(f'{"0" * 64}  ADEChallengeData2016.zip\n')
    sources = tmp_path / 'sources.yaml'
    sources.write_text((synth_archives / 'sources.yaml').read_text().replace(
        'checksum: sha256:', 'checksum: null  # '))
    result = run_cli('prepare', 'ade20k', '--raw', raw, '--out', tmp_path / 'out',
                     '--sources', sources)
    assert result.code == 2 and not (tmp_path / 'out').exists()
    assert f'expected sha256:{"0" * 64}, got sha256:' in result.error_lines[0]
    assert f'delete it and run `cgrseg download` again' in result.error_lines[0]


def test_coco_stuff_accepts_labels_stored_as_double():
    from cgrseg.data.coco_stuff10k import label_field, map_labels
    buffer = io.BytesIO()
    savemat(buffer, {'S': np.array([[0.0, 13.0], [182.0, 11.0]])})
    raw = label_field(buffer.getvalue(), 'x.mat')
    assert map_labels(raw, 'x.mat').tolist() == [[0, 12], [171, 11]]


def test_label_field_is_what_mmsegs_converter_reads(synth_archives):
    """prepare reads S through scipy's varmats/whosmat after its checks; mmseg's converter reads
    loadmat(f)['S']: the same array, compressed or not, whatever else the file holds."""
    from scipy.io import loadmat

    from cgrseg.data.coco_stuff10k import label_field
    samples = []
    with zipfile.ZipFile(synth_archives / 'cocostuff-10k-v1.1.zip') as archive:
        samples += [archive.read(n) for n in archive.namelist() if n.endswith('.mat')]
    for compress in (False, True):
        for labels in (np.arange(35, dtype=np.uint16).reshape(7, 5), np.full((3, 4), 182.0)):
            buffer = io.BytesIO()
            savemat(buffer, {'names': np.array(['a', 'bb'], dtype=object), 'x': 1.5, 'S': labels,
                             'cube': np.ones((3, 4, 2))}, do_compression=compress)
            samples.append(buffer.getvalue())
    for data in samples:
        reference = loadmat(io.BytesIO(data))['S']
        ours = label_field(data, 'x.mat', reference.shape)
        assert ours.dtype == reference.dtype and np.array_equal(ours, reference)
