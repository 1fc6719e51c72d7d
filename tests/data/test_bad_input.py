"""cgrseg prepare on broken inputs: one clear error line naming the file, exit 2, no output left."""
import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.io import savemat

ADE, COCO = 'ADEChallengeData2016.zip', 'cocostuff-10k-v1.1.zip'
TAR, JSON = 'VOCtrainval_03-May-2010.tar', 'trainval_merged.json'


def rewrite_zip(path, edit):
    """Rewrite the zip at ``path`` with ``edit(name, data)`` -> new bytes, or None to drop."""
    with zipfile.ZipFile(path) as zin:
        members = [(info.filename, zin.read(info)) for info in zin.infolist()]
    with zipfile.ZipFile(path, 'w') as zout:
        for name, data in members:
            data = edit(name, data)
            if data is not None:
                zout.writestr(name, data)


def truncate(path, fraction=0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def mat(**fields):
    buffer = io.BytesIO()
    savemat(buffer, fields)
    return buffer.getvalue()


def png_bytes(labels):
    buffer = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8), mode='L').save(buffer, format='PNG')
    return buffer.getvalue()


def first_member(path, suffix):
    with zipfile.ZipFile(path) as archive:
        return sorted(n for n in archive.namelist() if n.endswith(suffix))[0]


@pytest.fixture
def prepare_fails(run_cli, raw, tmp_path):
    """Run prepare into a fresh OUT; assert one error line with ``fragments``, exit 2, and that
    OUT was not even created."""
    def check(dataset, *fragments, jobs=2):
        out = tmp_path / 'out'
        result = run_cli('prepare', dataset, '--raw', raw, '--out', out, '--jobs', jobs)
        assert result.code == 2, result.err
        assert len(result.error_lines) == 1, result.err
        line = result.error_lines[0]
        assert line.startswith('cgrseg prepare: error: ')
        for fragment in fragments:
            assert fragment in line, line
        assert not out.exists(), sorted(out.rglob('*'))
        return line
    return check


@pytest.mark.parametrize('name,dataset', [(ADE, 'ade20k'), (COCO, 'coco_stuff10k')])
def test_truncated_zip(prepare_fails, raw, name, dataset):
    truncate(raw / name)
    prepare_fails(dataset, f'{raw / name}: not a readable zip archive')


def test_truncated_tar(prepare_fails, raw):
    truncate(raw / TAR)
    prepare_fails('pascal_context', str(raw / TAR))


def test_truncated_json(prepare_fails, raw):
    truncate(raw / JSON)
    prepare_fails('pascal_context', f'{raw / JSON}: not readable JSON')


def test_missing_split_list(prepare_fails, raw):
    rewrite_zip(raw / COCO, lambda name, data: None if name == 'imageLists/test.txt' else data)
    prepare_fails('coco_stuff10k', f'{raw / COCO}: missing split list imageLists/test.txt')


def test_mat_without_s(prepare_fails, raw):
    target = first_member(raw / COCO, '.mat')
    rewrite_zip(raw / COCO, lambda name, data: mat(labels=np.zeros((4, 4), np.uint16))
                if name == target else data)
    prepare_fails('coco_stuff10k', f'{raw / COCO}:{target}: no label field S (fields: labels)')


def coco_image_shape(path, target):
    stem = target[len('annotations/'):-len('.mat')]
    with zipfile.ZipFile(path) as archive:
        width, height = Image.open(io.BytesIO(archive.read(f'images/{stem}.jpg'))).size
    return height, width


def test_mat_with_fractional_labels(prepare_fails, raw):
    target = first_member(raw / COCO, '.mat')
    labels = np.full(coco_image_shape(raw / COCO, target), 1.5)
    rewrite_zip(raw / COCO, lambda name, data: mat(S=labels) if name == target else data)
    prepare_fails('coco_stuff10k', f'{target}: S must be a 2-D map of whole-number labels, not float64')


@pytest.mark.parametrize('bad_id', [12, 183])   # an unused thing id, and past the last id
def test_coco_label_id_out_of_range(prepare_fails, raw, bad_id):
    target = first_member(raw / COCO, '.mat')
    labels = np.ones(coco_image_shape(raw / COCO, target), np.uint16)
    labels[0, 0] = bad_id
    rewrite_zip(raw / COCO, lambda name, data: mat(S=labels) if name == target else data)
    prepare_fails('coco_stuff10k', f'{target}: label id {bad_id} out of range', jobs=1)


def test_ade_label_out_of_range(prepare_fails, raw):
    target = first_member(raw / ADE, '.png')

    def edit(name, data):
        if name != target:
            return data
        labels = np.array(Image.open(io.BytesIO(data)))
        labels[-1, -1] = 151
        return png_bytes(labels)

    rewrite_zip(raw / ADE, edit)
    stem = target.rsplit('/', 1)[1][:-4]
    prepare_fails('ade20k', f'{stem}.png: label 151 out of range 0..150')


def test_ade_image_without_annotation(prepare_fails, raw):
    target = first_member(raw / ADE, '.png')
    rewrite_zip(raw / ADE, lambda name, data: None if name == target else data)
    stem = target.rsplit('/', 1)[1][:-4]
    prepare_fails('ade20k', f'{stem} has no annotation')


def test_pascal_category_out_of_range(prepare_fails, raw):
    doc = json.loads((raw / JSON).read_text())
    doc['annos_segmentation'][3]['category_id'] = 999
    (raw / JSON).write_text(json.dumps(doc))
    ann_id = doc['annos_segmentation'][3]['id']
    prepare_fails('pascal_context', f'{raw / JSON}: annotation {ann_id} has category_id 999')


def test_pascal_mask_size_mismatch(prepare_fails, raw):
    doc = json.loads((raw / JSON).read_text())
    doc['images'][0]['height'] += 1
    (raw / JSON).write_text(json.dumps(doc))
    prepare_fails('pascal_context', f'{JSON}:{doc["images"][0]["file_name"]}: JSON says')


@pytest.mark.parametrize('dataset,missing', [('ade20k', ADE), ('pascal_context', JSON)])
def test_raw_without_the_archive(prepare_fails, raw, dataset, missing):
    (raw / missing).unlink()
    prepare_fails(dataset, f'{raw}: no {missing}', 'cgrseg download')


def test_raw_with_another_datasets_archive(run_cli, raw, tmp_path):
    (raw / COCO).replace(raw / ADE)
    out = tmp_path / 'out'
    # with the published checksum, the wrong archive is caught by it ...
    result = run_cli('prepare', 'ade20k', '--raw', raw, '--out', out)
    assert result.code == 2 and not out.exists()
    assert result.error_lines == [f'cgrseg prepare: error: {ADE}: checksum mismatch: expected '
                                  f'sha1:219e1696abb36c8ba3a3afe7fb2f4b4606a897c7, got sha1:'
                                  f'{hashlib.sha1((raw / ADE).read_bytes()).hexdigest()}']
    # ... and without one (a mirror's data file), by its layout
    sources = tmp_path / 'sources.yaml'
    sources.write_text(yaml.safe_dump({'datasets': {'ade20k': {
        'archives': [{'name': ADE, 'url': 'file:///x', 'checksum': None}],
        'counts': {'train': 1, 'val': 1}}}}))
    result = run_cli('prepare', 'ade20k', '--raw', raw, '--out', out, '--sources', sources)
    assert result.code == 2 and not out.exists()
    assert result.error_lines == [f'cgrseg prepare: error: {raw / ADE}: no ADEChallengeData2016/'
                                  'images/training/*.jpg -- not the ADEChallengeData2016 archive']


def test_count_differs_from_the_marker(prepare_fails, raw):
    def edit(name, data):
        if not name.endswith('CGRSEG_SYNTHETIC.json'):
            return data
        marker = json.loads(data)
        marker['counts']['val'] += 1
        return json.dumps(marker).encode()

    rewrite_zip(raw / COCO, edit)
    prepare_fails('coco_stuff10k', f'{raw / COCO}:imageLists/test.txt: 4 val images, expected 5')


def test_failure_keeps_other_datasets_output(run_cli, raw, tmp_path):
    out = tmp_path / 'out'
    assert run_cli('prepare', 'ade20k', '--raw', raw, '--out', out, '--jobs', 1).code == 0
    before = sorted(out.rglob('*'))
    truncate(raw / TAR)
    assert run_cli('prepare', 'pascal_context', '--raw', raw, '--out', out).code == 2
    assert sorted(out.rglob('*')) == before   # no VOCdevkit/, no leftovers
