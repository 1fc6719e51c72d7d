"""What makes a resumed run continue exactly where the interrupted one stopped.

mmseg's loader draws a new permutation from the global torch RNG at every epoch and lets each
data-loader worker run its own augmentation stream from a fixed seed, so none of it survives a
restart. Here instead:

- the data order is a pure function of (seed, epoch): ``ResumableSampler`` can start mid-epoch;
- every sample's augmentation is seeded from (seed, epoch, position in the epoch), in whichever
  process loads it (``SeededSamples``), so neither the number of workers nor a restart changes it;
- the main process's random states (Python, NumPy, torch, CUDA), which drive drop-path and
  dropout, are saved with each checkpoint (``rng_state``) and restored on resume;
- validation leaves them as it found them (``random_states_kept``): a loader with persistent
  workers draws their base seed from torch's global generator at its first pass only, i.e. once
  per process, so a resumed run would otherwise draw once more than the uninterrupted one.

The sampler's position follows from the number of completed iterations (``position``): with
``drop_last`` every iteration consumes one full batch per rank.
"""
import contextlib
import random
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from cgrseg.errors import CGRSegError

STATE_VERSION = 1
# Signals a preempted job receives; data-loader workers ignore them and let the trainer stop.
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def rng_state():
    """The random states of this process: Python, NumPy, torch CPU and every initialised GPU.

    Plain types and tensors only: mmcv reads checkpoints with ``torch.load(weights_only=True)``.
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {'python': random.getstate(), 'numpy': (name, keys.tolist(), pos, has_gauss, gauss),
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        if len(state['cuda']) != torch.cuda.device_count():
            raise CGRSegError(f'checkpoint holds random states of {len(state["cuda"])} GPUs, '
                              f'this process sees {torch.cuda.device_count()}')
        torch.cuda.set_rng_state_all(state['cuda'])


@contextlib.contextmanager
def random_states_kept():
    """Run a block (a validation) and put this process's random states back afterwards."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _sample_seed(seed, epoch, position):
    """Seeds (Python, NumPy, torch) of one sample, independent of process and worker."""
    words = np.random.SeedSequence([seed, epoch, position]).generate_state(4, np.uint32)
    return int(words[0]), words, int(words[1]) << 32 | int(words[2])


class SeededSamples(torch.utils.data.Dataset):
    """A dataset whose items are ``(index, epoch, position)``: item ``index`` of the wrapped dataset,
    loaded with every global RNG seeded from (seed, epoch, position) and restored afterwards, so
    loading in the main process leaves the training's random states untouched."""

    def __init__(self, dataset, seed):
        self.dataset = dataset
        self.seed = seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch, position = key
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        py_seed, np_seed, torch_seed = _sample_seed(self.seed, epoch, position)
        random.seed(py_seed)
        np.random.seed(np_seed)
        torch.manual_seed(torch_seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


class ResumableSampler(Sampler):
    """Shuffled (or sequential) epochs of ``size`` items for rank ``rank`` of ``world_size``.

    Epoch ``e``'s order is a permutation drawn from (seed, e), padded to a multiple of the world size
    and dealt out to ranks like ``torch.utils.data.DistributedSampler``. Each ``iter()`` starts the
    next epoch; ``seek(epoch, start)`` makes the next ``iter()`` begin at sample ``start`` of ``epoch``.
    Items are ``(index, epoch, position)`` for ``SeededSamples``; ``position`` counts across ranks.
    """

    def __init__(self, size, seed, shuffle=True, rank=0, world_size=1):
        if size < 1:
            raise CGRSegError('the training set is empty')
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.num_samples = -(-size // world_size)
        self.epoch, self.start = 0, 0

    def seek(self, epoch, start):
        self.epoch, self.start = epoch, start

    def order(self, epoch):
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.size) if self.shuffle
                 else np.arange(self.size))
        padded = np.resize(order, self.num_samples * self.world_size)  # repeats the head, as DDP does
        return padded[self.rank::self.world_size]

    def __iter__(self):
        epoch, start = self.epoch, self.start
        self.epoch, self.start = epoch + 1, 0
        order = self.order(epoch)
        for local in range(start, self.num_samples):
            yield int(order[local]), epoch, local * self.world_size + self.rank

    def __len__(self):
        return self.num_samples


def ignore_preempt_signals(worker_id, chained=None):
    """Data-loader worker start-up: leave SIGTERM/SIGUSR1 to the trainer (torch's workers would die
    on SIGTERM, and the trainer would then fail instead of saving a checkpoint)."""
    for sig in PREEMPT_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if chained is not None:
        chained(worker_id)


class _ShieldedInit:
    """Picklable ``worker_init_fn``: ``ignore_preempt_signals`` then the loader's own one."""

    def __init__(self, chained):
        self.chained = chained

    def __call__(self, worker_id):
        ignore_preempt_signals(worker_id, self.chained)


def _loader_like(loader, dataset, sampler, generator=None, worker_init_fn=None):
    """``loader`` rebuilt with another dataset/sampler, keeping its batching and worker settings."""
    extra = {'prefetch_factor': loader.prefetch_factor} if loader.num_workers else {}
    return DataLoader(dataset, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      timeout=loader.timeout, worker_init_fn=_ShieldedInit(worker_init_fn),
                      multiprocessing_context=loader.multiprocessing_context,
                      generator=generator, persistent_workers=loader.persistent_workers, **extra)


def shielded_loader(loader):
    """The same loader whose workers ignore the preemption signals (used for validation)."""
    return _loader_like(loader, loader.dataset, loader.sampler,
                        worker_init_fn=loader.worker_init_fn)


def resumable_loader(loader, seed):
    """mmseg's training loader rebuilt on ``ResumableSampler`` + ``SeededSamples``.

    Batch size, workers, collate function and pinning stay as mmseg built them; a private
    generator keeps the loader from drawing on the global torch RNG.
    """
    if not loader.drop_last:
        raise CGRSegError('exact resume needs a training loader with drop_last=True')
    old = loader.sampler
    if isinstance(old, DistributedSampler):
        sampler = ResumableSampler(len(loader.dataset), seed, old.shuffle, old.rank, old.num_replicas)
    elif isinstance(old, torch.utils.data.RandomSampler):
        sampler = ResumableSampler(len(loader.dataset), seed)
    elif isinstance(old, torch.utils.data.SequentialSampler):  # data.train_dataloader shuffle=False
        sampler = ResumableSampler(len(loader.dataset), seed, shuffle=False)
    else:
        raise CGRSegError(f'exact resume does not know the training sampler {type(old).__name__}')
    if sampler.num_samples < loader.batch_size:
        raise CGRSegError(f'the training set has {len(loader.dataset)} images, fewer than one batch '
                          f'of {loader.batch_size} per process')
    generator = torch.Generator().manual_seed(seed)
    return _loader_like(loader, SeededSamples(loader.dataset, seed), sampler, generator)


def geometry(loader):
    """What fixes the data stream's position: changing any of it makes an exact resume impossible."""
    sampler = loader.sampler
    return {'seed': sampler.seed, 'dataset_size': sampler.size, 'shuffle': sampler.shuffle,
            'world_size': sampler.world_size, 'batch_size': loader.batch_size}


def position(loader, completed):
    """(epoch, first sample) of the sampler after ``completed`` iterations."""
    per_epoch = loader.sampler.num_samples // loader.batch_size
    return completed // per_epoch, completed % per_epoch * loader.batch_size
