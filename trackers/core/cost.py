"""What looptrack costs the training thread: the time spent in its own code, measured as the run goes.

The Tracker times its entry points with ``time.perf_counter_ns``: the
decorator's work before and after the step, ``batch_start``/``batch_end``/
``end_step``, the run, epoch and pass events, and the callback dispatch its
optimizer hook does. The user's step itself is not counted, nor what torch
does on looptrack's behalf outside its functions (a forward hook also makes
``nn.Module`` take its slower call path). Host syncs are not counted here:
looptrack's own code makes none on the training thread
(``benchmarks/bench_syncs.py`` checks it with ``trackers.tools.syncs.SyncCounter``).

>>> cost = RunCost()
>>> cost.add_batch(0, 3_000, 10_000, 11_000, False)  # 3 us before the step, 1 us after
>>> cost.steps += 1
>>> cost.figures().per_step_ns
4000.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any, Protocol, TypeVar

Method = TypeVar("Method", bound=Callable[..., Any])


@dataclass(frozen=True)
class CostFigures:
    """A reading of :class:`RunCost`, or the difference of two: nanoseconds in looptrack and what they covered.

    ``step_ns`` is the time spent on training batches over ``steps`` training
    steps, ``eval_ns`` on evaluation batches, ``other_ns`` on run, epoch and
    pass events; ``loop_ns`` is the wall time from the first training
    batch's start to the last one's end.
    """

    step_ns: int = 0
    eval_ns: int = 0
    other_ns: int = 0
    steps: int = 0
    loop_ns: int = 0

    @property
    def total_ns(self) -> int:
        return self.step_ns + self.eval_ns + self.other_ns

    @property
    def per_step_ns(self) -> float:
        """Looptrack's time per training step (0.0 before a step has ended)."""
        return self.step_ns / self.steps if self.steps else 0.0

    @property
    def loop_percent(self) -> float:
        """Looptrack's time on training batches as a percentage of the training loop's wall time."""
        return 100.0 * self.step_ns / self.loop_ns if self.loop_ns > 0 else 0.0

    def minus(self, before: CostFigures) -> CostFigures:
        """What was spent since ``before``, an earlier reading of the same run.

        >>> CostFigures(step_ns=9, steps=3).minus(CostFigures(step_ns=4, steps=1)).per_step_ns
        2.5
        """
        return CostFigures(
            self.step_ns - before.step_ns,
            self.eval_ns - before.eval_ns,
            self.other_ns - before.other_ns,
            self.steps - before.steps,
            self.loop_ns - before.loop_ns,
        )

    def scalars(self, waited_seconds: float = 0.0) -> dict[str, float]:
        """The ``looptrack/...`` scalars logged at the end of a run; ``waited_seconds`` is the writer's wait.

        >>> CostFigures(step_ns=8_000, steps=2, loop_ns=800_000).scalars()["looptrack/per_step_us"]
        4.0
        """
        return {
            "looptrack/train_thread_ms": self.total_ns / 1e6,
            "looptrack/per_step_us": self.per_step_ns / 1e3,
            "looptrack/eval_ms": self.eval_ns / 1e6,
            "looptrack/loop_percent": self.loop_percent,
            "looptrack/waited_s": waited_seconds,
        }

    def line(self, waited_seconds: float = 0.0) -> str:
        """The one line ``Tracker(..., report_cost=True)`` prints at the end of the run.

        >>> print(CostFigures(step_ns=8_000, other_ns=2_000_000, steps=2, loop_ns=800_000).line())
        looptrack: 2 steps, 4.0 us a step (1.00 % of the loop), 2.0 ms in all; training waited 0.00 s for the writer
        """
        return (
            f"looptrack: {self.steps} steps, {self.per_step_ns / 1e3:.1f} us a step ({self.loop_percent:.2f} % of "
            f"the loop), {self.total_ns / 1e6:.1f} ms in all; training waited {waited_seconds:.2f} s for the writer"
        )


class RunCost:
    """The running totals behind :class:`CostFigures`, kept on the training thread by the Tracker.

    ``steps`` counts the training steps that ended; ``depth`` is set while
    looptrack's time is being counted, so entry points calling each other
    are counted once.
    """

    __slots__ = ("step_ns", "eval_ns", "other_ns", "steps", "depth", "first_step_at", "last_step_at")

    def __init__(self) -> None:
        self.step_ns = 0
        self.eval_ns = 0
        self.other_ns = 0
        self.steps = 0
        self.depth = 0
        self.first_step_at = 0
        self.last_step_at = 0

    def add_batch(self, start: int, paused: int, resumed: int, end: int, evaluating: bool) -> None:
        """Count a batch's work from ``start`` to ``end`` (``perf_counter_ns``) less the user's step in between."""
        spent = paused - start + end - resumed
        if evaluating:
            self.eval_ns += spent
            return
        self.step_ns += spent
        if not self.first_step_at:
            self.first_step_at = start
        self.last_step_at = end

    def figures(self) -> CostFigures:
        """The totals so far."""
        loop_ns = self.last_step_at - self.first_step_at if self.first_step_at else 0
        return CostFigures(self.step_ns, self.eval_ns, self.other_ns, self.steps, loop_ns)


class _RunState(Protocol):
    validating: bool


class _Timed(Protocol):
    cost: RunCost
    state: _RunState


def _timed(record: Callable[[_Timed, int, int], None]) -> Callable[[Method], Method]:
    """A decorator counting a Tracker method's time with ``record(self, start_ns, end_ns)``, once when nested."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def timed(self: _Timed, *args: Any, **kwargs: Any) -> Any:
            cost = self.cost
            if cost.depth:
                return method(self, *args, **kwargs)
            cost.depth = 1
            start = perf_counter_ns()
            try:
                return method(self, *args, **kwargs)
            finally:
                cost.depth = 0
                record(self, start, perf_counter_ns())

        return timed  # type: ignore[return-value]

    return decorate


def _add_event(tracker: _Timed, start: int, end: int) -> None:
    tracker.cost.other_ns += end - start


def _add_batch(tracker: _Timed, start: int, end: int) -> None:
    tracker.cost.add_batch(start, start, start, end, tracker.state.validating)


timed_event = _timed(_add_event)
"""Count the time of a run, epoch or pass event (a Tracker method) in ``self.cost``."""
timed_batch = _timed(_add_batch)
"""Count the time of a batch event (a Tracker method) in ``self.cost``: a training or an evaluation batch's."""
