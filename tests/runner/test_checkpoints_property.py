"""Property-based tests of the checkpoint readers on hostile files (issue 16, item 10).

hypothesis generates byte strings, zip containers around arbitrary pickles, checkpoints whose pickle
is damaged, damaged copies of a real CGRSeg checkpoint and torch-saved objects of random structure,
shapes, dtypes and values. They go to one long-lived subprocess whose address space is capped
(``resource.setrlimit``) at what its imports use plus ``HEADROOM``; there ``checkpoints.load``,
``pretrained.load_any`` and ``cgrseg evaluate`` must each end in success or exactly one error line
(exit 2), never a traceback or a crash. The default run tries a few dozen files; the long run
(hundreds) only with ``CGRSEG_FUZZ=1``.
"""
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip('torch')
hypothesis = pytest.importorskip('hypothesis')
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ADE = ROOT / 'configs/cgrseg/cgrseg-t_ade20k_160k.py'
HEADROOM = 1536 << 20   # bytes of address space the readers may take beyond the imports

# The capped checker: reads lines `[[path, evaluate?], ...]` on stdin and answers each with one
# JSON line: per path, what checkpoints.load and load_any did, or the traceback of anything else.
CHECKER = r'''
import contextlib, io, json, os, resource, sys, traceback
reply = os.fdopen(os.dup(1), 'w')
os.dup2(2, 1)   # whatever else is printed goes to stderr, not into the replies
from cgrseg import cli
from cgrseg.errors import CGRSegError
from cgrseg.models.pretrained import load_any
from cgrseg.runner import checkpoints
import cgrseg.models, mmseg.models  # imported before the cap: only reading is measured

def vm_size():
    for line in open('/proc/self/status'):
        if line.startswith('VmSize:'):
            return int(line.split()[1]) * 1024

headroom = int(sys.argv[2])
cap = vm_size() + headroom
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
try:
    bytearray(headroom + (64 << 20))   # the cap is in force: this much more cannot be had
    sys.exit('the memory cap does not hold')
except MemoryError:
    pass

def outcome(read, path):
    try:
        read(path)
        return 'ok'
    except CGRSegError as err:
        text = str(err)
        assert '\n' not in text and text.startswith(f'{path}: '), text
        return 'refused'

def evaluate(path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(['evaluate', sys.argv[1], path, '--out', path + '.json', '--workers', '0'])
    lines = [l for l in err.getvalue().splitlines() if l.startswith('cgrseg evaluate: error: ')]
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err.getvalue(), (code, err.getvalue())
    return 'refused'

for line in sys.stdin:
    answer = {}
    for path, also_evaluate in json.loads(line):
        try:
            answer[path] = [outcome(checkpoints.load, path), outcome(load_any, path)]
            if also_evaluate:
                answer[path].append(evaluate(path))
        except BaseException:
            answer[path] = traceback.format_exc()
    reply.write(json.dumps(answer) + '\n')
    reply.flush()
'''


@pytest.fixture(scope='module')
def checker():
    """``check(tmp_path, blobs, evaluated)``: the blobs as files through the capped checker."""
    proc = subprocess.Popen([sys.executable, '-c', CHECKER, str(ADE), str(HEADROOM)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def check(folder, blobs, evaluated=0):
        folder.mkdir(parents=True, exist_ok=True)
        request = []
        for i, blob in enumerate(blobs):
            path = folder / f'ckpt_{i}.pth'
            path.write_bytes(blob)
            request.append([str(path), i < evaluated])
        proc.stdin.write(json.dumps(request) + '\n')
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, f'the checker died (exit {proc.wait()}): a crash or the memory cap'
        answer = json.loads(line)
        for path, result in answer.items():
            assert isinstance(result, list), f'{path}: {result}'
            assert set(result) <= {'ok', 'refused'}, (path, result)
        return answer

    yield check
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0


def zipped(pickle_bytes, records=()):
    """A torch-style zip container: ``archive/data.pkl`` and optional data records, stored."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        archive.writestr('archive/data.pkl', pickle_bytes)
        archive.writestr('archive/version', '3\n')
        for name, data in records:
            archive.writestr(f'archive/data/{name}', data)
    return buffer.getvalue()


def saved(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


DTYPES = [torch.float32, torch.float16, torch.float64, torch.int64, torch.uint8, torch.bool]
tensors = st.builds(
    lambda shape, dtype, fill: torch.full(shape, fill).to(dtype),
    st.lists(st.integers(0, 4), max_size=4).map(tuple), st.sampled_from(DTYPES),
    st.sampled_from([0.0, 1.5, -2.0, float('nan'), float('inf')]))
plain = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(),
                  st.text(max_size=20), st.binary(max_size=20), tensors)
structures = st.recursive(plain, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4)), max_leaves=12)
checkpoint_like = st.builds(
    lambda state, meta: {'state_dict': state, 'meta': meta},
    st.one_of(st.dictionaries(st.text(max_size=12), tensors, max_size=4), structures),
    st.one_of(st.dictionaries(st.sampled_from(['iter', 'epoch', 'cgrseg', 'config', 'CLASSES']),
                              structures, max_size=4), structures))


def flipped(data, flips):
    """``data`` with bytes replaced at the given fractions of its length."""
    out = bytearray(data)
    for where, value in flips:
        out[int(where * (len(out) - 1))] = value
    return bytes(out)


SMALL = saved({'state_dict': {'a.w': torch.ones(3, 2), 'b': torch.zeros(4, dtype=torch.int64)},
               'meta': {'iter': 1, 'epoch': 1, 'config': 'x = 1', 'CLASSES': ('a', 'b')}})


def repickled(flips):
    """SMALL with bytes of its data.pkl changed and the zip rebuilt (valid CRCs): the unpickler
    meets a real checkpoint's structure gone wrong (bad strings, storage keys, argument tuples)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(SMALL)) as zin, zipfile.ZipFile(buffer, 'w') as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info.filename, flipped(data, flips) if info.filename.endswith('data.pkl') else data)
    return buffer.getvalue()


def damaged(data, cuts, flips):
    """``data`` truncated at ``cuts[0]`` (a fraction) with bytes replaced at ``flips`` fractions."""
    return flipped(data[:max(1, int(len(data) * cuts))], flips)


@pytest.fixture(scope='module')
def real_state():
    """The state dict of the CGRSeg-T model of ADE: what `cgrseg evaluate` loads strictly."""
    from cgrseg.mmseg_config import load_config
    from cgrseg.models.build import build_model
    return build_model(load_config(ADE)).state_dict()


FLIPS = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=3)
hostile_files = st.one_of(
    st.binary(max_size=2048),
    st.builds(repickled, FLIPS),
    st.builds(saved, checkpoint_like),
    st.builds(saved, structures),
    st.builds(zipped, st.binary(max_size=512)),
    st.builds(lambda p, n: zipped(p, [('0', bytes(n))]),
              st.binary(max_size=256), st.integers(0, 64)),
)


COMMON = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@settings(max_examples=25, **COMMON)
@given(blobs=st.lists(hostile_files, min_size=1, max_size=3))
def test_hostile_checkpoints_end_in_success_or_one_line(checker, tmp_path_factory, blobs):
    checker(tmp_path_factory.mktemp('fuzz'), blobs)


@settings(max_examples=2, **COMMON)
@given(meta=checkpoint_like.map(lambda c: c['meta']),
       damage=st.tuples(st.floats(0.05, 1.0), FLIPS))
def test_evaluate_on_a_real_model_with_hostile_meta_or_damage(checker, tmp_path_factory, real_state,
                                                               meta, damage):
    """The real model's weights with a random meta (evaluate reads iter, cgrseg.crop) and a damaged
    copy of a real checkpoint, both also through `cgrseg evaluate`."""
    real = saved({'state_dict': real_state, 'meta': meta})
    checker(tmp_path_factory.mktemp('real'), [real, damaged(real, *damage)], evaluated=2)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('CGRSEG_FUZZ'), reason='the long fuzz run: set CGRSEG_FUZZ=1')
@settings(max_examples=300, **COMMON)
@given(blobs=st.lists(hostile_files, min_size=1, max_size=8))
def test_many_hostile_checkpoints_end_in_success_or_one_line(checker, tmp_path_factory, blobs):
    checker(tmp_path_factory.mktemp('fuzz'), blobs, evaluated=1)
