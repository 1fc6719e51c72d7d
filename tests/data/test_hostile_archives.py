"""cgrseg prepare on hostile archives: names that try to leave the output folder, members and images
that expand hugely, overlapping splits, undecodable names, a full disk. Each gets one error line,
exit 2, nothing written, and (for the expanding ones) a bounded peak memory."""
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from scipy.io import savemat

import cgrseg

ADE, COCO = 'ADEChallengeData2016.zip', 'cocostuff-10k-v1.1.zip'
TAR, JSON = 'VOCtrainval_03-May-2010.tar', 'trainval_merged.json'
VOC = 'VOCdevkit/VOC2010/'
SRC = Path(cgrseg.__file__).resolve().parents[1]   # the children run the cgrseg under test
PEAK_RSS_MB = 300


def edit_zip(path, edit=lambda name, data: data, add=(), large=()):
    """Rewrite the zip at ``path``: ``edit(name, data)`` -> bytes or None (drop), then the
    ``add`` pairs (name, bytes), then ``large`` pairs (name, size) of zeros streamed in."""
    with zipfile.ZipFile(path) as zin:
        members = [(info.filename, zin.read(info)) for info in zin.infolist()]
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zout:
        for name, data in members:
            data = edit(name, data)
            if data is not None:
                zout.writestr(name, data)
        for name, data in add:
            zout.writestr(name, data)
        for name, size in large:
            with zout.open(name, 'w', force_zip64=True) as f:
                block = bytes(1 << 20)
                for _ in range(size >> 20):
                    f.write(block)


def bump_marker(path, prefix='', train=0, val=0):
    """The edit that adds ``train``/``val`` images to the synthetic marker's expected counts."""
    def edit(name, data):
        if name != prefix + 'CGRSEG_SYNTHETIC.json':
            return data
        marker = json.loads(data)
        marker['counts']['train'] += train
        marker['counts']['val'] += val
        return json.dumps(marker).encode()
    return edit


def coco_first(path, split='train'):
    with zipfile.ZipFile(path) as archive:
        stem = archive.read(f'imageLists/{"train" if split == "train" else "test"}.txt').split()[0]
        stem = stem.decode()
        return stem, archive.read(f'images/{stem}.jpg'), archive.read(f'annotations/{stem}.mat')


def append_line(name, data, target, line):
    return data + line.encode() + b'\n' if name == target else data


@pytest.fixture
def fails(run_cli, raw, tmp_path):
    """Run prepare into a fresh OUT: one error line holding ``fragments``, exit 2, OUT not created."""
    def check(dataset, *fragments, jobs=1):
        out = tmp_path / 'out'
        result = run_cli('prepare', dataset, '--raw', raw, '--out', out, '--jobs', jobs)
        assert result.code == 2, result.err
        assert result.err.count('\n') == 1 and len(result.error_lines) == 1, result.err
        for fragment in fragments:
            assert fragment in result.error_lines[0], result.error_lines[0]
        assert not out.exists(), sorted(out.rglob('*'))
        return result.error_lines[0]
    return check


# ---------------------------------------------------------------- confinement

@pytest.mark.parametrize('escape', ['../../../../escaped', 'ABSOLUTE'])
def test_coco_list_entry_cannot_write_outside_out(fails, raw, tmp_path, escape):
    target = tmp_path / 'victim' / 'escaped'
    entry = str(target) if escape == 'ABSOLUTE' else escape
    stem, jpg, mat = coco_first(raw / COCO)
    edit = bump_marker(raw / COCO, train=1)
    edit_zip(raw / COCO, lambda n, d: append_line(n, edit(n, d), 'imageLists/train.txt', entry),
             add=[(f'images/{entry}.jpg', jpg), (f'annotations/{entry}.mat', mat)])
    (tmp_path / 'victim').mkdir()
    if escape == 'ABSOLUTE':   # members 'images//tmp/...' stay in the archive root: the list entry
        fails('coco_stuff10k', f'{raw / COCO}: imageLists/train.txt: {entry!r} is not a plain file name')
    else:                      # refused already for its members 'images/../../..'
        fails('coco_stuff10k', f"{raw / COCO}: member 'images/{entry}.jpg' escapes the archive root")
    assert list((tmp_path / 'victim').iterdir()) == []
    assert not list(tmp_path.glob('**/escaped*')) and not Path('/escaped.jpg').exists()


@pytest.mark.parametrize('file_name', ['../../outside.jpg', 'ABSOLUTE', 'sub/x.jpg'])
def test_pascal_json_file_name_must_be_a_plain_name(fails, raw, tmp_path, file_name):
    doc = json.loads((raw / JSON).read_text())
    outside = tmp_path / 'outside.jpg'
    image = doc['images'][0]
    with tarfile.open(raw / TAR) as tar:
        outside.write_bytes(tar.extractfile(VOC + 'JPEGImages/' + image['file_name']).read())
    image['file_name'] = str(outside) if file_name == 'ABSOLUTE' else file_name
    (raw / JSON).write_text(json.dumps(doc))
    fails('pascal_context', f'{raw / JSON}: image', repr(image['file_name']), 'not a plain file name')


@pytest.mark.parametrize('dataset,archive,member', [
    ('ade20k', ADE, 'ADEChallengeData2016/../../escaped.jpg'),
    ('ade20k', ADE, '/tmp/escaped.jpg'),
    ('coco_stuff10k', COCO, 'images/../../escaped.jpg'),
])
def test_zip_member_escaping_the_archive_root_is_refused(fails, raw, dataset, archive, member):
    edit_zip(raw / archive, add=[(member, b'x')])
    fails(dataset, f'{raw / archive}: member {member!r} escapes the archive root')


@pytest.mark.parametrize('member', [VOC + '../../escaped.txt', '/tmp/escaped.txt'])
def test_tar_member_escaping_the_archive_root_is_refused(fails, raw, member):
    with tarfile.open(raw / TAR, 'a') as tar:
        tar.addfile(tarfile.TarInfo(member), io.BytesIO(b''))
    fails('pascal_context', f'{raw / TAR}: member {member!r} escapes the archive root')


def test_tar_links_are_never_extracted(run_cli, raw, tmp_path):
    with tarfile.open(raw / TAR, 'a') as tar:
        for kind, name in ((tarfile.SYMTYPE, 'sym.jpg'), (tarfile.LNKTYPE, 'hard.jpg')):
            info = tarfile.TarInfo(VOC + 'JPEGImages/' + name)
            info.type, info.linkname = kind, '/etc/passwd'
            tar.addfile(info)
    result = run_cli('prepare', 'pascal_context', '--raw', raw, '--out', tmp_path / 'out')
    assert result.code == 0, result.err
    assert not [p for p in (tmp_path / 'out').rglob('*') if p.is_symlink() or p.name.endswith(
        ('sym.jpg', 'hard.jpg'))]


def test_coco_same_id_in_train_and_test_is_refused(fails, raw):
    stem, _, _ = coco_first(raw / COCO)
    edit = bump_marker(raw / COCO, val=1)
    edit_zip(raw / COCO, lambda n, d: append_line(n, edit(n, d), 'imageLists/test.txt', stem))
    fails('coco_stuff10k', f'{raw / COCO}: {stem} is in imageLists/train.txt and imageLists/test.txt')


def test_pascal_same_image_twice_is_refused(fails, raw):
    doc = json.loads((raw / JSON).read_text())
    train = next(i for i in doc['images'] if i['phase'] == 'train')
    doc['images'].append(dict(train, image_id=999999, phase='val'))
    (raw / JSON).write_text(json.dumps(doc))
    fails('pascal_context', f'{raw / JSON}: image {train["file_name"]!r} is listed twice')


def test_ade_same_stem_in_training_and_validation_is_refused(fails, raw):
    prefix = 'ADEChallengeData2016/'
    with zipfile.ZipFile(raw / ADE) as archive:
        name = sorted(n for n in archive.namelist() if '/training/' in n and n.endswith('.jpg'))[0]
        stem = name.rsplit('/', 1)[1][:-4]
        jpg, png = archive.read(name), archive.read(f'{prefix}annotations/training/{stem}.png')
    edit = bump_marker(raw / ADE, prefix, val=1)
    edit_zip(raw / ADE, edit, add=[(f'{prefix}images/validation/{stem}.jpg', jpg),
                                   (f'{prefix}annotations/validation/{stem}.png', png)])
    fails('ade20k', f'{raw / ADE}: {stem} is in training and validation')


def test_coco_list_of_millions_of_lines_is_refused(fails, raw):
    edit_zip(raw / COCO, lambda n, d: None if n == 'imageLists/train.txt' else d,
             add=[('imageLists/train.txt', b'a\n' * (4 << 20))])   # 8 MB, deflated to 8 kB
    fails('coco_stuff10k', f'{raw / COCO}:imageLists/train.txt declares {8 << 20} bytes, more than')


def test_zip_bomb_of_many_plausible_members_is_refused(fails, raw, monkeypatch):
    from cgrseg.data import common
    monkeypatch.setattr(common, 'EXPANSION_FLOOR', 1 << 20)   # the real floor is 1 GiB
    edit_zip(raw / COCO, large=[(f'images/filler{i}.jpg', 2 << 20) for i in range(3)])
    fails('coco_stuff10k', f'{raw / COCO}: its members declare', 'a zip bomb?')


# ---------------------------------------------------------------- undecodable input

@pytest.mark.parametrize('content', [b'', b'\xff\xfe  x.zip\n', b'not-hex  x.zip\n'])
@pytest.mark.parametrize('command', ['download', 'prepare'])
def test_broken_recorded_checksum_is_one_line(run_cli, raw, tmp_path, content, command):
    sources = tmp_path / 'sources.yaml'
    sources.write_text(json.dumps({'datasets': {'coco_stuff10k': {
        'archives': [{'name': COCO, 'url': (raw / COCO).as_uri(), 'checksum': None}],
        'counts': {'train': 8, 'val': 4}}}}))
    record = raw / f'{COCO}.sha256'
    record.write_bytes(content)
    if command == 'download':
        result = run_cli('download', 'coco_stuff10k', '--sources', sources, '--dest', raw)
    else:
        edit_zip(raw / COCO, lambda n, d: None if n == 'CGRSEG_SYNTHETIC.json' else d)   # "real"
        result = run_cli('prepare', 'coco_stuff10k', '--raw', raw, '--out', tmp_path / 'out',
                         '--sources', sources)
    assert result.code == 2 and result.err.count('\n') == 1, result.err
    assert result.error_lines == [f'cgrseg {command}: error: {record}: not a recorded sha256 '
                                  '("<64 hex digits>  <name>"); delete it and run `cgrseg download` '
                                  'again']


@pytest.mark.parametrize('content', ['[]', '{"archives": []}', '{"archives": {"x": 1}}'])
def test_a_manifest_of_another_shape_is_rebuilt(run_cli, raw, tmp_path, content):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'ade20k.manifest.json').write_text(content)
    result = run_cli('prepare', 'ade20k', '--raw', raw, '--out', out, '--jobs', 1)
    assert result.code == 0, result.err
    assert json.loads((out / 'ade20k.manifest.json').read_text())['dataset'] == 'ade20k'


def test_coco_list_with_non_utf8_bytes(fails, raw):
    edit_zip(raw / COCO, lambda n, d: d + b'\xff\xfe\n' if n == 'imageLists/train.txt' else d)
    fails('coco_stuff10k', f'{raw / COCO}: imageLists/train.txt is not UTF-8 text')


@pytest.mark.parametrize('dataset,archive', [('ade20k', ADE), ('coco_stuff10k', COCO)])
def test_zip_member_name_with_non_utf8_bytes(fails, raw, dataset, archive):
    edit_zip(raw / archive, add=[('\u00e9t\u00e9.txt', b'x')])   # flagged as UTF-8 by zipfile
    data = (raw / archive).read_bytes()
    assert data.count('\u00e9t\u00e9'.encode()) == 2
    (raw / archive).write_bytes(data.replace('\u00e9t\u00e9'.encode(), b'\xff\xfet\xff\xfe'))
    fails(dataset, f'{raw / archive}: not a readable zip archive', 'member name is not UTF-8')


def test_zip_named_tar(fails, raw):
    shutil.copy(raw / COCO, raw / TAR)
    fails('pascal_context', f'{raw / TAR}: not a readable tar archive')


# ---------------------------------------------------------------- headers that would cost memory

def append_to_tar(path, raw_blocks):
    """Append raw tar blocks after the last member of the tar at ``path`` (then end the archive)."""
    with tarfile.open(path) as tar:
        tar.getmembers()
        end = tar.offset
    data = path.read_bytes()[:end]
    path.write_bytes(data + raw_blocks + bytes(1024))


def gnu_long_name_blocks(name):
    """A GNU long-name header (././@LongLink, type L) carrying ``name``, padded to blocks."""
    data = name.encode() + b'\0'
    info = tarfile.TarInfo('././@LongLink')
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, len(data)
    return info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512)


def plain_member_blocks(name, data=b'', kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.type = len(data), kind
    return info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512)


@pytest.mark.parametrize('blocks, problem', [
    (lambda: gnu_long_name_blocks(VOC + 'x' * (1 << 20)) + plain_member_blocks('x'),
     f'an extended header (long member name or PAX record) of {(1 << 20) + len(VOC) + 1} bytes, '
     'more than the 65536 allowed'),
    (lambda: b''.join(gnu_long_name_blocks(VOC + f'n{i}') for i in range(6))
     + plain_member_blocks('x'), 'more than 4 extended headers in a row'),
    (lambda: plain_member_blocks(VOC + 'sparse', kind=tarfile.GNUTYPE_SPARSE), 'a sparse member'),
])
def test_tar_headers_that_would_cost_memory_are_refused(fails, raw, blocks, problem):
    """tarfile reads a GNU long name or a PAX header whole, recurses once per such header and
    reads a sparse map block after block: all refused before that."""
    append_to_tar(raw / TAR, blocks())
    fails('pascal_context', f'{raw / TAR}: not a readable tar archive ({problem}')


def test_tar_pax_header_of_megabytes_is_refused(fails, raw):
    with tarfile.open(raw / TAR, 'a', format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(VOC + 'JPEGImages/readme.txt')
        info.pax_headers = {'comment': 'x' * (2 << 20)}
        tar.addfile(info, io.BytesIO(b''))
    fails('pascal_context', f'{raw / TAR}: not a readable tar archive (an extended header',
          'more than the 65536 allowed')


def test_tar_with_too_many_members_is_refused(fails, raw, monkeypatch):
    from cgrseg.data import common
    monkeypatch.setattr(common, 'MAX_MEMBERS', 10)   # the real limit is 100,000
    fails('pascal_context', f'{raw / TAR}: more than 10 members')


def set_zip_entry_count(path, count):
    """Make the end record claim ``count`` members (a lie that zipfile does not check)."""
    data = bytearray(path.read_bytes())
    end = data.rindex(b'PK\x05\x06')
    data[end + 8:end + 12] = struct.pack('<HH', count, count)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize('lie', [False, True])
def test_zip_with_too_many_members_is_refused(fails, raw, monkeypatch, lie):
    from cgrseg.data import common
    monkeypatch.setattr(common, 'MAX_MEMBERS', 10)   # the real limit is 100,000
    with zipfile.ZipFile(raw / COCO) as archive:
        members = len(archive.infolist())
    if lie:   # counted from the directory's records, not from the end record's claim
        set_zip_entry_count(raw / COCO, 1)
    fails('coco_stuff10k', f'{raw / COCO}: {members} members, more than the 10 a dataset archive has')


def test_zip_with_a_huge_central_directory_is_refused(fails, raw, monkeypatch):
    from cgrseg.data import common
    monkeypatch.setattr(common, 'MAX_DIRECTORY_BYTES', 1000)   # the real limit is 16 MB
    fails('ade20k', f'{raw / ADE}: its central directory has', 'more than the 1000 a dataset')


def mat_bytes(**variables):
    buffer = io.BytesIO()
    savemat(buffer, variables, do_compression=True)
    return buffer.getvalue()


def replace_coco_mat(raw, make):
    """Replace the first COCO annotation by ``make(height, width)`` (bytes of a .mat file)."""
    stem, jpg, _ = coco_first(raw / COCO)
    width, height = Image.open(io.BytesIO(jpg)).size
    name = f'annotations/{stem}.mat'
    edit_zip(raw / COCO, lambda n, d: make(height, width) if n == name else d)
    return name


@pytest.fixture
def no_loadmat(monkeypatch):
    """Fail the test if the label map is ever read (refusals must come from the headers)."""
    from cgrseg.data import coco_stuff10k

    def loadmat(*args, **kwargs):
        raise AssertionError('loadmat was called')
    monkeypatch.setattr(coco_stuff10k, 'loadmat', loadmat)


def test_mat_with_two_s_variables_is_refused(fails, raw, no_loadmat):
    def two(height, width):
        first = mat_bytes(S=np.zeros((height, width), np.uint16))
        return first + mat_bytes(S=np.ones((height, width), np.uint16))[128:]
    name = replace_coco_mat(raw, two)
    fails('coco_stuff10k', f'{raw / COCO}:{name}: 2 variables named S; which one is the label map?')


def test_mat_with_a_sparse_s_is_refused_before_reading_it(fails, raw, no_loadmat):
    from scipy.sparse import csc_matrix
    name = replace_coco_mat(raw, lambda h, w: mat_bytes(S=csc_matrix(np.eye(h, w))))
    fails('coco_stuff10k', f'{raw / COCO}:{name}: S must be a 2-D map of whole-number labels, not '
          'a sparse array')


def test_mat_with_s_of_another_size_is_refused_before_reading_it(fails, raw, no_loadmat):
    name = replace_coco_mat(raw, lambda h, w: mat_bytes(S=np.zeros((h + 1, w), np.uint8)))
    fails('coco_stuff10k', f'{raw / COCO}:{name}: S is ', 'for a ')


def test_mat_s_of_another_class_is_refused(fails, raw, no_loadmat):
    name = replace_coco_mat(raw, lambda h, w: mat_bytes(S=np.array(['text'], dtype=object)))
    fails('coco_stuff10k', f'{raw / COCO}:{name}: S must be a 2-D map of whole-number labels, not '
          'a cell array')


# ---------------------------------------------------------------- every image is decoded

def truncated(data, fraction=0.6):
    return data[:int(len(data) * fraction)]


def test_truncated_ade_image_is_one_line_naming_it(fails, raw):
    with zipfile.ZipFile(raw / ADE) as archive:
        jpg = sorted(n for n in archive.namelist() if n.endswith('.jpg'))[0]
    edit_zip(raw / ADE, lambda n, d: truncated(d) if n == jpg else d)
    folder, stem = jpg.split('/')[-2:]
    fails('ade20k', f'{ADE}:{folder}/{stem}: not a readable image (image file is truncated')


def test_truncated_ade_label_is_one_line_naming_it(fails, raw):
    with zipfile.ZipFile(raw / ADE) as archive:
        png = sorted(n for n in archive.namelist() if n.endswith('.png'))[0]
    edit_zip(raw / ADE, lambda n, d: truncated(d, 0.8) if n == png else d)
    folder, stem = png.split('/')[-2:]
    fails('ade20k', f'{ADE}:{folder}/{stem}: not a readable image')


def test_truncated_coco_image_is_one_line_naming_it(fails, raw):
    stem, _, _ = coco_first(raw / COCO)
    edit_zip(raw / COCO, lambda n, d: truncated(d) if n == f'images/{stem}.jpg' else d)
    fails('coco_stuff10k', f'{raw / COCO}:images/{stem}.jpg: not a readable image (image file is '
          'truncated')


def test_truncated_pascal_image_is_one_line_naming_it(fails, raw):
    image = json.loads((raw / JSON).read_text())['images'][0]
    member = VOC + 'JPEGImages/' + image['file_name']
    with tarfile.open(raw / TAR) as tar:
        jpeg = truncated(tar.extractfile(member).read())
    with tarfile.open(raw / TAR, 'a') as tar:   # a later member of the same name replaces it
        info = tarfile.TarInfo(member)
        info.size = len(jpeg)
        tar.addfile(info, io.BytesIO(jpeg))
    fails('pascal_context', f'{TAR}:{member}: not a readable image (image file is truncated')


# ---------------------------------------------------------------- the Pascal annotation JSON

def edit_detail(raw, edit):
    doc = json.loads((raw / JSON).read_text())
    text = edit(doc)
    (raw / JSON).write_text(text if isinstance(text, str) else json.dumps(doc))
    return doc


def first_annotation(doc, phase='train'):
    image = next(i for i in doc['images'] if i['phase'] == phase)
    ann = next(a for a in doc['annos_segmentation'] if a['image_id'] == image['image_id'])
    return image, ann


def test_detail_json_nested_too_deep_is_refused(fails, raw):
    edit_detail(raw, lambda doc: doc.update(info=json.loads('[' * 100 + ']' * 100)))
    fails('pascal_context', f'{raw / JSON}: JSON is nested more than 64 levels deep')


def test_detail_json_string_longer_than_any_mask_is_refused(fails, raw, monkeypatch):
    from cgrseg.data import pascal_context
    monkeypatch.setattr(pascal_context, 'MAX_RLE_BYTES', 1000)   # the real limit is 16 MB
    edit_detail(raw, lambda doc: doc.update(info='x' * 5000))
    fails('pascal_context', f'{raw / JSON}: JSON holds a string or number of more than 1000 bytes')


def test_detail_json_with_a_section_twice_is_refused(fails, raw):
    # json.load (the Detail API) would silently keep the second "images" list
    edit_detail(raw, lambda doc: json.dumps(doc)[:-1] + ', "images": []}')
    fails('pascal_context', f'{raw / JSON}: malformed entry (the key "images" appears twice at the '
          'top level)')


@pytest.mark.parametrize('segmentation, problem', [
    ([[0, 0, 10, 0, 10, 10]], 'a segmentation is polygons; only compressed RLE masks are read'),
    ({'size': None, 'counts': [4, 4]}, 'a segmentation is an uncompressed RLE; only compressed'),
    ('text', 'a segmentation is not a mask'),
])
def test_detail_masks_other_than_compressed_rle_are_refused(fails, raw, segmentation, problem):
    """Detail's getMask decodes compressed RLE only; pycocotools' polygon code even crashes the
    process (SIGSEGV) on coordinates of 1e8."""
    doc = edit_detail(raw, lambda doc: first_annotation(doc)[1].update(segmentation=segmentation))
    image = first_annotation(doc)[0]
    fails('pascal_context', f'{JSON}:{image["file_name"]}: {problem}')


def test_detail_rle_running_past_the_image_is_one_line(fails, raw):
    def edit(doc):
        image, ann = first_annotation(doc)
        big = coco_mask.encode(np.asfortranarray(np.ones((image['height'] * 2, image['width']),
                                                         np.uint8)))
        ann['segmentation']['counts'] = big['counts'].decode()
    image = first_annotation(edit_detail(raw, edit))[0]   # pycocotools checks the runs' sum
    fails('pascal_context', f'{JSON}:{image["file_name"]}: ValueError: Invalid RLE mask')


def test_detail_annotation_without_an_integer_image_id_is_refused(fails, raw):
    doc = json.loads((raw / JSON).read_text())
    ann = first_annotation(doc)[1]
    ann['image_id'] = '2008_000001'
    (raw / JSON).write_text(json.dumps(doc))
    fails('pascal_context', f'{raw / JSON}: malformed entry (annotation {ann["id"]} has image_id '
          "'2008_000001')")


def test_detail_json_with_too_many_annotations_is_refused(fails, raw, monkeypatch):
    from cgrseg.data import pascal_context
    monkeypatch.setattr(pascal_context, 'MAX_ANNOTATIONS', 5)   # the real limit is 1,000,000
    fails('pascal_context', f'{raw / JSON}: malformed entry (more than 5 annotations)')


# ---------------------------------------------------------------- memory

def peak_run(argv, tmp_path):
    """Run ``cgrseg`` in a child (address space capped at 3 GB so that the old behaviour cannot take
    the machine down); returns (exit code, stderr, peak RSS in MB of it and of its workers, in kB
    from /proc/self/status and getrusage(RUSAGE_CHILDREN))."""
    probe = ('import resource, sys\n'
             'resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n'
             'from cgrseg.cli import main\n'
             'code = main(sys.argv[1:])\n'
             # VmHWM, not RUSAGE_SELF: ru_maxrss keeps the pre-exec RSS of the (v)forked pytest
             'own = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]\n'
             'peak = max(int(own[0].split()[1]), '
             'resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n'
             'print(f"PEAK {peak}", file=sys.stderr)\n'
             'sys.exit(code)\n')
    env = dict(os.environ, PYTHONPATH=str(SRC), OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', probe, *map(str, argv)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.splitlines()
    peak = [int(line.split()[1]) for line in lines if line.startswith('PEAK ')]
    assert peak, proc.stderr[-2000:]
    return proc.returncode, [line for line in lines if not line.startswith('PEAK ')], peak[0] / 1024


def png_header_only(width, height):
    """A valid 8-bit grayscale PNG of zeros, compressed row by row (a few hundred kB)."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    squeeze, rows, parts = zlib.compressobj(), bytes((width + 1) * 64), []
    for _ in range(height // 64):
        parts.append(squeeze.compress(rows))
    parts.append(squeeze.compress(bytes((width + 1) * (height % 64))) + squeeze.flush())
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
            + chunk(b'IDAT', b''.join(parts)) + chunk(b'IEND', b''))


def jpeg_claiming(width, height):
    """A tiny JPEG whose header claims ``width`` x ``height`` (never decoded by prepare)."""
    buffer = io.BytesIO()
    Image.new('RGB', (16, 16)).save(buffer, format='JPEG')
    data = bytearray(buffer.getvalue())
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def hostile_ade_label(raw):
    prefix = 'ADEChallengeData2016/'
    with zipfile.ZipFile(raw / ADE) as archive:
        png = sorted(n for n in archive.namelist() if n.endswith('.png'))[0]
    huge = png_header_only(12000, 12000)   # for an image of normal size; under PIL's own limit
    edit_zip(raw / ADE, lambda n, d: huge if n == png else d)
    return png.rsplit('/', 1)[1][:-4], 'ade20k'   # the stem


def hostile_coco_mat(raw):
    stem, _, _ = coco_first(raw / COCO)
    buffer = io.BytesIO()
    savemat(buffer, {'S': np.zeros((8000, 8000), np.uint8)}, do_compression=True)
    edit_zip(raw / COCO, lambda n, d: buffer.getvalue() if n == f'annotations/{stem}.mat' else d)
    return f'annotations/{stem}.mat', 'coco_stuff10k'


def hostile_coco_inflating_mat(raw):
    """S of the right size, beside a variable that inflates to 600 MB (600 kB compressed)."""
    return replace_coco_mat(raw, lambda h, w: mat_bytes(S=np.zeros((h, w), np.uint16),
                                                        pad=np.zeros(600 << 20, np.uint8))), \
        'coco_stuff10k'


def hostile_coco_member(raw):
    stem, _, _ = coco_first(raw / COCO)
    edit_zip(raw / COCO, lambda n, d: None if n == f'images/{stem}.jpg' else d,
             large=[(f'images/{stem}.jpg', 600 << 20)])
    return f'images/{stem}.jpg', 'coco_stuff10k'


def hostile_object_info(raw):
    name = 'ADEChallengeData2016/objectInfo150.txt'
    edit_zip(raw / ADE, lambda n, d: None if n == name else d, large=[(name, 600 << 20)])
    return 'objectInfo150.txt', 'ade20k'


def hostile_pascal_size(raw):
    doc = json.loads((raw / JSON).read_text())
    image = doc['images'][0]
    image['height'] = image['width'] = 12000   # under PIL's own bomb limit
    for ann in doc['annos_segmentation']:
        if ann['image_id'] == image['image_id']:
            ann['segmentation'] = {'size': [12000, 12000], 'counts': '0'}
    (raw / JSON).write_text(json.dumps(doc))
    jpeg = jpeg_claiming(12000, 12000)
    with tarfile.open(raw / TAR, 'a') as tar:   # a later member of the same name replaces it
        info = tarfile.TarInfo(VOC + 'JPEGImages/' + image['file_name'])
        info.size = len(jpeg)
        tar.addfile(info, io.BytesIO(jpeg))
    return image['file_name'], 'pascal_context'


@pytest.mark.parametrize('make', [hostile_ade_label, hostile_coco_mat, hostile_coco_inflating_mat,
                                  hostile_coco_member, hostile_object_info, hostile_pascal_size])
def test_expanding_inputs_are_refused_in_bounded_memory(raw, tmp_path, make):
    where, dataset = make(raw)
    assert sum(p.stat().st_size for p in raw.iterdir()) < 8 << 20   # small archives ...
    out = tmp_path / 'out'
    code, lines, peak = peak_run(['prepare', dataset, '--raw', raw, '--out', out, '--jobs', 2],
                                 tmp_path)
    assert peak < PEAK_RSS_MB, f'peak RSS {peak:.0f} MB'   # ... in bounded memory
    print(f'{make.__name__}: peak RSS {peak:.0f} MB')
    assert code == 2 and len(lines) == 1, lines   # ... refused with one line, before decoding
    assert lines[0].startswith('cgrseg prepare: error: ') and where in lines[0], lines[0]
    assert any(word in lines[0] for word in ('declares', 'more than', 'pixels')), lines[0]
    assert not out.exists()


def test_a_detail_json_of_tens_of_megabytes_is_streamed(raw, tmp_path):
    """The annotation JSON is not parsed whole: 32 MB of it (json.load would need ~10 times that;
    the real file has ~590 MiB) is read in about the memory of the small synthetic one. The padding is what makes the real file large:
    more masks, most of them for images outside train/val."""
    doc = json.loads((raw / JSON).read_text())
    ann = doc['annos_segmentation'][0]
    filler = dict(ann, image_id=1, parts=[{'part_id': 1, 'segmentation': ann['segmentation']}] * 12)
    count = (32 << 20) // len(json.dumps(filler))
    text = json.dumps(doc)[:-1] + ', "more": 0}'
    head, tail = text.split('"annos_segmentation": [', 1)
    with open(raw / JSON, 'w') as f:
        f.write(head + '"annos_segmentation": [')
        f.write((json.dumps(filler) + ', ') * count)
        f.write(tail)
    assert (raw / JSON).stat().st_size > 32 << 20
    out = tmp_path / 'out'
    code, lines, peak = peak_run(['prepare', 'pascal_context', '--raw', raw, '--out', out,
                                  '--jobs', 2], tmp_path)
    print(f"a 32 MB Detail JSON: peak RSS {peak:.0f} MB")
    assert code == 0, lines
    assert peak < 100, f'peak RSS {peak:.0f} MB'   # before (parsed whole): 307 MB
    assert not list(out.rglob('.annotations*'))   # the spool is gone


def test_preparation_of_a_normal_archive_stays_in_bounded_memory(raw, tmp_path):
    code, lines, peak = peak_run(['prepare', 'coco_stuff10k', '--raw', raw, '--out',
                                  tmp_path / 'out', '--jobs', 2], tmp_path)
    assert code == 0, lines
    print(f'normal coco_stuff10k: peak RSS {peak:.0f} MB')
    assert peak < PEAK_RSS_MB, f'peak RSS {peak:.0f} MB'


# ---------------------------------------------------------------- full disk

@pytest.fixture
def small_disk(small_tmpfs):
    """Smaller than any synthetic archive."""
    return small_tmpfs


@pytest.mark.parametrize('dataset', ['ade20k', 'pascal_context'])
def test_full_disk_during_prepare(run_cli, raw, small_disk, dataset):
    out = small_disk / 'prepared'
    result = run_cli('prepare', dataset, '--raw', raw, '--out', out, '--jobs', 2)
    assert result.code == 2, result.err
    assert len(result.error_lines) == 1 and result.err.count('\n') == 1, result.err
    line = result.error_lines[0]
    # blames the output folder, not the archive
    assert f'{out}' in line and 'cannot write: No space left on device' in line, line
    assert list(small_disk.iterdir()) == []   # nothing partial, not even OUT


def test_full_disk_during_download(run_cli, synth_archives, small_disk):
    result = run_cli('download', 'coco_stuff10k', '--sources', synth_archives / 'sources.yaml',
                     '--dest', small_disk)
    assert result.code == 2, result.err
    assert len(result.error_lines) == 1 and result.err.count('\n') == 1, result.err
    line = result.error_lines[0]
    assert 'no space left on device' in line.lower() and 'run again to resume' in line
    # the only file left is the .part to resume from; never a final archive or a recorded checksum
    assert [p.name for p in small_disk.iterdir()] == [f'{COCO}.part']


def test_full_disk_when_writing_the_manifest_leaves_nothing(run_cli, raw, tmp_path, monkeypatch):
    """The last write is the manifest: the data folder must not stay behind without it (no root
    needed: the write fails by monkeypatch)."""
    import errno

    write_text = Path.write_text

    def full(self, *args, **kwargs):
        if '.manifest.json' in self.name:   # the manifest or a temporary of it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, 'write_text', full)
    out = tmp_path / 'out'
    result = run_cli('prepare', 'ade20k', '--raw', raw, '--out', out, '--jobs', 1)
    assert result.code == 2 and result.error_lines == [
        f'cgrseg prepare: error: {out}: cannot write: No space left on device (nothing was kept; '
        'free space or fix the permissions and run again)']
    assert not out.exists()
