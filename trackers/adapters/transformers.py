"""A transformers Trainer drives the Tracker through a TrainerCallback and its own step methods."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from trackers.adapters import loop_class
from trackers.adapters.epochs import LateEpochEnd
from trackers.adapters.metrics import find_loss
from trackers.optional import require

INPUT_KEYS = ("input_ids", "pixel_values", "input_values", "inputs_embeds")


def _logits(output: Any) -> Any:
    """The logits of a transformers ModelOutput, a dict, or a ``(loss, logits, ...)`` tuple."""
    if output is None:
        return None
    if hasattr(output, "get"):
        return output.get("logits")
    if isinstance(output, tuple) and len(output) > 1:
        return output[1]
    return output


def metrics_loss(metrics: Mapping[str, Any] | None, prefix: str, key: str | None = None) -> Any:
    """The pass's loss in the metrics the Trainer reports: ``key``, else ``<prefix>_loss``, else the one ``*_loss``."""
    return find_loss(metrics, key, (f"{prefix}_loss",), lambda name: name.endswith("_loss"))


DESCRIPTION = "a transformers Trainer (transformers.Trainer)"


def recognizes(loop: Any) -> bool:
    """Whether ``loop`` is a transformers Trainer."""
    return loop_class(loop, "transformers", "Trainer")


def attach(tracker: Any, loop: Any, **options: Any) -> None:
    """``tracker.attach(trainer)`` for a transformers Trainer: see :func:`attach_transformers`."""
    attach_transformers(tracker, loop, **options)


def attach_transformers(tracker: Any, trainer: Any, val_loss_key: str | None = None) -> None:
    """Follow ``trainer``: its ``training_step`` and ``prediction_step`` give each batch, a callback the rest.

    Each micro-batch's loss is what ``training_step`` returned (the Trainer's
    own loss, scaled back from its division for gradient accumulation), so
    the logged training loss is the mean over every micro-batch, as the
    Trainer logs it. One step is one optimizer step and lands on
    ``state.global_step``, the Trainer's own axis. Gradients exist for
    ``on_before_optimizer_step`` (torch's optimizer step hook), before the
    Trainer zeroes them. Evaluation batches come from ``prediction_step``
    (loss, logits, labels); the pass's loss is the Trainer's ``eval_loss``
    (``val_loss_key`` names another). The end-of-epoch evaluation belongs to
    its epoch; ``evaluate()`` after ``train()`` is a validation pass of the
    run, ``predict()`` a test pass (``test/loss``, the Trainer's
    ``test_loss``). ``train()``'s end flushes; the run ends at
    ``tracker.close()`` or the end of the process; an exception out of
    ``train()`` ends it.
    """
    transformers = require("transformers")
    tracker.state.loop = "transformers"
    tracker.step_on = "optimizer"  # on_step_end says when the Trainer stepped
    capture = tracker.state.capture

    def captured_logits() -> Any:
        return _logits(capture.outputs) if capture is not None else None

    def split_inputs(inputs: Any) -> tuple[Any, Any]:
        if not isinstance(inputs, Mapping):
            return inputs, None
        return next((inputs[k] for k in INPUT_KEYS if k in inputs), None), inputs.get("labels")

    original_training_step = trainer.training_step
    original_prediction_step = trainer.prediction_step
    original_predict = trainer.predict
    original_train = trainer.train

    @functools.wraps(original_training_step)
    def training_step(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        features, labels = split_inputs(inputs)
        batch = tracker.batch_start(features, labels, step=trainer.state.global_step + 1)
        loss = original_training_step(model, inputs, *args, **kwargs)
        accumulated = getattr(trainer, "current_gradient_accumulation_steps", 1) or 1
        tracker.batch_end(
            batch,
            loss=loss * accumulated if accumulated != 1 else loss,
            outputs=captured_logits(),
            targets=labels,
            optimizer_step=False,
        )
        return loss

    @functools.wraps(original_prediction_step)
    def prediction_step(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        features, labels = split_inputs(inputs)
        batch = tracker.batch_start(features, labels, validation=True)
        result = original_prediction_step(model, inputs, *args, **kwargs)
        loss, logits, label_ids = result
        tracker.batch_end(
            batch,
            loss=loss,
            outputs=logits if logits is not None else captured_logits(),
            targets=label_ids if label_ids is not None else labels,
        )
        return result

    @functools.wraps(original_predict)
    def predict(*args: Any, **kwargs: Any) -> Any:
        tracker.validation_start("test")
        return original_predict(*args, **kwargs)

    @functools.wraps(original_train)
    def train(*args: Any, **kwargs: Any) -> Any:
        try:
            return original_train(*args, **kwargs)
        except Exception as error:  # as the ignite and Lightning adapters: an exception out of train() ends the run
            tracker.fail(error)
            tracker.close()
            raise

    trainer.training_step = training_step
    trainer.prediction_step = prediction_step
    trainer.predict = predict
    trainer.train = train

    base: Any = transformers.TrainerCallback

    class LooptrackCallback(base):
        def __init__(self) -> None:
            self.late_epoch_end = LateEpochEnd(tracker)

        def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
            tracker.start()
            optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the torch one
            if optimizer is not None:
                tracker.add_optimizer(optimizer)

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.late_epoch_end.settle()
            tracker.epoch_start(int(state.epoch or 0))

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.late_epoch_end.settle()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            tracker.end_step(step=state.global_step)

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            tracker.validation_end(loss=metrics_loss(metrics, "eval", val_loss_key))

        def on_predict(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            tracker.validation_end(loss=metrics_loss(metrics, "test"))

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.late_epoch_end.mark()  # ended by the next epoch, step or the end of training (see above)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.late_epoch_end.settle()
            tracker.flush()

    trainer.add_callback(LooptrackCallback())
