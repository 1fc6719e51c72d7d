"""Property tests for every reader of outside files (tar, zip, .mat, the Pascal Context JSON, JSON,
YAML, sources.yaml): whatever hypothesis builds, the reader returns or raises one CGRSegError of
one line, inside a memory cap. The readers run in one child process under RLIMIT_AS (a reader that
allocates without bound dies there with MemoryError, a crash fails the test).

40 examples per reader run by default (the same ones each time); CGRSEG_HYPOTHESIS_EXAMPLES=500
runs 500 random ones."""
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.io import savemat

EXAMPLES = int(os.environ.get('CGRSEG_HYPOTHESIS_EXAMPLES', '40'))
MEMORY_CAP = 1 << 30
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize='CGRSEG_HYPOTHESIS_EXAMPLES' not in os.environ,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# The child: reads requests {"reader", "path"} on stdin, answers {"ok"} or {"error": line} on stdout;
# any other exception is reported as a crash (the CLI would print a traceback for it).
WORKER = r'''
import json, resource, sys, tempfile, traceback
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))
from cgrseg import io
from cgrseg.errors import CGRSegError
from cgrseg.data import coco_stuff10k, common, pascal_context, sources

def read_zip(path):
    common.zip_marker(path)
    with common.open_zip(path) as archive:
        for name in archive.namelist():
            common.read_member(archive, name)

def read_tar(path):
    common.tar_marker(path)
    with tempfile.TemporaryDirectory() as root:
        pascal_context._extract(path, Path(root))

def read_detail(path):
    with tempfile.TemporaryDirectory() as root:
        pascal_context._read_detail(path, Path(root) / 'spool')

READERS = {
    'json': lambda path: io.read_json(path, 'result file'),
    'yaml': lambda path: io.load_yaml(path, 'params'),
    'sources': sources.load,
    'zip': read_zip,
    'tar': read_tar,
    'mat': lambda path: coco_stuff10k.label_field(Path(path).read_bytes(), path),
    'detail': read_detail,
}
for line in sys.stdin:
    request = json.loads(line)
    try:
        READERS[request['reader']](request['path'])
        answer = {'ok': True}
    except CGRSegError as err:
        answer = {'error': str(err)}
    except BaseException:
        answer = {'crash': traceback.format_exc()}
    print(json.dumps(answer), flush=True)
'''.replace('CAP', str(MEMORY_CAP))


class Worker:
    def __init__(self, folder):
        env = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', TQDM_DISABLE='1')
        self.proc = subprocess.Popen([sys.executable, '-c', WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.folder, self.count = folder, 0

    def read(self, reader, data, suffix=''):
        """What ``reader`` makes of a file holding ``data``: None (read) or the error line."""
        self.count += 1
        path = self.folder / f'{self.count}{suffix}'
        path.write_bytes(data)
        try:
            self.proc.stdin.write(json.dumps({'reader': reader, 'path': str(path)}) + '\n')
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ''
        finally:
            path.unlink()
        assert line, f'the reader process died on {data[:200]!r}: {self.proc.stderr.read()[-3000:]}'
        answer = json.loads(line)
        assert 'crash' not in answer, f'{data[:300]!r}\n{answer["crash"]}'
        if 'error' in answer:
            error = answer['error']
            assert str(path) in error, error   # names the file
            assert '\n' not in error and '\r' not in error, error
            return error
        return None

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope='module')
def worker(tmp_path_factory):
    worker = Worker(tmp_path_factory.mktemp('inputs'))
    yield worker
    worker.close()


def mutated(data, edits, cut):
    """``data`` with each (position, bytes) of ``edits`` written over it, then cut to ``cut``."""
    data = bytearray(data)
    for position, chunk in edits:
        if data:
            position %= len(data)
            data[position:position + len(chunk)] = chunk
    return bytes(data[:cut] if cut is not None else data)


EDITS = st.lists(st.tuples(st.integers(0, 200) | st.integers(0, 1 << 20),   # headers, or anywhere
                          st.binary(min_size=1, max_size=8)), max_size=4)
CUTS = st.none() | st.integers(0, 1 << 16)
NAMES = st.sampled_from(['a', 'x/y', '../up', '/abs', 'VOCdevkit/VOC2010/JPEGImages/a.jpg',
                         'VOCdevkit/VOC2010/' + 'n' * 300, 'VOCdevkit/VOC2010/CGRSEG_SYNTHETIC.json',
                         'images/a.jpg', 'annotations/a.mat', 'imageLists/train.txt', 'é\u0000',
                         'CGRSEG_SYNTHETIC.json', 'a\\b', ''])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25)


@SETTINGS
@given(JSON_VALUES, st.integers(0, 200), EDITS, CUTS)
def test_json_reader(worker, value, nesting, edits, cut):
    text = '[' * nesting + json.dumps(value) + ']' * nesting
    worker.read('json', mutated(text.encode(), edits, cut))


YAML_TOKENS = st.sampled_from(['a', 'b', ': ', '- ', '\n', '  ', '&x ', '*x', '&y ', '*y', '[', ']',
                               '{', '}', ', ', '<<: *x', '!!python/object/apply:os.system ["true"]',
                               '!!binary aGk=', '? ', '|\n', '"\\u00e9"', "'", '1e999', '.nan',
                               '0x1F', '9' * 5000, '\xff', '%YAML 1.1\n', '---\n', '...\n', '#'])


@SETTINGS
@given(st.lists(YAML_TOKENS, max_size=60), EDITS)
def test_yaml_reader(worker, tokens, edits):
    worker.read('yaml', mutated(''.join(tokens).encode('utf-8', 'surrogateescape'), edits, None))


SOURCE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    | st.sampled_from(['https://x/a.zip', 'file:///etc/passwd', 'ftp://x', 'sha256:' + '0' * 64,
                       'md5:zz', 'ADEChallengeData2016.zip', '../../x.zip', '/abs.zip']),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(['url', 'urls', 'name', 'checksum', 'archives', 'sha256', 'size', 'x']),
        inner, max_size=4),
    max_leaves=20)


@SETTINGS
@given(st.dictionaries(st.sampled_from(['ade20k', 'coco_stuff10k', 'pascal_context', 'other']),
                       SOURCE_VALUES, max_size=3), st.booleans(), EDITS)
def test_sources_reader(worker, datasets, wrapped, edits):
    doc = {'datasets': datasets} if wrapped else datasets
    worker.read('sources', mutated(yaml.safe_dump(doc).encode(), edits, None), '.yaml')


def tar_member(name, data, kind):
    info = tarfile.TarInfo(name)
    info.size, info.type = (len(data), kind) if kind == tarfile.REGTYPE else (0, kind)
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = '../../etc/passwd'
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


MEMBERS = st.lists(st.tuples(NAMES, st.binary(max_size=64), st.sampled_from(
    [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE])),
    max_size=5)


@SETTINGS
@given(MEMBERS, st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT]),
       st.dictionaries(st.sampled_from(['comment', 'path', 'size', 'GNU.sparse.map']),
                       st.text(max_size=30), max_size=2), EDITS, CUTS)
def test_tar_reader(worker, members, form, pax, edits, cut):
    buffer = io.BytesIO()
    try:
        with tarfile.open(fileobj=buffer, mode='w', format=form) as tar:
            for name, data, kind in members:
                info, fileobj = tar_member(name, data, kind)
                if form == tarfile.PAX_FORMAT:
                    info.pax_headers = dict(pax)
                tar.addfile(info, fileobj)
    except ValueError:   # a name ustar cannot hold: write what was written so far
        pass
    worker.read('tar', mutated(buffer.getvalue(), edits, cut), '.tar')


@pytest.mark.filterwarnings('ignore:Duplicate name')   # a name twice is one of the inputs
@SETTINGS
@given(st.lists(st.tuples(NAMES, st.binary(max_size=200), st.booleans()), max_size=5), EDITS, CUTS)
def test_zip_reader(worker, members, edits, cut):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        for name, data, deflated in members:
            if name:
                archive.writestr(name, data, zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED)
    worker.read('zip', mutated(buffer.getvalue(), edits, cut), '.zip')


MAT_VARIABLES = st.dictionaries(
    st.sampled_from(['S', 'S2', 'names', 'x']),
    st.one_of(
        st.tuples(st.integers(0, 40), st.integers(0, 40),
                  st.sampled_from(['uint8', 'uint16', 'int32', 'double', 'single', 'bool'])).map(
            lambda spec: np.ones(spec[:2], spec[2])),
        st.text(max_size=10),
        st.lists(st.integers(-5, 300), max_size=8).map(np.array),
        st.just(np.zeros((2, 3, 4), np.uint8))),
    max_size=3)


@SETTINGS
@given(MAT_VARIABLES, st.booleans(), EDITS, CUTS)
def test_mat_reader(worker, variables, compress, edits, cut):
    buffer = io.BytesIO()
    savemat(buffer, variables, do_compression=compress)
    worker.read('mat', mutated(buffer.getvalue(), edits, cut), '.mat')


RLE_COUNTS = st.sampled_from(['0', '1', 'a0', '`0', 'PQ1', '=>', '\\', '0' * 50, 'zz'])


@SETTINGS
@given(st.lists(st.fixed_dictionaries({
    'image_id': st.integers(-1, 3) | st.text(max_size=3), 'category_id': st.integers(0, 500),
    'id': st.integers(0, 5), 'segmentation': st.fixed_dictionaries(
        {'size': st.lists(st.integers(0, 9), max_size=3), 'counts': RLE_COUNTS}) | JSON_VALUES,
    'parts': st.lists(JSON_VALUES, max_size=2)}), max_size=4),
       st.lists(st.fixed_dictionaries({
           'image_id': st.integers(0, 3), 'file_name': NAMES, 'height': st.integers(-1, 9),
           'width': st.integers(-1, 9), 'phase': st.sampled_from(['train', 'val', 'test', 7])}),
           max_size=4),
       st.booleans(), EDITS, CUTS)
def test_pascal_detail_reader(worker, annotations, images, categories, edits, cut):
    doc = {'info': {}, 'images': images, 'annos_segmentation': annotations}
    if categories:
        doc['categories'] = [{'category_id': 1, 'name': 'x'}]
    worker.read('detail', mutated(json.dumps(doc).encode(), edits, cut), '.json')


def test_the_memory_cap_is_real(worker):
    """The worker's cap holds: under it, 2 GB cannot be allocated (a reader trying to would fail
    the tests above with MemoryError instead of exhausting the machine)."""
    probe = subprocess.run([sys.executable, '-c', WORKER.split('from cgrseg')[0]
                            + 'bytearray(2 << 30)'], capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and 'MemoryError' in probe.stderr
