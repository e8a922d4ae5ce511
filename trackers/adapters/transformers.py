"""A transformers Trainer drives the Tracker through a TrainerCallback."""

from __future__ import annotations

from typing import Any

from trackers.adapters._epochs import LateEpochEnd
from trackers.adapters._imports import require

INPUT_KEYS = ("input_ids", "pixel_values", "input_values", "inputs_embeds")


def _from_model_output(output: Any) -> tuple[Any, Any]:
    """``(loss, logits)`` of a transformers ModelOutput (or a dict, or a tuple whose first item is the loss)."""
    if output is None:
        return None, None
    if hasattr(output, "get"):
        return output.get("loss"), output.get("logits")
    if isinstance(output, tuple) and output:
        return output[0], output[1] if len(output) > 1 else None
    return None, output


def attach_transformers(tracker: Any, trainer: Any) -> None:
    """Add a ``TrainerCallback`` that turns the Trainer's events into the Tracker's.

    transformers does not hand the loss to callbacks: the Tracker's forward
    hook on the model captures each forward's output, whose ``loss`` and
    ``logits`` are used (with gradient accumulation, those of the last
    micro-batch). Inputs and labels come from the forward's keyword
    arguments. Steps follow ``state.global_step``; evaluation batches
    (``on_prediction_step``) are validation batches. The Trainer evaluates
    after ``on_epoch_end``, so the epoch is ended only when the next one (or
    the run) ends: an end-of-epoch evaluation counts as that epoch's
    validation, as in a plain loop. The run ends with training.
    """
    transformers = require("transformers")
    capture = tracker.state.capture
    if capture is None:
        raise ValueError("Tracker.attach(transformers.Trainer) needs the model: Tracker(trainer.model, ...)")

    def last_batch() -> tuple[Any, Any]:
        kwargs = capture.last_kwargs or {}
        inputs = next((kwargs[k] for k in INPUT_KEYS if k in kwargs), capture.last_args[0] if capture.last_args
                      else None)
        return inputs, kwargs.get("labels")

    class LooptrackCallback(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.batch = None
            self.late_epoch_end = LateEpochEnd(tracker)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            tracker.start()

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.late_epoch_end.settle()
            tracker.epoch_start(int(state.epoch or 0))

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.late_epoch_end.settle()
            self.batch = tracker.batch_start(step=state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.batch is None:
                return
            loss, logits = _from_model_output(capture.outputs)
            inputs, labels = last_batch()
            self.batch.inputs = inputs
            tracker.batch_end(self.batch, loss=loss, outputs=logits, targets=labels)
            self.batch = None

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            loss, logits = _from_model_output(capture.outputs)  # read before batch_start clears it
            inputs, labels = last_batch()
            batch = tracker.batch_start(inputs, labels, validation=True)
            tracker.batch_end(batch, loss=loss, outputs=logits, targets=labels)

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            tracker.validation_end()

        def on_predict(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            tracker.validation_end()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.late_epoch_end.mark()  # ended by the next epoch, step or the end of training (see above)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.late_epoch_end.settle()
            tracker.close()

    trainer.add_callback(LooptrackCallback())
