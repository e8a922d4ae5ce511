"""The do-nothing writer: what non-zero ranks (and disabled runs) write to."""

from __future__ import annotations

from typing import Any

from trackers.writers.base import Writer


class NullWriter(Writer):
    """Accepts every call and keeps nothing; no thread, no files.

    >>> writer = NullWriter()
    >>> writer.scalar("train/loss", 0.5, step=1)
    >>> writer.close()
    """

    name = "null"

    def __init__(self, *, strict: bool = False, **ignored: Any) -> None:
        self.strict = strict
        self._closed = False
        self._errors = 0
        self._first_error = None
        self._last_scalars: dict[str, Any] = {}

    def _accept(self, kind: str, tag: Any, step: Any) -> bool:
        return False

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self._closed = True

    def describe(self) -> str:
        return "NullWriter (not rank zero)"
