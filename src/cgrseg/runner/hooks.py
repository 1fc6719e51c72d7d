"""mmcv hooks ``cgrseg train`` registers: stop on a non-finite loss (resume and checkpoints:
``iter_runner``)."""
import math

from mmcv.runner import HOOKS, Hook


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


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
