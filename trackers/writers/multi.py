"""Several writers at once: every record goes to each; one failing backend does not stop the others."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from trackers.report import OnceReporter
from trackers.writers.base import Writer


class MultiWriter(Writer):
    """Fans every call out to ``writers``, each with its own thread, queue and error handling.

    >>> writer = MultiWriter([TensorBoardWriter("runs/x"), JsonlWriter("runs/x/log.jsonl")])   # doctest: +SKIP
    >>> tracker = Tracker(net, writer=["runs/x", JsonlWriter("runs/x/log.jsonl")])           # the same, shorter  # doctest: +SKIP
    """

    name = "multi"

    def __init__(self, writers: Sequence[Writer], *, strict: bool = False) -> None:
        writers = list(writers)
        if not writers or not all(isinstance(w, Writer) for w in writers):
            raise TypeError(f"MultiWriter takes a non-empty list of Writers, got {writers!r}")
        self.writers = writers
        self.strict = strict
        self._reporter = OnceReporter()
        self._closed = False
        self._last_scalars: dict[str, Any] = {}

    @property
    def log_dir(self) -> str | None:
        return next((w.log_dir for w in self.writers if getattr(w, "log_dir", None)), None)

    @property
    def errors(self) -> int:
        return sum(w.errors for w in self.writers)

    @property
    def dropped(self) -> int:
        return sum(w.dropped for w in self.writers)

    def describe(self) -> str:
        return f"MultiWriter({', '.join(w.describe() for w in self.writers)})"

    def _put(self, record: Any) -> None:
        for writer in self.writers:
            if not writer.closed:
                writer._put(copy.copy(record))  # each writer thread fills in its own copy

    def flush(self, timeout: float | None = None) -> None:
        for writer in self.writers:
            writer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        for writer in self.writers:
            writer.close(timeout)

    def read_scalars(self) -> dict[str, list[list[float]]]:
        for writer in self.writers:
            try:
                return writer.read_scalars()
            except NotImplementedError:
                continue
        raise NotImplementedError("none of the writers can read its scalars back")

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "strict" and "writers" in self.__dict__:
            for writer in self.writers:
                writer.strict = value
