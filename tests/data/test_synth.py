"""cgrseg synth: the official archive formats, with known content, reproducibly."""
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.io import loadmat

from cgrseg.data import sources
from cgrseg.data.synth import split_counts


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ade20k_zip_has_the_official_layout(synth_archives):
    with zipfile.ZipFile(synth_archives / 'ADEChallengeData2016.zip') as archive:
        names = archive.namelist()
        pattern = re.compile(r'ADEChallengeData2016/(images/(training/ADE_train|validation/ADE_val)'
                             r'_\d{8}\.jpg|annotations/(training/ADE_train|validation/ADE_val)'
                             r'_\d{8}\.png|objectInfo150\.txt|sceneCategories\.txt|'
                             r'CGRSEG_SYNTHETIC\.json)')
        assert all(pattern.fullmatch(n) for n in names), names
        png = archive.read('ADEChallengeData2016/annotations/training/ADE_train_00000001.png')
        jpg = archive.read('ADEChallengeData2016/images/training/ADE_train_00000001.jpg')
    labels = Image.open(io.BytesIO(png))
    assert labels.mode == 'L' and labels.size == Image.open(io.BytesIO(jpg)).size
    assert 96 <= min(labels.size) and max(labels.size) <= 128
    assert {0, 1, 150} <= set(np.unique(labels).tolist())   # ignored, first and last class
    assert sum(n.endswith('.jpg') and '/training/' in n for n in names) == 8
    assert sum(n.endswith('.png') and '/validation/' in n for n in names) == 4


def test_coco_stuff_zip_has_mat_files_with_s(synth_archives):
    with zipfile.ZipFile(synth_archives / 'cocostuff-10k-v1.1.zip') as archive:
        train = archive.read('imageLists/train.txt').decode().split()
        test = archive.read('imageLists/test.txt').decode().split()
        assert len(train) == 8 and len(test) == 4
        mat = loadmat(io.BytesIO(archive.read(f'annotations/{train[0]}.mat')))
        image = Image.open(io.BytesIO(archive.read(f'images/{train[0]}.jpg')))
    assert mat['S'].dtype == np.uint16 and mat['S'].shape == image.size[::-1]
    assert {0, 11, 13, 182} <= set(np.unique(mat['S']).tolist())
    assert train[0] == 'COCO_train2014_000000000001'


def test_pascal_context_json_follows_the_detail_schema(synth_archives):
    doc = json.loads((synth_archives / 'trainval_merged.json').read_text())
    assert {'images', 'annos_segmentation', 'categories', 'parts', 'annos_occlusion',
            'annos_boundary'} <= set(doc)
    image = doc['images'][0]
    assert set(image) == {'image_id', 'file_name', 'height', 'width', 'phase'}
    assert image['image_id'] == int(image['file_name'][:-4].replace('_', ''))
    ann = doc['annos_segmentation'][0]
    assert {'id', 'image_id', 'category_id', 'segmentation', 'area', 'bbox', 'iscrowd',
            'parts'} <= set(ann)
    assert ann['segmentation']['size'] == [image['height'], image['width']]
    assert isinstance(ann['segmentation']['counts'], str)   # compressed RLE
    assert {c['category_id'] for c in doc['categories']} >= {1, 2, 458}
    assert [sum(i['phase'] == p for i in doc['images']) for p in ('train', 'val')] == [8, 4]


def test_pascal_context_tar_has_the_voc2010_layout(synth_archives):
    with tarfile.open(synth_archives / 'VOCtrainval_03-May-2010.tar') as tar:
        names = tar.getnames()
    assert names[0] == 'VOCdevkit/VOC2010/CGRSEG_SYNTHETIC.json'
    assert all(n.startswith('VOCdevkit/VOC2010/') for n in names)
    assert 'VOCdevkit/VOC2010/ImageSets/Main/train.txt' in names
    assert sum(n.startswith('VOCdevkit/VOC2010/JPEGImages/') for n in names) == 8 + 4 + 1


def test_sources_file_lists_every_archive_with_its_checksum(synth_archives):
    doc = sources.load(synth_archives / 'sources.yaml')
    assert sorted(doc['datasets']) == ['ade20k', 'coco_stuff10k', 'pascal_context']
    for entry in doc['datasets'].values():
        assert entry['synthetic'] is True and entry['counts'] == {'train': 8, 'val': 4}
        for archive in entry['archives']:
            path = synth_archives / archive['name']
            assert archive['url'] == path.as_uri()
            assert archive['checksum'] == f'sha256:{digest(path)}'
    sums = (synth_archives / 'pascal_context.SHA256SUMS').read_text().splitlines()
    assert sums == [f'{digest(synth_archives / n)}  {n}'
                    for n in ('VOCtrainval_03-May-2010.tar', 'trainval_merged.json')]


def test_same_seed_same_bytes(run_cli, synth_archives, tmp_path):
    for dataset in ('ade20k', 'coco_stuff10k', 'pascal_context'):
        assert run_cli('synth', dataset, '--out', tmp_path / 'again').code == 0
    for name in ('ADEChallengeData2016.zip', 'cocostuff-10k-v1.1.zip',
                 'VOCtrainval_03-May-2010.tar', 'trainval_merged.json'):
        assert digest(tmp_path / 'again' / name) == digest(synth_archives / name), name
    assert run_cli('synth', 'ade20k', '--out', tmp_path / 'other', '--seed', 1).code == 0
    assert digest(tmp_path / 'other' / 'ADEChallengeData2016.zip') != \
        digest(synth_archives / 'ADEChallengeData2016.zip')


def test_images_scales_the_splits(run_cli, tmp_path):
    assert split_counts(8) == {'train': 8, 'val': 4}
    assert split_counts(1) == {'train': 1, 'val': 2}
    assert run_cli('synth', 'coco_stuff10k', '--out', tmp_path, '--images', 3).code == 0
    entry = yaml.safe_load((tmp_path / 'sources.yaml').read_text())['datasets']['coco_stuff10k']
    assert entry['counts'] == {'train': 3, 'val': 2}
    bad = run_cli('synth', 'coco_stuff10k', '--out', tmp_path, '--images', 0)
    assert bad.code == 2 and bad.error_lines == [
        'cgrseg synth: error: argument --images: 0 is less than the minimum of 1']


def test_images_show_their_labels_in_colour(synth_archives):
    # learnable: the mean colour inside each label region is near that label's own colour
    from cgrseg.data.common import palette
    with zipfile.ZipFile(synth_archives / 'ADEChallengeData2016.zip') as archive:
        stem = 'ADEChallengeData2016/{}/training/ADE_train_00000002.{}'
        image = np.asarray(Image.open(io.BytesIO(archive.read(stem.format('images', 'jpg')))))
        labels = np.asarray(Image.open(io.BytesIO(archive.read(stem.format('annotations', 'png')))))
    for value in np.unique(labels):
        region = image[labels == value].astype(float)
        if len(region) > 100:
            assert np.abs(region.mean(0) - palette(int(value))).max() < 30


@pytest.mark.slow
def test_console_chain_synth_download_prepare(tmp_path):
    """The real entry point, as the workflow calls it (one process per step)."""
    def cgrseg(*argv):
        return subprocess.run([sys.executable, '-m', 'cgrseg.cli', *map(str, argv)],
                              capture_output=True, text=True, check=False, timeout=300)
    steps = [('synth', 'pascal_context', '--out', tmp_path / 's', '--images', 2),
             ('download', 'pascal_context', '--sources', tmp_path / 's/sources.yaml',
              '--dest', tmp_path / 'raw'),
             ('prepare', 'pascal_context', '--raw', tmp_path / 'raw', '--out', tmp_path / 'out')]
    for step in steps:
        result = cgrseg(*step)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / 'out/pascal_context.manifest.json').is_file()
