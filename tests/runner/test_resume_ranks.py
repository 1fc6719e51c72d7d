"""Resume of a multi-process run and the durability order of checkpoints.

- the sampler deals each rank its share as torch's DistributedSampler does, every position once, and
  a seek continues each rank's own stream;
- each rank restores its own random states (rank r, not rank 0);
- end to end (slow): 2 CPU DDP processes resumed from a checkpoint of the middle of the run end with
  the weights of the uninterrupted run, bit for bit, with ranks whose random states differ;
- a checkpoint's temporary file reaches the disk (fsync) before it is renamed into place, and the
  rename before the directory is flushed.
"""
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('mmseg')
torch = pytest.importorskip('torch')

from cgrseg import cli  # noqa: E402
from cgrseg.errors import CGRSegError  # noqa: E402
from cgrseg.io import MARKER  # noqa: E402
from cgrseg.runner import checkpoints, resume  # noqa: E402
from test_robust import Augmented  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / 'tests' / 'fixtures' / 'hooks'
ADE = ROOT / 'configs/cgrseg/cgrseg-t_ade20k_160k.py'


# -- the data stream of each rank ----------------------------------------------------------------

@pytest.mark.parametrize('size,world', [(10, 3), (8, 2), (7, 4)])
def test_each_rank_gets_the_share_torchs_distributed_sampler_deals(size, world):
    """Unshuffled, the ranks' indices are DistributedSampler's (padding by repeating the head)."""
    from torch.utils.data import DistributedSampler
    for rank in range(world):
        ours = resume.ResumableSampler(size, seed=0, shuffle=False, rank=rank, world_size=world)
        theirs = DistributedSampler(range(size), num_replicas=world, rank=rank, shuffle=False)
        assert [index for index, _, _ in ours] == list(theirs)
        assert len(ours) == len(theirs)


@pytest.mark.parametrize('size,world', [(10, 3), (8, 2)])
def test_positions_count_across_ranks_once_each(size, world):
    """Shuffled: position p of every rank holds element p of the epoch's padded order, each p once,
    so each sample's augmentation seed is its own whatever the rank."""
    seen = {}
    for rank in range(world):
        sampler = resume.ResumableSampler(size, seed=5, rank=rank, world_size=world)
        sampler.seek(2, 0)
        for index, epoch, position in sampler:
            assert epoch == 2 and position not in seen
            seen[position] = index
    padded = -(-size // world) * world
    assert sorted(seen) == list(range(padded))
    order = [seen[p] for p in range(padded)]
    assert sorted(set(order)) == list(range(size)) and order[size:] == order[:padded - size]


def test_a_seek_continues_every_ranks_own_stream():
    for rank in range(2):
        full = resume.ResumableSampler(9, seed=4, rank=rank, world_size=2)
        stream = list(full) + list(full)                   # epochs 0 and 1
        resumed = resume.ResumableSampler(9, seed=4, rank=rank, world_size=2)
        resumed.seek(0, 3)
        assert list(resumed) + list(resumed) == stream[3:]
        other = resume.ResumableSampler(9, seed=4, rank=1 - rank, world_size=2)
        assert [index for index, _, _ in other] != [index for index, _, _ in stream[:5]]


def test_the_position_after_some_iterations_of_a_rank():
    """5 samples per rank (10 images, 2 ranks), batches of 2: 2 iterations per epoch."""
    sampler = resume.ResumableSampler(10, seed=0, rank=1, world_size=2)
    loader = torch.utils.data.DataLoader(Augmented(), batch_size=2, sampler=sampler, drop_last=True)
    assert [resume.position(loader, done) for done in (0, 1, 2, 3, 5)] == [(0, 0), (0, 2), (1, 0), (1, 2), (2, 2)]


# -- the random states of each rank ---------------------------------------------------------------

class FakeRunner:
    """What ExactResumeRunner._restore reads: the resumed meta, the train loader, a logger, and the
    runner's own _restore_exactly."""

    def __init__(self, state, loader):
        import logging
        from cgrseg.runner.iter_runner import ExactResumeRunner
        self._restore_exactly = ExactResumeRunner._restore_exactly.__get__(self)
        self._resumed, self._train_loader = {'exact_resume': state}, loader
        self.logger, self.work_dir = logging.getLogger('test'), 'work'


def states_of_two_ranks():
    states = []
    for seed in (11, 22):
        torch.manual_seed(seed)
        np.random.seed(seed)
        __import__('random').seed(seed)
        states.append(resume.rng_state())
    return states


@pytest.mark.parametrize('rank', [0, 1])
def test_each_rank_restores_its_own_random_states(monkeypatch, rank):
    from cgrseg.runner import iter_runner
    sampler = resume.ResumableSampler(8, seed=1, rank=rank, world_size=2)
    loader = torch.utils.data.DataLoader(Augmented(), batch_size=2, sampler=sampler, drop_last=True)
    states = states_of_two_ranks()
    state = {'version': resume.STATE_VERSION, 'rng': states, 'data': resume.geometry(loader), 'epoch': 1,
             'start': 2}
    monkeypatch.setattr(iter_runner, 'get_dist_info', lambda: (rank, 2))
    torch.manual_seed(999)
    iter_runner.ExactResumeRunner._restore(FakeRunner(state, loader))
    drawn = (torch.rand(3), np.random.rand(), __import__('random').random())
    resume.set_rng_state(states[rank])
    expected = (torch.rand(3), np.random.rand(), __import__('random').random())
    assert torch.equal(drawn[0], expected[0]) and drawn[1:] == expected[1:]
    assert (sampler.epoch, sampler.start) == (1, 2)


# -- end to end: 2 processes, resumed in the middle ----------------------------------------------

ITERS = 4


def train_2_processes(config, work, data):
    argv = ['train', config, '--work-dir', work, '--data-root', data, '--iters', ITERS, '--crop', 64,
            '--samples-per-gpu', 2, '--cpu-processes', 2, '--no-pretrained', '--no-validate', '--workers', 0,
            '--seed', 3, '--checkpoint-interval', 1]
    assert cli.main([str(a) for a in argv]) == 0
    return torch.load(work / f'iter_{ITERS}.pth', map_location='cpu', weights_only=False)


@pytest.fixture(scope='module')
def noisy_config(tmp_path_factory):
    """CGRSeg-T on ADE20K whose ranks draw different amounts of randomness (tests/fixtures/hooks)."""
    path = tmp_path_factory.mktemp('config') / 'cgrseg-t_ade20k_160k.py'
    path.write_text(f'_base_ = [{str(ADE)!r}]\n'
                    "custom_imports = dict(imports=['cgrseg.models', 'rank_noise'], allow_failed_imports=False)\n"
                    "custom_hooks = [dict(type='RankNoiseHook')]\n"
                    'checkpoint_config = dict(max_keep_ckpts=-1)\n')
    return path


@pytest.mark.slow
def test_two_processes_resumed_mid_run_end_bitwise_like_the_uninterrupted_run(
        prepared_datasets, noisy_config, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HOOKS))
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join([str(HOOKS), *sys.path]))   # torchrun's processes
    full = train_2_processes(noisy_config, tmp_path / 'full', prepared_datasets)
    rng = full['meta']['exact_resume']['rng']
    assert len(rng) == 2 and not torch.equal(rng[0]['torch'], rng[1]['torch'])   # the ranks differ
    # the run as an interruption after iteration 1 leaves it: that checkpoint, and nothing after
    work = tmp_path / 'resumed'
    work.mkdir()
    for name in ('iter_1.pth', MARKER):   # the marker: the folder is cgrseg train's own
        shutil.copy(tmp_path / 'full' / name, work / name)
    resumed = train_2_processes(noisy_config, work, prepared_datasets)
    assert resumed['meta']['iter'] == full['meta']['iter'] == ITERS - 1
    for key, tensor in full['state_dict'].items():
        assert torch.equal(tensor, resumed['state_dict'][key]), f'weights differ after the resume: {key}'
    for index, state in full['optimizer']['state'].items():
        for name, value in state.items():
            other = resumed['optimizer']['state'][index][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other


# -- durability order ------------------------------------------------------------------------------

def record_disk_calls(monkeypatch):
    """The fsyncs (of which file) and renames the checkpoint code makes, in order."""
    calls, fsync, replace = [], os.fsync, os.replace

    def recording_fsync(fd):
        path = Path(os.readlink(f'/proc/self/fd/{fd}'))
        calls.append(('fsync', path.name, path.stat().st_size if path.is_file() else None))
        return fsync(fd)

    def recording_replace(src, dst):
        calls.append(('replace', Path(src).name, Path(dst).name))
        return replace(src, dst)

    monkeypatch.setattr(os, 'fsync', recording_fsync)
    monkeypatch.setattr(os, 'replace', recording_replace)
    return calls


def test_a_checkpoint_is_on_disk_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    calls = record_disk_calls(monkeypatch)
    payload = b'x' * 5000
    checkpoints.save_atomically(lambda tmp: Path(tmp).write_bytes(payload), tmp_path / 'iter_2.pth')
    tmp = f'.iter_2.pth.{os.getpid()}{checkpoints.TMP_SUFFIX}'
    assert calls == [('fsync', tmp, 5000),                 # the whole temporary file flushed first,
                     ('replace', tmp, 'iter_2.pth'),        # then renamed,
                     ('fsync', tmp_path.name, None)]        # then the directory entry flushed
    assert (tmp_path / 'iter_2.pth').read_bytes() == payload


def test_latest_is_switched_atomically_and_the_directory_flushed(tmp_path, monkeypatch):
    (tmp_path / 'iter_2.pth').write_bytes(b'2')
    calls = record_disk_calls(monkeypatch)
    checkpoints.point_latest(tmp_path / 'iter_2.pth')
    link = f'.latest.pth.{os.getpid()}{checkpoints.TMP_SUFFIX}'
    assert calls == [('replace', link, 'latest.pth'), ('fsync', tmp_path.name, None)]
    assert os.readlink(tmp_path / 'latest.pth') == 'iter_2.pth'


# -- reading and pruning checkpoints ---------------------------------------------------------------

def test_what_is_not_an_mmcv_checkpoint_is_named(tmp_path):
    cases = {'list.pth': [1, 2], 'nostate.pth': {'meta': {'iter': 1}}}
    for name, content in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(CGRSegError, match=f'^{tmp_path / name}: not an mmcv checkpoint \\(no state_dict\\)$'):
            checkpoints.load(tmp_path / name)
    torch.save({'state_dict': {}, 'meta': [3]}, tmp_path / 'badmeta.pth')
    with pytest.raises(CGRSegError, match=r'badmeta.pth: not an mmcv checkpoint \(meta is not a dict\)$'):
        checkpoints.load_meta(tmp_path / 'badmeta.pth')
    with pytest.raises(CGRSegError, match=f'^{tmp_path / "gone.pth"}: no such checkpoint$'):
        checkpoints.load(tmp_path / 'gone.pth')
    (tmp_path / 'garbage.pth').write_bytes(b'\x80\x02garbage that is no pickle')
    with pytest.raises(CGRSegError) as err:
        checkpoints.load(tmp_path / 'garbage.pth')
    reason = str(err.value).split('cannot read checkpoint: ', 1)[1]
    assert reason and reason != 'None' and '\n' not in reason
    torch.save({'state_dict': {'w': torch.ones(2)}}, tmp_path / 'nometa.pth')
    assert checkpoints.load_meta(tmp_path / 'nometa.pth') == {}


def test_resume_reads_checkpoints_without_running_their_code(tmp_path):
    """weights_only: a checkpoint whose pickle would call a function stops the resume (it must not be
    used, docs/security.md), the call never made."""
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({'state_dict': {}, 'meta': {'iter': 0, 'x': Payload()}}, tmp_path / 'iter_1.pth')
    with pytest.raises(checkpoints.RefusedCheckpoint, match='iter_1.pth: refusing the checkpoint: it holds '
                       'Python objects that could run code'):
        checkpoints.resumable(tmp_path, print)
    assert not marker.exists()


def test_a_checkpoint_written_on_a_gpu_is_read_on_the_cpu(tmp_path):
    """Its storages say 'cuda': read with map_location='cpu' it loads on a machine without a GPU."""
    import io
    import zipfile
    buffer = io.BytesIO()
    torch.save({'state_dict': {'w': torch.arange(3.)}, 'meta': {'iter': 4}}, buffer)
    path = tmp_path / 'iter_5.pth'
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith('data.pkl'):
                assert data.count(b'X\x03\x00\x00\x00cpu') == 1
                data = data.replace(b'X\x03\x00\x00\x00cpu', b'X\x04\x00\x00\x00cuda')
            dst.writestr(info, data)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='CUDA'):
            torch.load(path, weights_only=True)   # what a load without map_location does here
    assert torch.equal(checkpoints.load(path)['state_dict']['w'], torch.arange(3.))
    assert checkpoints.load_meta(path) == {'iter': 4}


@pytest.mark.parametrize('keep,left', [(0, [5, 4, 3]), (-1, [5, 4, 3]), (1, [5]), (2, [5, 4])])
def test_prune_keeps_the_newest_n_and_zero_keeps_all(tmp_path, keep, left):
    for n in (3, 4, 5):
        (tmp_path / f'iter_{n}.pth').touch()
    checkpoints.prune(tmp_path, keep)
    assert sorted((int(p.stem[5:]) for p in tmp_path.glob('iter_*.pth')), reverse=True) == left


def test_prune_tolerates_a_checkpoint_deleted_meanwhile(tmp_path, monkeypatch):
    (tmp_path / 'iter_9.pth').touch()
    monkeypatch.setattr(checkpoints, 'numbered', lambda work_dir: [tmp_path / 'iter_9.pth', tmp_path / 'iter_8.pth'])
    checkpoints.prune(tmp_path, 1)   # iter_8.pth went away between the listing and the unlink
    assert (tmp_path / 'iter_9.pth').exists()


# -- data-loader workers and the preemption signals --------------------------------------------------

class SignalReport(torch.utils.data.Dataset):
    """Each item: (SIGTERM ignored?, SIGUSR1 ignored?, what the loader's own worker_init_fn recorded)."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        import signal
        return torch.tensor([signal.getsignal(signal.SIGTERM) == signal.SIG_IGN,
                             signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN, INIT_SEEN.get('worker', -1)])


INIT_SEEN = {}


def record_worker(worker_id):
    INIT_SEEN['worker'] = worker_id + 10


def test_validation_workers_ignore_preemption_and_still_run_the_loaders_init():
    loader = torch.utils.data.DataLoader(SignalReport(), batch_size=2, num_workers=1,
                                         worker_init_fn=record_worker, multiprocessing_context='fork')
    shielded = resume.shielded_loader(loader)
    assert shielded.dataset is loader.dataset and shielded.sampler is loader.sampler
    assert next(iter(shielded)).tolist() == [[1, 1, 10], [1, 1, 10]]
    assert next(iter(loader)).tolist() == [[0, 0, 10], [0, 0, 10]]   # the loader itself is unchanged


@pytest.mark.parametrize('key,changed', [('seed', 2), ('dataset_size', 9), ('shuffle', False), ('world_size', 1),
                                         ('batch_size', 4)])
def test_a_changed_data_stream_is_refused_naming_what_changed(monkeypatch, key, changed):
    from cgrseg.runner import iter_runner
    sampler = resume.ResumableSampler(8, seed=1, rank=0, world_size=2)
    loader = torch.utils.data.DataLoader(Augmented(), batch_size=2, sampler=sampler, drop_last=True)
    saved = dict(resume.geometry(loader))
    assert saved == {'seed': 1, 'dataset_size': 8, 'shuffle': True, 'world_size': 2, 'batch_size': 2}
    saved[key] = changed
    state = {'version': resume.STATE_VERSION, 'rng': states_of_two_ranks(), 'data': saved, 'epoch': 0, 'start': 0}
    monkeypatch.setattr(iter_runner, 'get_dist_info', lambda: (0, 2))
    now = resume.geometry(loader)[key]
    with pytest.raises(CGRSegError, match=f'the data stream changed \\({key} {changed} -> {now}\\)'):
        iter_runner.ExactResumeRunner._restore(FakeRunner(state, loader))


def test_an_error_is_named_by_its_first_line_or_its_type():
    assert checkpoints.first_line(ValueError('  first\nsecond  ')) == 'first'
    assert checkpoints.first_line(EOFError()) == 'EOFError'


class FakeCuda:
    """torch.cuda as a machine with ``count`` initialised GPUs shows it to rng_state/set_rng_state."""

    def __init__(self, count):
        self.count, self.restored = count, None

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: self.count > 0)
        monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: self.count > 0)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: self.count)
        monkeypatch.setattr(torch.cuda, 'get_rng_state_all', lambda: [torch.full((4,), g) for g in range(self.count)])
        monkeypatch.setattr(torch.cuda, 'set_rng_state_all', lambda states: setattr(self, 'restored', states))
        return self


def test_gpu_random_states_are_saved_and_restored_per_gpu(monkeypatch):
    FakeCuda(2).install(monkeypatch)
    state = resume.rng_state()
    assert [s.tolist() for s in state['cuda']] == [[0] * 4, [1] * 4]
    cuda = FakeCuda(2).install(monkeypatch)
    resume.set_rng_state(state)
    assert cuda.restored is state['cuda']
    FakeCuda(1).install(monkeypatch)
    with pytest.raises(CGRSegError, match='^checkpoint holds random states of 2 GPUs, this process sees 1$'):
        resume.set_rng_state(state)
    cpu = FakeCuda(0).install(monkeypatch)
    resume.set_rng_state(state)                      # a GPU checkpoint resumed on the CPU: no GPU state to set
    assert cpu.restored is None and 'cuda' not in resume.rng_state()
    gpu = FakeCuda(2).install(monkeypatch)
    resume.set_rng_state(dict(state, cuda=None))     # a CPU checkpoint resumed on GPUs: nothing to restore
    assert gpu.restored is None


def test_the_per_sample_seeds_are_the_recorded_rule():
    """Checkpoints resume exactly only while this rule holds: Python's seed is word 0 of
    SeedSequence([seed, epoch, position]), NumPy's the four words, torch's words 1 and 2 as 64 bits."""
    for key in ((0, 0, 0), (3, 1, 7), (5, 2, 11)):
        words = np.random.SeedSequence(list(key)).generate_state(4, np.uint32)
        py_seed, np_seed, torch_seed = resume._sample_seed(*key)
        assert py_seed == int(words[0]) and list(np_seed) == list(words)
        assert torch_seed == int(words[1]) * 2 ** 32 + int(words[2])
    seeds = {resume._sample_seed(3, epoch, position)[2] for epoch in range(3) for position in range(20)}
    assert len(seeds) == 60   # every sample its own torch stream


def test_an_uninitialised_gpu_is_left_alone(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: False)
    monkeypatch.setattr(torch.cuda, 'get_rng_state_all', lambda: pytest.fail('would initialise CUDA'))
    assert 'cuda' not in resume.rng_state()


def test_failed_writes_are_one_line_naming_the_file(tmp_path):
    target = tmp_path / 'iter_1.pth'

    def torch_writer_fails(tmp):
        raise RuntimeError('PytorchStreamWriter failed writing file data/0: file write failed\ndetails')

    with pytest.raises(CGRSegError, match=f'^{target}: cannot write checkpoint: PytorchStreamWriter failed '
                                          'writing file data/0: file write failed$'):
        checkpoints.save_atomically(torch_writer_fails, target)

    def bare_oserror(tmp):
        raise OSError('no reason given')

    with pytest.raises(CGRSegError, match=f'^{target}: cannot write checkpoint: no reason given$'):
        checkpoints.save_atomically(bare_oserror, target)
    missing = tmp_path / 'gone' / 'iter_1.pth'
    with pytest.raises(CGRSegError, match=f'^{missing.with_name("latest.pth")}: cannot update the link: '
                                          'No such file or directory$'):
        checkpoints.point_latest(missing)
    assert list(tmp_path.iterdir()) == []


def keep_first(batch):
    return batch[0]


@pytest.mark.parametrize('workers', [0, 2])
def test_the_rebuilt_loaders_keep_every_setting_of_mmsegs(workers):
    extra = dict(prefetch_factor=3, persistent_workers=True, multiprocessing_context='fork') if workers else {}
    loader = torch.utils.data.DataLoader(Augmented(), batch_size=3, shuffle=True, drop_last=True,
                                         num_workers=workers, collate_fn=keep_first, pin_memory=True,
                                         timeout=7 if workers else 0, **extra)
    for rebuilt in (resume.resumable_loader(loader, seed=1), resume.shielded_loader(loader)):
        for name in ('batch_size', 'num_workers', 'collate_fn', 'pin_memory', 'drop_last', 'timeout',
                     'persistent_workers', 'prefetch_factor', 'multiprocessing_context'):
            assert getattr(rebuilt, name) == getattr(loader, name), name


@pytest.mark.parametrize('shuffle', [True, False])
def test_a_distributed_loader_becomes_a_resumable_one_of_the_same_rank(shuffle):
    from torch.utils.data import DistributedSampler
    dataset = Augmented()
    old = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=shuffle)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, sampler=old, drop_last=True)
    sampler = resume.resumable_loader(loader, seed=6).sampler
    assert (sampler.size, sampler.seed, sampler.shuffle, sampler.rank, sampler.world_size) == (10, 6, shuffle, 1, 2)


def test_loaders_that_cannot_resume_exactly_are_named():
    with pytest.raises(CGRSegError, match='^exact resume needs a training loader with drop_last=True$'):
        resume.resumable_loader(torch.utils.data.DataLoader(Augmented(), batch_size=2), seed=0)
    odd = torch.utils.data.DataLoader(Augmented(), batch_size=2, drop_last=True,
                                      sampler=torch.utils.data.SubsetRandomSampler(range(4)))
    with pytest.raises(CGRSegError, match='^exact resume does not know the training sampler SubsetRandomSampler$'):
        resume.resumable_loader(odd, seed=0)
    big = torch.utils.data.DataLoader(Augmented(), batch_size=11, shuffle=True, drop_last=True)
    with pytest.raises(CGRSegError, match='^the training set has 10 images, fewer than one batch of 11 per process$'):
        resume.resumable_loader(big, seed=0)
    with pytest.raises(CGRSegError, match='^the training set is empty$'):
        resume.ResumableSampler(0, seed=0)
