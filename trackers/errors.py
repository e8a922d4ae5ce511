"""How looptrack tells the user that something went wrong without stopping training.

Every problem is reported through :func:`warn_once` as a :class:`LooptrackWarning`
(a ``UserWarning``), at most once per key, so a failure that repeats every step
prints one line, not ten thousand. In strict mode the same problems raise.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class LooptrackWarning(UserWarning):
    """A logging problem that looptrack reported and survived."""


class LoggingError(RuntimeError):
    """A logging problem raised because the tracker or writer is in strict mode."""


class CallbackError(LoggingError):
    """A callback raised inside a hook; names the callback and the event."""

    def __init__(self, callback_name: str, event: str, step: int | None, error: BaseException) -> None:
        self.callback_name = callback_name
        self.event = event
        self.step = step
        when = "" if step is None else f" at step {step}"
        super().__init__(f"{callback_name}.{event} failed{when}: {type(error).__name__}: {error}")


class NonFiniteError(LoggingError):
    """NaN or inf found in training by ``NonFiniteSentinel(action="raise")``: which module, step, direction, dtype.

    Raised into the training loop at the end of the step that found it, whatever ``strict`` says: stopping is
    what the user asked for. ``direction`` is ``"forward"`` or ``"backward"``; ``magnitude`` the largest
    ``|input|`` of that module call in the forward, when its inputs were seen and finite.
    """

    def __init__(
        self,
        message: str,
        *,
        module: str,
        step: int,
        direction: str,
        dtype: torch.dtype | None = None,
        magnitude: float | None = None,
    ) -> None:
        self.module = module
        self.step = step
        self.direction = direction
        self.dtype = dtype
        self.magnitude = magnitude
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only fields: pickled (across processes) by keyword
        rebuild = functools.partial(
            type(self),
            module=self.module,
            step=self.step,
            direction=self.direction,
            dtype=self.dtype,
            magnitude=self.magnitude,
        )
        return rebuild, self.args


class OnceReporter:
    """Remembers which problems were already reported; thread-safe."""

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()

    def first_time(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def warn(self, key: Hashable, message: str, *, stacklevel: int = 3) -> bool:
        """Warn with ``message`` unless ``key`` was already reported; returns whether it warned."""
        if not self.first_time(key):
            return False
        warnings.warn(f"looptrack: {message}", LooptrackWarning, stacklevel=stacklevel)
        return True
