"""mmcv's ``IterBasedRunner`` with atomic checkpoints, an exact resume and a clean stop on preemption.

Configs keep ``runner = dict(type='IterBasedRunner', ...)`` (mmseg decides from that name how to
evaluate); ``cgrseg train`` adds ``constructor='ExactResumeRunnerConstructor'``, mmcv's extension
point for building a runner, to get this subclass. What it changes:

- checkpoints: ``ExactCheckpointHook`` runs after every other hook of an iteration (so the random
  states it saves are those the next iteration starts from), writes through
  ``checkpoints.save_atomically`` and adds the resume state (random states of every rank, data
  stream geometry and position) to the checkpoint's ``meta['exact_resume']``; it also saves and
  stops when a preemption signal arrived (``preempt``);
- ``resume`` loads on the CPU (works without a GPU) and continues after the saved iteration;
- ``run`` rebuilds mmseg's training loader with ``resume.resumable_loader``, seeks it to the
  resumed position, restores the random states, and keeps SIGTERM/SIGUSR1 away from every
  data-loader worker (train and validation);
- validation runs between a save and a restore of the random states (``call_hook``).
"""
from pathlib import Path

import torch
import torch.distributed as dist
from mmcv.runner import HOOKS, CheckpointHook, EvalHook, IterBasedRunner
from mmcv.runner.builder import RUNNER_BUILDERS
from mmcv.runner.checkpoint import save_checkpoint as mmcv_save_checkpoint
from mmcv.runner.dist_utils import allreduce_params, get_dist_info, master_only
from torch.utils.data import DataLoader

from cgrseg.errors import CGRSegError
from cgrseg.runner import checkpoints, preempt, resume
from cgrseg.runner.checkpoints import completed_iters

CONSTRUCTOR = 'ExactResumeRunnerConstructor'
checkpoints.route_mmcv_loading()  # resume_from and load_from read weights only
# what a checkpoint's meta or optimizer state of the wrong shape raises while being restored
MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError)


def _distributed():
    return dist.is_available() and dist.is_initialized()


def _all_ranks_max(value):
    """``value`` (an int) maximised over all ranks; itself without a process group."""
    if not _distributed():
        return value
    device = 'cuda' if dist.get_backend() == 'nccl' else 'cpu'
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def _all_ranks_rng():
    """Random states of every rank, in rank order."""
    state = resume.rng_state()
    if not _distributed():
        return [state]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


@HOOKS.register_module()
class ExactCheckpointHook(CheckpointHook):
    """mmcv's checkpoint hook (same options), registered last, saving also on a preemption signal."""

    def after_train_iter(self, runner):
        due = self.every_n_iters(runner, self.interval) or (self.save_last and self.is_last_iter(runner))
        signum = _all_ranks_max(preempt.requested() or 0)
        if due or signum:
            runner.logger.info(f'Saving checkpoint at {runner.iter + 1} iterations')
            if self.sync_buffer:
                allreduce_params(runner.model.buffers())
            runner.exact_state = {'version': resume.STATE_VERSION, 'rng': _all_ranks_rng(),
                                  **runner.stream_state(completed_iters(runner.iter))}
            self._save_checkpoint(runner)
            if _distributed():
                dist.barrier()  # no rank leaves before rank 0 has written the checkpoint
        if signum and not self.is_last_iter(runner):
            raise preempt.Preempted(
                f'{runner.work_dir}: stopped by {preempt.signal_name(signum)} after iteration '
                f'{runner.iter + 1}, saved as iter_{runner.iter + 1}.pth; run the same command '
                f'again to continue from there')

    @master_only
    def _save_checkpoint(self, runner):
        runner.save_checkpoint(self.out_dir, save_optimizer=self.save_optimizer, **self.args)
        name = self.args.get('filename_tmpl', 'iter_{}.pth').format(runner.iter + 1)
        if runner.meta is not None:
            runner.meta.setdefault('hook_msgs', dict())
            runner.meta['hook_msgs']['last_ckpt'] = self.file_client.join_path(self.out_dir, name)
        checkpoints.prune(self.out_dir, self.max_keep_ckpts)


class ExactResumeRunner(IterBasedRunner):
    """See the module docstring. The data seed is ``meta['seed']`` (``cgrseg train --seed``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.exact_state = None
        self._resumed = None       # the checkpoint's meta after resume()
        self._train_loader = None

    def call_hook(self, fn_name):
        """mmcv's, with every evaluation hook (``DistEvalHook`` included) run inside
        ``resume.random_states_kept``, so that validating never shifts the training's random
        streams (drop-path masks) and a resumed run validates without drifting from the
        uninterrupted one."""
        for hook in self._hooks:
            if isinstance(hook, EvalHook):
                with resume.random_states_kept():
                    getattr(hook, fn_name)(self)
            else:
                getattr(hook, fn_name)(self)

    # -- checkpoints -------------------------------------------------------------------------
    def register_checkpoint_hook(self, checkpoint_config):
        cfg = dict(checkpoint_config or {'interval': -1, 'by_epoch': False})
        if not isinstance(checkpoint_config, (dict, type(None))):
            raise CGRSegError(f'checkpoint_config must be a dict, not {type(checkpoint_config).__name__}')
        cfg['type'] = 'ExactCheckpointHook'
        from mmcv.utils import build_from_cfg
        self.register_hook(build_from_cfg(cfg, HOOKS), priority='LOWEST')

    def save_checkpoint(self, out_dir, filename_tmpl='iter_{}.pth', meta=None, save_optimizer=True,
                        create_symlink=True):
        meta = dict(meta or {})
        meta.update(self.meta or {})
        meta.update(epoch=self.epoch + 1, iter=self.iter)
        if self.exact_state is not None:
            meta['exact_resume'] = self.exact_state
        path = Path(out_dir) / filename_tmpl.format(self.iter + 1)
        optimizer = self.optimizer if save_optimizer else None
        checkpoints.save_atomically(
            lambda tmp: mmcv_save_checkpoint(self.model, tmp, optimizer=optimizer, meta=meta), path)
        if create_symlink:
            checkpoints.point_latest(path)

    # -- resume ------------------------------------------------------------------------------
    def load_checkpoint(self, filename, map_location='cpu', strict=False, revise_keys=[(r'^module.', '')]):
        ckpt = super().load_checkpoint(filename, map_location, strict, revise_keys)
        self._resumed = ckpt.get('meta') or {}
        return ckpt

    def resume(self, checkpoint, resume_optimizer=True, map_location='cpu'):
        """mmcv's resume, on the CPU, continuing *after* the saved iteration.

        mmcv saves iter_k.pth after the k-th step but records meta iter = k - 1 (the counter is
        bumped after the hooks run); restoring that value would repeat step k.
        """
        try:
            super().resume(checkpoint, resume_optimizer=resume_optimizer, map_location=map_location)
        except MALFORMED as err:  # an optimizer state or meta that is not this run's
            raise checkpoints.RefusedCheckpoint(f'{checkpoint}: cannot resume from it: '
                                                f'{type(err).__name__}: {checkpoints.first_line(err)}') from None
        self._iter = self._inner_iter = completed_iters(self.iter)
        self.logger.info(f'resumed from {checkpoint}: continuing after iteration {self.iter}')

    def stream_state(self, completed):
        epoch, start = resume.position(self._train_loader, completed)
        return {'data': resume.geometry(self._train_loader), 'epoch': epoch, 'start': start}

    def _restore(self):
        """Seek the data stream and restore the random states saved with the resumed checkpoint."""
        state = (self._resumed or {}).get('exact_resume')
        if state is None:
            self.logger.warning('the checkpoint holds no resume state (written by an older cgrseg): '
                                'continuing with a fresh data order, not exactly')
            self._train_loader.sampler.seek(*resume.position(self._train_loader, self.iter))
            return
        try:
            self._restore_exactly(state)
        except MALFORMED as err:
            raise checkpoints.RefusedCheckpoint(
                f'{self.work_dir}: the resume state of the checkpoint is malformed '
                f'({type(err).__name__}: {checkpoints.first_line(err)}); use a fresh --work-dir') from None

    def _restore_exactly(self, state):
        if state.get('version') != resume.STATE_VERSION:
            raise CGRSegError(f'resume state version {state.get("version")} is not '
                              f'{resume.STATE_VERSION}; use a fresh --work-dir')
        now = resume.geometry(self._train_loader)
        changed = {k: (state['data'].get(k), v) for k, v in now.items() if state['data'].get(k) != v}
        if changed:
            what = ', '.join(f'{k} {old} -> {new}' for k, (old, new) in changed.items())
            raise CGRSegError(f'{self.work_dir}: cannot resume exactly, the data stream changed '
                              f'({what}); rerun with the original settings or use a fresh --work-dir')
        self._train_loader.sampler.seek(state['epoch'], state['start'])
        rank, _ = get_dist_info()
        resume.set_rng_state(state['rng'][rank])
        self.logger.info(f'exact resume: epoch {state["epoch"]}, sample {state["start"]}, '
                         f'random states restored')

    # -- run ---------------------------------------------------------------------------------
    def run(self, data_loaders, workflow, max_iters=None, **kwargs):
        seed = (self.meta or {}).get('seed', 0)
        self._train_loader = resume.resumable_loader(data_loaders[0], seed)
        for hook in self.hooks:
            if isinstance(getattr(hook, 'dataloader', None), DataLoader):
                hook.dataloader = resume.shielded_loader(hook.dataloader)
        if self._resumed is not None:
            self._restore()
        try:
            super().run([self._train_loader, *data_loaders[1:]], workflow, max_iters, **kwargs)
        finally:
            self._stop_workers()

    def _stop_workers(self):
        """Shut persistent data-loader workers down now, also when training stops on an error.

        They ignore SIGTERM, so multiprocessing's exit handler (terminate, then join) would wait for
        them forever; torch's own shutdown asks them to leave instead.
        """
        loaders = [self._train_loader] + [h.dataloader for h in self.hooks if hasattr(h, 'dataloader')]
        for loader in loaders:
            iterator = getattr(loader, '_iterator', None)  # torch keeps persistent workers here
            if iterator is not None and hasattr(iterator, '_shutdown_workers'):
                iterator._shutdown_workers()


@RUNNER_BUILDERS.register_module()
class ExactResumeRunnerConstructor:
    """Builds ``ExactResumeRunner`` for a config that asks for mmcv's ``IterBasedRunner``."""

    def __init__(self, runner_cfg, default_args=None):
        self.runner_cfg = dict(runner_cfg)
        self.default_args = default_args or {}

    def __call__(self):
        cfg = dict(self.runner_cfg)
        kind = cfg.pop('type')
        if kind != 'IterBasedRunner':
            raise CGRSegError(f'runner type {kind}: cgrseg train supports IterBasedRunner only')
        return ExactResumeRunner(**self.default_args, **cfg)
