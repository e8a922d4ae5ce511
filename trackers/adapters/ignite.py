"""An ignite Engine (and its evaluator) drive the Tracker through event handlers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from trackers.adapters import loop_class
from trackers.adapters.epochs import LateEpochEnd
from trackers.adapters.metrics import find_loss
from trackers.core.steps import split_arguments, split_result
from trackers.optional import require

LOSS_METRIC_NAMES = ("loss", "val_loss", "nll", "cross_entropy", "ce", "bce")


def split_output(output: Any, validation: bool) -> tuple[Any, Any, Any]:
    """``(loss, outputs, targets)`` from ``engine.state.output`` in the shapes ignite code returns.

    Training: ``create_supervised_trainer``'s default ``loss.item()`` (a
    number), a loss tensor, a dict with a ``loss`` key or one key naming a
    loss (ignite's CIFAR10 example returns ``{"batch loss": loss.item()}``)
    and optionally ``y_pred``/``y``, or ``(loss, y_pred, y)``. Evaluation:
    ``create_supervised_evaluator``'s ``(y_pred, y)`` (a third item, a dict
    of extras, is ignored) or a dict.
    """
    if isinstance(output, Mapping):
        loss, logits, targets, _ = split_result(output)
        return loss, logits, targets
    if validation and isinstance(output, (tuple, list)) and len(output) in (2, 3):
        return None, output[0], output[1]
    loss, logits, targets, _ = split_result(output)
    return loss, logits, targets


def loss_metric_name(evaluator: Any, given: str | None) -> str | None:
    """The name under which the evaluator's loss lands in ``state.metrics``.

    ``given`` if the user named it; else the name an ``ignite.metrics.Loss``
    was attached under; else None (the usual names are then tried at the end).
    """
    if given is not None:
        return given
    try:
        from ignite.metrics import Loss
    except ImportError:  # pragma: no cover - ignite is installed when its adapter runs
        return None
    for handlers in getattr(evaluator, "_event_handlers", {}).values():
        for handler, args, _ in handlers:
            if isinstance(getattr(handler, "__self__", None), Loss):
                names = [a for a in args if isinstance(a, str)]
                if names:
                    return names[-1]
    return None


DESCRIPTION = "an ignite Engine (ignite.engine.Engine; evaluator=... for validation)"


def recognizes(loop: Any) -> bool:
    """Whether ``loop`` is an ignite Engine."""
    return loop_class(loop, "ignite.engine", "Engine")


def attach(tracker: Any, loop: Any, **options: Any) -> None:
    """``tracker.attach(engine, evaluator=...)`` for an ignite Engine: see :func:`attach_ignite`."""
    attach_ignite(tracker, loop, **options)


def attach_ignite(
    tracker: Any,
    engine: Any,
    evaluator: Any = None,
    output_transform: Callable[[Any], Any] | None = None,
    val_loss_key: str | None = None,
) -> None:
    """Register handlers on ``engine`` (training) and optionally ``evaluator`` (validation batches).

    Points land on ``engine.state.iteration``, as ignite's own loggers put
    them. One step is one optimizer step: with
    ``create_supervised_trainer(..., gradient_accumulation_steps=k)`` the
    iterations without an optimizer step are micro-batches of the next
    step (seen through torch's optimizer step hooks). ``output_transform``
    maps ``state.output`` to the loss (or to a dict/tuple as above), as
    ignite's own handlers take it. The evaluator's loss is its ``Loss``
    metric (found by type, or named by ``val_loss_key``), else computed from
    ``(y_pred, y)`` with ``tracker.attach(..., loss_fn=criterion)``. The
    epoch ends after the handlers of ``EPOCH_COMPLETED`` ran, so an
    evaluator run there counts as that epoch's validation. The run stays
    open after ``COMPLETED`` (later evaluations belong to it) until
    ``tracker.close()`` or the end of the process; an exception ends it.
    """
    events = require("ignite.engine").Events
    tracker.state.loop = "ignite"
    tracker.step_on = "optimizer"
    pending = {"batch": None, "validation_batch": None}
    late_epoch_end = LateEpochEnd(tracker)

    def train_output(output: Any) -> tuple[Any, Any, Any]:
        if output_transform is not None:
            output = output_transform(output)
        return split_output(output, validation=False)

    def started(_: Any) -> None:
        tracker.start()

    def epoch_started(e: Any) -> None:
        late_epoch_end.settle()
        tracker.epoch_start(e.state.epoch - 1)

    def iteration_started(e: Any) -> None:
        late_epoch_end.settle()
        inputs, targets = split_arguments((e.state.batch,), {})
        pending["batch"] = tracker.batch_start(inputs, targets, step=e.state.iteration)

    def iteration_completed(e: Any) -> None:
        if pending["batch"] is not None:
            loss, outputs, targets = train_output(e.state.output)
            tracker.batch_end(pending["batch"], loss=loss, outputs=outputs, targets=targets, step=e.state.iteration)
            pending["batch"] = None

    def epoch_completed(_: Any) -> None:
        late_epoch_end.mark()

    def completed(_: Any) -> None:
        late_epoch_end.settle()
        tracker.flush()

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
            loss, outputs, targets = split_output(e.state.output, validation=True)
            tracker.batch_end(pending["validation_batch"], loss=loss, outputs=outputs, targets=targets)
            pending["validation_batch"] = None

    def validation_completed(e: Any) -> None:
        tracker.validation_end(
            loss=find_loss(e.state.metrics, loss_metric_name(evaluator, val_loss_key), LOSS_METRIC_NAMES)
        )

    evaluator.add_event_handler(events.STARTED, validation_started)
    evaluator.add_event_handler(events.ITERATION_STARTED, validation_iteration_started)
    evaluator.add_event_handler(events.ITERATION_COMPLETED, validation_iteration_completed)
    evaluator.add_event_handler(events.COMPLETED, validation_completed)
