"""Lightning's Trainer drives the Tracker through a Lightning callback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trackers.adapters import loop_class
from trackers.adapters.metrics import find_loss
from trackers.core.steps import split_arguments, split_result
from trackers.optional import require

LOGGED_LOSS_NAMES = {
    "validation": ("val_loss", "val/loss", "valid_loss", "validation_loss", "val_loss_epoch", "loss/val"),
    "test": ("test_loss", "test/loss", "test_loss_epoch", "loss/test"),
}
_PREFIXES = {"validation": ("val", "valid"), "test": ("test",)}


def step_outputs(outputs: Any) -> tuple[Any, Any, Any]:
    """``(loss, outputs, targets)`` of what a ``*_step`` returned: a loss, or a dict with ``loss`` (and ``outputs``)."""
    if outputs is None:
        return None, None, None
    if not isinstance(outputs, Mapping) and not (hasattr(outputs, "loss")):
        outputs = {"loss": outputs} if getattr(outputs, "ndim", None) == 0 else {"outputs": outputs}
    loss, logits, targets, _ = split_result(outputs)
    return loss, logits, targets


def logged_loss(trainer: Any, stage: str, key: str | None = None) -> Any:
    """The pass's loss the module logged with ``self.log`` (epoch-reduced by Lightning, weighted by batch size).

    ``key`` names it; else the usual names (``val_loss``, ``val/loss``...),
    else the one logged metric whose name starts like the stage and contains
    ``loss``.
    """
    prefixes = _PREFIXES.get(stage, (stage,))
    return find_loss(
        trainer.callback_metrics,
        key,
        LOGGED_LOSS_NAMES.get(stage, ()),
        lambda name: "loss" in name.lower() and name.lower().startswith(prefixes),
    )


def _axis_step(trainer: Any) -> int:
    """Lightning's logged step: optimizer steps taken so far (``_batches_that_stepped``, else ``global_step``)."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(getattr(loop, "_batches_that_stepped", trainer.global_step))


DESCRIPTION = "a Lightning Trainer (lightning.pytorch.Trainer or pytorch_lightning.Trainer)"
PACKAGES = ("lightning.pytorch", "pytorch_lightning")


def recognizes(loop: Any) -> bool:
    """Whether ``loop`` is a Lightning Trainer (either package)."""
    return any(loop_class(loop, package, "Trainer") for package in PACKAGES)


def attach(tracker: Any, loop: Any, **options: Any) -> None:
    """``tracker.attach(trainer)`` for a Lightning Trainer: see :func:`attach_lightning`."""
    package = next(p for p in PACKAGES if loop_class(loop, p, "Trainer"))
    attach_lightning(tracker, loop, package, **options)


def attach_lightning(
    tracker: Any, trainer: Any, package: str = "lightning.pytorch", val_loss_key: str | None = None
) -> None:
    """Add a callback to ``trainer`` that turns its hooks into the Tracker's events.

    Points land on Lightning's own logged step (its loggers' x axis); one
    step is one optimizer step, so with ``accumulate_grad_batches=k`` the k
    micro-batches make one step whose loss is their mean (Lightning hands
    callbacks the loss divided by k; it is multiplied back). Validation and
    test losses are what the module logged (``self.log("val_loss", loss)``,
    reduced by Lightning over the pass), else what the step returned,
    weighted by batch size, else ``loss_fn`` on outputs and targets.
    ``trainer.test()`` and ``trainer.predict()`` after ``fit`` are logged as
    ``test/...`` and ``predict/...``. The sanity-check validation is not
    tracked. ``fit``'s end flushes; the run ends at ``tracker.close()`` or
    the end of the process.
    """
    pl = require(package)
    tracker.state.loop = "lightning"
    tracker.step_on = "optimizer"  # the callback says when Lightning stepped

    base: Any = pl.Callback

    class LooptrackCallback(base):
        def __init__(self) -> None:
            self.batch = None
            self.eval_batch = None
            self.steps_before = 0

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            tracker.start()
            for optimizer in trainer.optimizers:
                tracker.add_optimizer(optimizer)

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            tracker.epoch_start(trainer.current_epoch)

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.steps_before = trainer.global_step
            self.batch = tracker.batch_start(*split_arguments((batch,), {}), step=_axis_step(trainer))

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.batch is None:
                return
            loss, logits, targets = step_outputs(outputs)
            if loss is not None and pl_module.automatic_optimization and trainer.accumulate_grad_batches > 1:
                loss = loss * trainer.accumulate_grad_batches  # undo Lightning's normalisation for backward
            tracker.batch_end(
                self.batch,
                loss=loss,
                outputs=logits,
                targets=targets,
                optimizer_step=trainer.global_step > self.steps_before,
            )
            self.batch = None

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            tracker.epoch_end()

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            tracker.flush()

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            tracker.fail(exception)
            tracker.close()

        # evaluation passes -------------------------------------------------
        def _start(self, trainer: Any, stage: str) -> None:
            if not trainer.sanity_checking:
                tracker.validation_start(stage)

        def _batch_start(self, trainer: Any, batch: Any) -> None:
            if not trainer.sanity_checking:
                self.eval_batch = tracker.batch_start(*split_arguments((batch,), {}), validation=True)

        def _batch_end(self, outputs: Any) -> None:
            if self.eval_batch is not None:
                loss, logits, targets = step_outputs(outputs)
                tracker.batch_end(self.eval_batch, loss=loss, outputs=logits, targets=targets)
                self.eval_batch = None

        def _end(self, trainer: Any, stage: str) -> None:
            if not trainer.sanity_checking:
                key = val_loss_key if stage == "validation" else None
                tracker.validation_end(loss=logged_loss(trainer, stage, key) if stage != "predict" else None)

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            self._start(trainer, "validation")

        def on_validation_batch_start(
            self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self._batch_start(trainer, batch)

        def on_validation_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self._batch_end(outputs)

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            self._end(trainer, "validation")

        def on_test_start(self, trainer: Any, pl_module: Any) -> None:
            self._start(trainer, "test")

        def on_test_batch_start(
            self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self._batch_start(trainer, batch)

        def on_test_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self._batch_end(outputs)

        def on_test_end(self, trainer: Any, pl_module: Any) -> None:
            self._end(trainer, "test")

        def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
            self._start(trainer, "predict")

        def on_predict_batch_start(
            self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self._batch_start(trainer, batch)

        def on_predict_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self._batch_end({"outputs": outputs} if outputs is not None else None)

        def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
            self._end(trainer, "predict")

    trainer.callbacks.append(LooptrackCallback())
