"""mmcv hooks ``cgrseg train`` registers: resume from a checkpoint, stop on a non-finite loss."""
import math

from mmcv.runner import HOOKS, Hook

from cgrseg.runner.checkpoints import completed_iters


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class ResumeCheckpointHook(Hook):
    """Resume the runner (weights, optimizer, iteration) from ``checkpoint`` before training starts.

    mmcv's own resume path maps the checkpoint onto the current CUDA device, which fails on a
    CPU-only machine; loading onto the CPU first works everywhere (load_state_dict copies onto
    the parameters' device).
    """

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint

    def before_run(self, runner):
        runner.resume(self.checkpoint, map_location='cpu')
        # mmcv saves iter_k.pth after the k-th step but records meta iter = k - 1 (the counter is
        # bumped after the hooks run); restoring that value would repeat step k. Skip past it.
        runner._iter = completed_iters(runner.iter)
        runner._inner_iter = runner._iter
        runner.logger.info(
            f'resumed from {self.checkpoint}: continuing after iteration {runner.iter}')


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise ``NonFiniteLossError`` as soon as the loss is NaN/inf.

    Registered with a priority above the optimizer hook, so the diverged step is never applied
    and no checkpoint of it is written. mmseg averages the logged loss over all ranks, so under
    DDP every rank stops at the same iteration.
    """

    def after_train_iter(self, runner):
        loss = runner.outputs['log_vars']['loss']
        if not math.isfinite(loss):
            raise NonFiniteLossError(f'loss is {loss} at iteration {runner.iter + 1}')
