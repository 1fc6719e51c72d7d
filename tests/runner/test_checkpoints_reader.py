"""The safe checkpoint reader in isolation (issue 16; fast: tiny tensors, hand-made files, no models).

- every hostile or damaged file gives exactly one ``CGRSegError`` naming the file and the problem, and
  a good one loads; the size bounds hold at their limits;
- reading is weights-only even where torch's default is not (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``):
  a pickle that would run code is refused and nothing runs;
- mmcv's checkpoint loaders are routed through it: local files weights-only, remote ones refused;
- weights and resume state are checked with one exact line each;
- data-loader workers ignore the preemption signals, then run the loader's own worker_init_fn.
"""
import contextlib
import io
import os
import pickle
import signal
import struct
import zipfile
from pathlib import PosixPath

import pytest

torch = pytest.importorskip('torch')

from cgrseg.errors import CGRSegError  # noqa: E402
from cgrseg.runner import checkpoints, resume  # noqa: E402
from cgrseg.runner.checkpoints import RefusedCheckpoint  # noqa: E402

NOT_ZIP = 'not a torch checkpoint in zip format (as torch.save writes since torch 1.6; {})'
EXPANDS = 'compressed records (torch.save never compresses; they would expand beyond the file in memory)'
REMOTE = 'remote checkpoints are not read: fetch the file, check it, and give its path'


@pytest.fixture(autouse=True)
def unsafe_torch_default(monkeypatch):
    """torch.load without weights_only=True unpickles everything here (as in torch < 2.6)."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')


@contextlib.contextmanager
def one_error(message, kind=CGRSegError):
    """The block raises exactly ``kind`` (not a subclass) with exactly ``message``."""
    with pytest.raises(CGRSegError) as caught:
        yield
    assert type(caught.value) is kind
    assert str(caught.value) == message


def good(path, **meta):
    torch.save({'state_dict': {'w': torch.arange(3.)}, 'meta': meta}, path)
    return path


def records(path):
    with zipfile.ZipFile(path) as archive:
        return archive.infolist()


def rewrite(src, dst, change):
    """A copy of the zip ``src``: ``change(name, data) -> (data, compress_type)`` for each record."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for info in zin.infolist():
            data, kind = change(info.filename, zin.read(info))
            zout.writestr(info.filename, data, compress_type=kind)
    return dst


def with_pickle(tmp_path, name, pickled):
    """A good checkpoint whose data.pkl is replaced by ``pickled``."""
    return rewrite(good(tmp_path / 'base.pth'), tmp_path / name, lambda record, data: (
        pickled if record.endswith('/data.pkl') else data, zipfile.ZIP_STORED))


def on_cuda(path):
    """A checkpoint whose storages say 'cuda', as one written on a GPU does."""
    buffer = io.BytesIO()
    torch.save({'state_dict': {'w': torch.arange(3.)}, 'meta': {}}, buffer)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, 'w') as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith('/data.pkl'):
                data = data.replace(b'X\x03\x00\x00\x00cpu', b'X\x04\x00\x00\x00cuda')
            dst.writestr(info, data)
    return path


class RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


# -- reading: what loads, what is refused ---------------------------------------------------------

def test_a_good_checkpoint_loads_on_the_cpu(tmp_path):
    path = good(tmp_path / 'iter_1.pth', iter=0, epoch=1)
    ckpt = checkpoints.read(path)
    assert ckpt['meta'] == {'iter': 0, 'epoch': 1} and torch.equal(ckpt['state_dict']['w'], torch.arange(3.))
    assert checkpoints.load(on_cuda(tmp_path / 'gpu.pth'))['state_dict']['w'].device.type == 'cpu'


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / 'MARKER'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'meta': {'x': RunsCode(marker)}}, path)
    with pytest.raises(RefusedCheckpoint) as caught:
        checkpoints.read(path)
    message = str(caught.value)
    head = f'{path}: refusing the checkpoint: it holds Python objects that could run code when loaded ('
    tail = '); only tensors and plain data are read'
    assert message.startswith(head) and message.endswith(tail), message
    assert 'GLOBAL posix.system' in message[len(head):-len(tail)] and '\n' not in message
    assert not marker.exists()


def test_a_pickle_the_safe_unpickler_cannot_read_is_named_by_the_reason(tmp_path):
    path = with_pickle(tmp_path, 'ext.pth', b'\x80\x02\x82\x01.')   # EXT1: an opcode it does not support
    with pytest.raises(CGRSegError) as caught:
        checkpoints.read(path)
    assert type(caught.value) is CGRSegError
    assert str(caught.value).startswith(f'{path}: cannot read checkpoint: ')
    assert str(caught.value).endswith('Unpickler error: Unsupported operand 130'), str(caught.value)


def test_a_failure_after_the_container_check_is_one_line_naming_it(tmp_path):
    path = with_pickle(tmp_path, 'nopickle.pth', b'')
    with one_error(f'{path}: cannot read checkpoint: EOFError'):
        checkpoints.read(path)


@pytest.mark.parametrize('text,message,kind', [
    ('Weights only load failed.\n\n  Trying to load unsupported GLOBAL os.system  \nmore',
     'refusing the checkpoint: it holds Python objects that could run code when loaded (Trying to load '
     'unsupported GLOBAL os.system); only tensors and plain data are read', RefusedCheckpoint),
    ('Weights only load failed.\nWeightsUnpickler error: Unsupported operand 7\nmore',
     'cannot read checkpoint: WeightsUnpickler error: Unsupported operand 7', CGRSegError),
    ('Weights only load failed.\nWeightsUnpickler error:\n\n  Unsupported operand 8\nmore',
     'cannot read checkpoint: WeightsUnpickler error: Unsupported operand 8', CGRSegError),
    ('Weights only load failed.\nWeightsUnpickler error:', 'cannot read checkpoint: WeightsUnpickler error:',
     CGRSegError),
    ('\n  torch says something new  \nmore', 'cannot read checkpoint: torch says something new', CGRSegError),
    ('', 'cannot read checkpoint: UnpicklingError', CGRSegError),
])
def test_whatever_the_unpickler_says_is_one_line(tmp_path, monkeypatch, text, message, kind):
    """The line naming what was refused (with the reason torch puts on the next line), else the
    first line, else the kind of error."""
    path = good(tmp_path / 'w.pth')

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(text)

    monkeypatch.setattr(torch, 'load', refuse)
    with one_error(f'{path}: {message}', kind):
        checkpoints.read(path)


def test_what_is_no_zip_is_named(tmp_path):
    raw = tmp_path / 'raw.pkl'
    raw.write_bytes(pickle.dumps({'state_dict': {}}))
    with one_error(f'{raw}: cannot read checkpoint: {NOT_ZIP.format("no zip directory")}'):
        checkpoints.read(raw)
    truncated = tmp_path / 'cut.pth'
    truncated.write_bytes(good(tmp_path / 'whole.pth').read_bytes()[:300])
    with one_error(f'{truncated}: cannot read checkpoint: {NOT_ZIP.format("no zip directory")}'):
        checkpoints.read(truncated)


def test_a_file_beyond_4_gib_is_refused_by_its_size_alone(tmp_path):
    """Sparse files: nothing is written, and nothing is read from them."""
    big = tmp_path / 'big.pth'
    with open(big, 'wb') as f:
        f.truncate((4 << 30) + 1)
    with one_error(f'{big}: cannot read checkpoint: 4294967297 bytes, more than the 4 GiB any CGRSeg '
                   'checkpoint needs'):
        checkpoints.read(big)
    limit = tmp_path / 'limit.pth'
    with open(limit, 'wb') as f:
        f.truncate(4 << 30)   # at the limit: read on, and found to be no zip
    with one_error(f'{limit}: cannot read checkpoint: {NOT_ZIP.format("no zip directory")}'):
        checkpoints.read(limit)


def test_too_many_records_are_refused_before_the_directory_is_parsed(tmp_path, monkeypatch):
    path = good(tmp_path / 'w.pth')
    count = len(records(path))
    monkeypatch.setattr(checkpoints, 'MAX_RECORDS', count)
    assert 'state_dict' in checkpoints.read(path)                  # at the limit
    monkeypatch.setattr(checkpoints, 'MAX_RECORDS', count - 1)
    with one_error(f'{path}: cannot read checkpoint: {count} records, more than {count - 1}'):
        checkpoints.read(path)


def test_a_compressed_record_is_refused_even_a_small_one(tmp_path):
    """torch would read it (its reader inflates), but a deflated record is how a zip bomb looks."""
    path = rewrite(good(tmp_path / 'w.pth'), tmp_path / 'deflated.pth', lambda record, data: (
        data, zipfile.ZIP_DEFLATED if record.endswith('/version') else zipfile.ZIP_STORED))
    assert sum(r.file_size for r in records(path)) < path.stat().st_size
    with one_error(f'{path}: cannot read checkpoint: {EXPANDS}'):
        checkpoints.read(path)


def claiming(src, dst, total):
    """A copy of ``src`` whose zip directory says its records hold ``total`` bytes in all (the last
    record's size inflated: a stored record that would make torch allocate more than the file)."""
    data = bytearray(src.read_bytes())
    last = data.rfind(b'PK\x01\x02')   # the last entry of the central directory
    claimed = sum(r.file_size for r in records(src))
    struct.pack_into('<I', data, last + 24, struct.unpack_from('<I', data, last + 24)[0] + total - claimed)
    dst.write_bytes(bytes(data))
    return dst


def test_records_claiming_more_bytes_than_the_file_are_refused(tmp_path):
    src = good(tmp_path / 'w.pth')
    size = src.stat().st_size
    over = claiming(src, tmp_path / 'over.pth', size + 1)
    with one_error(f'{over}: cannot read checkpoint: {EXPANDS}'):
        checkpoints.read(over)
    fits = claiming(src, tmp_path / 'fits.pth', size)   # a lie, but within the file: torch finds it
    with pytest.raises(CGRSegError) as caught:
        checkpoints.read(fits)
    assert str(caught.value).startswith(f'{fits}: cannot read checkpoint: ') and EXPANDS not in str(caught.value)


def test_a_pickle_larger_than_metadata_needs_is_refused(tmp_path, monkeypatch):
    big = tmp_path / 'big.pth'
    torch.save({'state_dict': {}, 'meta': {'text': 'x' * (8 << 20)}}, big)
    pickled = next(r.file_size for r in records(big) if r.filename.endswith('/data.pkl'))
    with one_error(f'{big}: cannot read checkpoint: its data.pkl has {pickled} bytes, more than the 8 MiB '
                   'metadata needs'):
        checkpoints.read(big)
    small = good(tmp_path / 'small.pth')
    monkeypatch.setattr(checkpoints, 'MAX_PICKLE_BYTES',
                        next(r.file_size for r in records(small) if r.filename.endswith('/data.pkl')))
    assert 'state_dict' in checkpoints.read(small)                 # at the limit


# -- weights and resume state ----------------------------------------------------------------------

@pytest.mark.parametrize('state,problem', [
    ([1, 2], 'state_dict is not a mapping of names to tensors (list)'),
    ({'w': 'text'}, "state_dict entry 'w' is not a named tensor (str)"),
    ({1: torch.zeros(1)}, "state_dict entry '1' is not a named tensor (Tensor)"),
    ({'k' * 100: None}, f"state_dict entry {'k' * 80!r} is not a named tensor (NoneType)"),
    ({'a': torch.zeros(1), 'b': torch.tensor([float('nan')]), 'c': torch.tensor([float('-inf')])},
     '2 weight tensor(s) hold NaN or Inf (first: b); refusing to use them'),
    ({'n' * 100: torch.tensor([float('inf')])},
     f"1 weight tensor(s) hold NaN or Inf (first: {'n' * 80}); refusing to use them"),
])
def test_weights_that_are_not_finite_named_tensors_are_one_line(tmp_path, state, problem):
    path = tmp_path / 'odd.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    kind = RefusedCheckpoint if 'NaN' in problem else CGRSegError
    with one_error(f'{path}: {problem}', kind):
        checkpoints.load(path)


def test_integer_weights_are_not_checked_for_nan(tmp_path):
    path = tmp_path / 'ints.pth'
    torch.save({'state_dict': {'idx': torch.arange(3), 'w': torch.zeros(2)}}, path)
    assert checkpoints.load(path)['state_dict']['idx'].tolist() == [0, 1, 2]


@pytest.mark.parametrize('meta,problem', [
    ({'iter': -3, 'epoch': 1}, "meta['iter'] is not an iteration count (-3)"),
    ({'iter': 'many', 'epoch': 1}, "meta['iter'] is not an iteration count ('many')"),
    ({'iter': 2, 'epoch': 1.0}, "meta['epoch'] is not an iteration count (1.0)"),
    ({'iter': 2}, "meta['epoch'] is not an iteration count (None)"),
])
def test_a_malformed_iteration_count_stops_the_resume(tmp_path, meta, problem):
    path = good(tmp_path / 'iter_3.pth', **meta)
    with one_error(f'{path}: {problem}; not a checkpoint of cgrseg train', RefusedCheckpoint):
        checkpoints.resumable(tmp_path, pytest.fail)


def test_a_checkpoint_of_the_first_step_resumes(tmp_path):
    """mmcv records iter 0 after the first step; an IterBasedRunner's epoch may be 0."""
    path = good(tmp_path / 'iter_1.pth', iter=0, epoch=0)
    assert checkpoints.resumable(tmp_path, pytest.fail) == (path, {'iter': 0, 'epoch': 0})


# -- mmcv's loaders -------------------------------------------------------------------------------------

@pytest.fixture
def mmcv_loaders(monkeypatch):
    """mmcv's scheme registry with every loader mmcv's own (here: one that would read the file with a
    full unpickler), routed by ``route_mmcv_loading``; put back as it was afterwards."""
    from collections import OrderedDict
    mmcv_runner = pytest.importorskip('mmcv.runner')
    loader = mmcv_runner.CheckpointLoader

    def unpickles_everything(filename, map_location=None):
        return 'read by mmcv'

    monkeypatch.setattr(loader, '_schemes', OrderedDict((p, unpickles_everything) for p in loader._schemes))
    checkpoints.route_mmcv_loading()
    return loader


REMOTE_URLS = ['https://example.org/w.pth', 'http://example.org/w.pth', 'open-mmlab://resnet50_v1c',
               'openmmlab://resnet50_v1c', 'torchvision://resnet50', 'modelzoo://resnet50', 'mmcls://resnet50',
               'pavi://model/w.pth', 's3://bucket/w.pth', 'cluster1:s3://bucket/w.pth']


def test_mmcv_refuses_every_remote_checkpoint(mmcv_loaders):
    for url in REMOTE_URLS:
        with one_error(f'{url}: {REMOTE}'):
            mmcv_loaders.load_checkpoint(url)
    with one_error(f'https://***@example.org/w.pth: {REMOTE}'):   # a URL's credentials are never repeated
        mmcv_loaders.load_checkpoint('https://user:token@example.org/w.pth')


def test_mmcv_reads_a_local_checkpoint_weights_only(mmcv_loaders, tmp_path):
    marker = tmp_path / 'MARKER'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': RunsCode(marker)}}, evil)
    with pytest.raises(RefusedCheckpoint, match=f'^{evil}: refusing the checkpoint'):
        mmcv_loaders.load_checkpoint(str(evil))
    assert not marker.exists()
    path = good(tmp_path / 'w.pth', iter=1)
    assert mmcv_loaders.load_checkpoint(str(path))['meta'] == {'iter': 1}
    with one_error(f'{tmp_path / "gone.pth"}: no such checkpoint'):
        mmcv_loaders.load_checkpoint(str(tmp_path / 'gone.pth'))


def test_mmcv_local_loading_keeps_the_callers_map_location_and_defaults_to_the_cpu(mmcv_loaders, tmp_path):
    """mmcv passes map_location on (None unless the caller gave one): None means the CPU, so a
    checkpoint written on a GPU loads on a machine without one."""
    gpu = on_cuda(tmp_path / 'gpu.pth')
    assert mmcv_loaders.load_checkpoint(str(gpu))['state_dict']['w'].device.type == 'cpu'
    assert mmcv_loaders.load_checkpoint(str(gpu), None)['state_dict']['w'].device.type == 'cpu'
    meta = mmcv_loaders.load_checkpoint(str(good(tmp_path / 'w.pth')), 'meta')
    assert meta['state_dict']['w'].device.type == 'meta'


# -- stale temporaries ---------------------------------------------------------------------------------

def test_stale_temporaries_go_even_one_removed_meanwhile(tmp_path, monkeypatch):
    for name in ('iter_2.pth', '.iter_4.pth.321.tmp', '.latest.pth.321.tmp', 'notes.tmp'):
        (tmp_path / name).touch()

    class Listed(PosixPath):
        def glob(self, pattern):
            yield from super().glob(pattern)
            yield self / '.iter_6.pth.322.tmp'   # its writer's own cleanup removed it meanwhile

    monkeypatch.setattr(checkpoints, 'Path', Listed)
    checkpoints.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_2.pth', 'notes.tmp']


# -- the data stream -------------------------------------------------------------------------------------

class Items(torch.utils.data.Dataset):
    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        return i


def test_a_one_image_training_set_is_a_stream():
    assert list(resume.ResumableSampler(1, seed=0)) == [(0, 0, 0)]


def test_an_unshuffled_loader_records_its_seed_and_order(tmp_path):
    loader = torch.utils.data.DataLoader(Items(4), batch_size=4, shuffle=False, drop_last=True)
    rebuilt = resume.resumable_loader(loader, seed=7)           # exactly one batch: enough
    assert resume.geometry(rebuilt) == {'seed': 7, 'dataset_size': 4, 'shuffle': False, 'world_size': 1,
                                        'batch_size': 4}
    assert resume.geometry(rebuilt)['shuffle'] is False
    assert [s[0] for s in rebuilt.sampler] == [0, 1, 2, 3]


# -- data-loader workers and the preemption signals ------------------------------------------------

def trainer_handler(signum, frame):
    """What the trainer installs (it saves a checkpoint on SIGTERM/SIGUSR1)."""


@pytest.fixture
def preempt_handlers():
    """SIGTERM and SIGUSR1 handled as the trainer does; both put back as they were afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        for sig in saved:
            signal.signal(sig, trainer_handler)
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def ignored():
    return [signal.getsignal(sig) is signal.SIG_IGN for sig in (signal.SIGTERM, signal.SIGUSR1)]


def test_a_worker_ignores_preemption_then_runs_the_loaders_own_init(preempt_handlers):
    seen = []
    resume.ignore_preempt_signals(3, lambda worker_id: seen.append((worker_id, ignored())))
    assert seen == [(3, [True, True])]


def test_a_worker_without_an_init_of_its_own_ignores_preemption(preempt_handlers):
    assert ignored() == [False, False]
    resume.ignore_preempt_signals(0)
    assert ignored() == [True, True]


INIT_CALLS = []


def record_init(worker_id):
    INIT_CALLS.append((worker_id, ignored()))


def test_the_shielded_init_survives_pickling_and_shields_then_chains(preempt_handlers):
    """What a spawned worker receives: a pickled _ShieldedInit wrapping the loader's worker_init_fn."""
    INIT_CALLS.clear()
    pickle.loads(pickle.dumps(resume._ShieldedInit(record_init)))(5)
    assert INIT_CALLS == [(5, [True, True])]
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, trainer_handler)
    resume._ShieldedInit(None)(1)
    assert ignored() == [True, True]
