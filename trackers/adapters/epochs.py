"""An epoch end held back until the run moves on, for frameworks that evaluate after their epoch-end event."""

from __future__ import annotations

from typing import Any


class LateEpochEnd:
    """``mark()`` at the framework's epoch end; ``settle()`` at the next epoch, step or the end of the run.

    ignite's ``EPOCH_COMPLETED`` handlers and the transformers Trainer run
    the evaluation after the epoch-end event; ending the Tracker's epoch only
    when the run moves on makes that evaluation the epoch's validation, as
    in a plain loop.

    >>> late = LateEpochEnd(tracker)   # doctest: +SKIP
    >>> late.mark(); late.settle()     # doctest: +SKIP
    """

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker
        self._pending = False

    def mark(self) -> None:
        self._pending = True

    def settle(self) -> None:
        if self._pending:
            self._pending = False
            self._tracker.epoch_end()
