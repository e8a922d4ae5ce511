"""Lightning's Trainer drives the Tracker through a Lightning callback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trackers.adapters._imports import require
from trackers.steps import split_arguments, split_result


def _loss_and_outputs(outputs: Any) -> tuple[Any, Any, Any]:
    """What ``training_step``/``validation_step`` returned: a loss, or a dict with ``loss`` (and ``outputs``)."""
    if outputs is None:
        return None, None, None
    loss, logits, targets, _ = split_result(outputs)
    return loss, logits, targets


def attach_lightning(tracker: Any, trainer: Any, package: str = "lightning.pytorch") -> None:
    """Add a callback to ``trainer`` that turns its hooks into the Tracker's events.

    Steps follow ``trainer.global_step`` (one step a batch when gradients are
    not accumulated; otherwise looptrack counts batches), epochs
    ``trainer.current_epoch``. The sanity-check validation is not tracked.
    The run ends when ``fit`` ends. Outputs come from ``training_step``'s
    ``{"loss": ..., "outputs": logits}`` or from the forward hook on the
    LightningModule (``self(x)`` in the step).
    """
    pl = require(package)

    class LooptrackCallback(pl.Callback):
        def __init__(self) -> None:
            self.batch = None
            self.validation_batch = None

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            tracker.start()

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            tracker.epoch_start(trainer.current_epoch)

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            step = trainer.global_step if trainer.accumulate_grad_batches == 1 else None
            self.batch = tracker.batch_start(*split_arguments((batch,), {}), step=step)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.batch is not None:
                loss, logits, targets = _loss_and_outputs(outputs)
                tracker.batch_end(self.batch, loss=loss, outputs=logits, targets=targets)
                self.batch = None

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                tracker.validation_start()

        def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                      dataloader_idx: int = 0) -> None:
            if not trainer.sanity_checking:
                self.validation_batch = tracker.batch_start(*split_arguments((batch,), {}), validation=True)

        def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                    dataloader_idx: int = 0) -> None:
            if self.validation_batch is not None:
                loss, logits, targets = _loss_and_outputs(outputs if isinstance(outputs, Mapping) or
                                                          outputs is None else {"loss": outputs})
                tracker.batch_end(self.validation_batch, loss=loss, outputs=logits, targets=targets)
                self.validation_batch = None

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                tracker.validation_end()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            tracker.epoch_end()

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            tracker.close()

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            tracker.fail(exception)
            tracker.close()

    trainer.callbacks.append(LooptrackCallback())
