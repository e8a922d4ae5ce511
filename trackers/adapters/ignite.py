"""An ignite Engine (and its evaluator) drive the Tracker through event handlers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trackers.adapters._epochs import LateEpochEnd
from trackers.adapters._imports import require
from trackers.steps import split_arguments, split_result


def _split_output(output: Any, validation: bool) -> tuple[Any, Any, Any]:
    """``(loss, outputs, targets)`` from ``engine.state.output``.

    ``create_supervised_trainer`` gives ``loss.item()`` (a float: that sync is
    ignite's default; ``output_transform=lambda x, y, y_pred, loss: {"loss": loss,
    "y_pred": y_pred, "y": y}`` avoids it and hands over the outputs too);
    ``create_supervised_evaluator`` gives ``(y_pred, y)``.
    """
    if isinstance(output, Mapping):
        loss, logits, targets, _ = split_result(output)
        return loss, output.get("y_pred", logits), output.get("y", targets)
    if isinstance(output, (tuple, list)) and len(output) == 2 and validation:
        return None, output[0], output[1]
    loss, logits, targets, _ = split_result(output)
    return loss, logits, targets


def attach_ignite(tracker: Any, engine: Any, evaluator: Any = None) -> None:
    """Register handlers on ``engine`` (training) and optionally ``evaluator`` (validation batches).

    Steps follow ``engine.state.iteration`` (0-based here), epochs
    ``engine.state.epoch``. The epoch ends after the handlers of
    ``EPOCH_COMPLETED`` ran, so an evaluator run there counts as that epoch's
    validation. The run ends at ``COMPLETED``; an exception ends it and goes on.
    """
    events = require("ignite.engine").Events
    pending = {"batch": None, "validation_batch": None}
    late_epoch_end = LateEpochEnd(tracker)

    def started(_: Any) -> None:
        tracker.start()

    def epoch_started(e: Any) -> None:
        late_epoch_end.settle()
        tracker.epoch_start(e.state.epoch - 1)

    def iteration_started(e: Any) -> None:
        late_epoch_end.settle()
        inputs, targets = split_arguments((e.state.batch,), {})
        pending["batch"] = tracker.batch_start(inputs, targets, step=e.state.iteration - 1)

    def iteration_completed(e: Any) -> None:
        if pending["batch"] is not None:
            loss, outputs, targets = _split_output(e.state.output, validation=False)
            tracker.batch_end(pending["batch"], loss=loss, outputs=outputs, targets=targets)
            pending["batch"] = None

    def epoch_completed(_: Any) -> None:
        late_epoch_end.mark()

    def completed(_: Any) -> None:
        late_epoch_end.settle()
        tracker.close()

    def exception_raised(_: Any, error: BaseException) -> None:
        tracker.fail(error)
        tracker.close()
        raise error

    engine.add_event_handler(events.STARTED, started)
    engine.add_event_handler(events.EPOCH_STARTED, epoch_started)
    engine.add_event_handler(events.ITERATION_STARTED, iteration_started)
    engine.add_event_handler(events.ITERATION_COMPLETED, iteration_completed)
    engine.add_event_handler(events.EPOCH_COMPLETED, epoch_completed)
    engine.add_event_handler(events.COMPLETED, completed)
    engine.add_event_handler(events.EXCEPTION_RAISED, exception_raised)

    if evaluator is None:
        return

    def validation_started(_: Any) -> None:
        tracker.validation_start()

    def validation_iteration_started(e: Any) -> None:
        inputs, targets = split_arguments((e.state.batch,), {})
        pending["validation_batch"] = tracker.batch_start(inputs, targets, validation=True)

    def validation_iteration_completed(e: Any) -> None:
        if pending["validation_batch"] is not None:
            loss, outputs, targets = _split_output(e.state.output, validation=True)
            tracker.batch_end(pending["validation_batch"], loss=loss, outputs=outputs, targets=targets)
            pending["validation_batch"] = None

    def validation_completed(_: Any) -> None:
        tracker.validation_end()

    evaluator.add_event_handler(events.STARTED, validation_started)
    evaluator.add_event_handler(events.ITERATION_STARTED, validation_iteration_started)
    evaluator.add_event_handler(events.ITERATION_COMPLETED, validation_iteration_completed)
    evaluator.add_event_handler(events.COMPLETED, validation_completed)
