"""Calls each event's hook on the callbacks that override it, on the steps their cadence says, surviving failures."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from trackers.core.callback import EVENTS, STEP_EVENTS, Callback
from trackers.core.module_hooks import ModuleHooks
from trackers.core.state import RunState
from trackers.errors import CallbackError, OnceReporter


def overrides(callback: Callback, event: str) -> bool:
    """Whether ``callback`` implements ``event`` itself rather than inheriting the no-op."""
    return getattr(type(callback), event, None) is not getattr(Callback, event)


def _every_step(callback: Callback, event: str) -> bool:
    return bool(getattr(getattr(type(callback), event), "__looptrack_every_step__", False))


BATCH_END_EVENTS = ("on_train_batch_end", "on_validation_batch_end", "on_test_batch_end")


def reads_outputs(callback: Callback) -> bool:
    """Whether ``callback`` may read a batch's ``outputs``/``raw_outputs``: unless it sets ``reads_outputs = False``.

    The Tracker keeps the model's outputs (with a forward hook, which slows
    every call of the model) only for batches whose callbacks may read them.

    >>> class Counts(Callback):
    ...     reads_outputs = False
    ...     def on_train_batch_end(self, state, batch): ...
    >>> reads_outputs(Counts()), reads_outputs(Callback())
    (False, True)
    """
    return bool(getattr(callback, "reads_outputs", True))


Receiver = tuple[Callback, Callable[..., Any], bool]
"""A callback that implements an event, its hook for it (bound once) and whether its ``every`` applies there."""


def _receiver(callback: Callback, event: str) -> Receiver:
    return callback, getattr(callback, event), event in STEP_EVENTS and not _every_step(callback, event)


def _any_fires(receivers: Sequence[Receiver], step_index: int) -> bool:
    for callback, _, cadenced in receivers:
        every = callback.every if cadenced else None
        if every is None or every.fires(step_index):
            return True
    return False


def _any_every_step(receivers: Sequence[Receiver]) -> bool:
    return any(not cadenced or callback.every is None for callback, _, cadenced in receivers)


class CallbackList:
    """The callbacks of a run, with the per-event list of those that implement it.

    A callback that raises is reported once per (callback, event) and the
    run goes on; with ``strict=True`` a :class:`CallbackError` naming the
    callback and the event is raised instead.
    """

    def __init__(self, callbacks: Iterable[Callback], *, strict: bool = False) -> None:
        self.callbacks: list[Callback] = []
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    f"callbacks must be callbacks.Callback instances; got {callback!r} "
                    f"({type(callback).__name__}). Subclass callbacks.Callback and override its on_* hooks"
                )
            self.callbacks.append(callback)
        self.strict = strict
        self.failures: dict[tuple[str, str], int] = {}
        self._reporter = OnceReporter()
        self._by_event: dict[str, Sequence[Receiver]] = {
            event: tuple(_receiver(cb, event) for cb in self.callbacks if overrides(cb, event)) for event in EVENTS
        }
        self._outputs_readers = {
            event: tuple(receiver for receiver in self._by_event[event] if reads_outputs(receiver[0]))
            for event in BATCH_END_EVENTS
        }

    def wants(self, event: str) -> bool:
        return bool(self._by_event[event])

    def fires(self, event: str, step_index: int) -> bool:
        """Whether some callback gets ``event`` at the step with 0-based index ``step_index``."""
        return _any_fires(self._by_event[event], step_index)

    def every_step(self, event: str) -> bool:
        """Whether some callback gets ``event`` at every step (it has no ``every``, or ignores it there)."""
        return _any_every_step(self._by_event[event])

    def wants_outputs(self, event: str, step_index: int) -> bool:
        """Whether a callback that may read the batch's outputs gets ``event`` (a batch-end event) at this step."""
        return _any_fires(self._outputs_readers[event], step_index)

    def may_read_outputs(self) -> bool:
        """Whether any callback that may read a batch's outputs gets a batch-end event."""
        return any(self._outputs_readers.values())

    def wants_outputs_every_step(self, event: str) -> bool:
        """Whether a callback that may read the batch's outputs gets ``event`` at every step."""
        return _any_every_step(self._outputs_readers[event])

    def module_hooks(self) -> list[tuple[str, ModuleHooks]]:
        """Every callback's module hooks, as ``(callback name, hooks)``; a callback that fails to say is reported."""
        requests = []
        for callback in self.callbacks:
            if type(callback).module_hooks is Callback.module_hooks:
                continue
            try:
                requests += [(callback.name, hooks) for hooks in callback.module_hooks()]
            except Exception as error:
                self._failed(callback, "module_hooks", None, error)
        return requests

    def call(self, event: str, state: RunState, *args: Any) -> None:
        """Call ``event`` on each callback implementing it; a step hook only where the callback's ``every`` fires.

        The hooks were looked up when the list was made (the callbacks of a run are fixed then).
        """
        for callback, hook, cadenced in self._by_event[event]:
            if cadenced:
                every = callback.every
                if every is not None and not every.fires(state.step_index):
                    continue
            try:
                hook(state, *args)
            except Exception as error:
                from trackers.errors import NonFiniteError  # only on this (rare) path

                if isinstance(error, NonFiniteError):
                    raise  # a stop the user asked for (NonFiniteSentinel(action="raise")), not a callback failure
                self._failed(callback, event, state.step, error)

    def _failed(self, callback: Callback, event: str, step: int | None, error: Exception) -> None:
        wrapped = CallbackError(callback.name, event, step, error)
        if self.strict:
            raise wrapped from error
        key = (callback.name, event)
        self.failures[key] = self.failures.get(key, 0) + 1
        self._reporter.warn(
            key,
            f"{wrapped}. The run goes on; later failures of this hook are counted (strict=True raises)",
            stacklevel=4,
        )
