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


@pytest.mark.parametrize('make', [hostile_ade_label, hostile_coco_mat, hostile_coco_member,
                                  hostile_object_info, hostile_pascal_size])
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
