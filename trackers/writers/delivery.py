"""The writer thread's side of a writer: each record made plain once and handed to every sink; a failing sink is
counted and reported once, and the others go on."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from trackers.errors import OnceReporter
from trackers.writers import records as rec
from trackers.writers.plain import to_plain
from trackers.writers.sink import Sink
from trackers.writers.transfer import host_copies


class Delivery:
    """Writes records to ``sinks`` on the writer thread; ``errors`` counts failed writes, ``first_error`` keeps one.

    With ``strict`` set, failures are not printed: the front raises the first one on the training thread.
    """

    def __init__(self, sinks: Sequence[Sink], reporter: OnceReporter, name: str) -> None:
        self.sinks = tuple(sinks)
        self.strict = False
        self.errors = 0
        self.first_error: BaseException | None = None
        self._reporter = reporter
        self._name = name
        self._reuse_buffers = not any(sink.keeps_values for sink in self.sinks)

    def write(self, record: rec.Record) -> None:
        try:
            self._write(record)
        finally:
            if self._reuse_buffers:  # no sink holds on to the record's copies: they go back to the pool
                for copy in host_copies(vars(record).values()):
                    copy.release()

    def _write(self, record: rec.Record) -> None:
        for plain in to_plain(record, self._warn):
            for sink in self.sinks:
                write = getattr(sink, f"write_{plain.kind}", None)
                if write is None:
                    self._warn(
                        ("unsupported", id(sink), plain.kind),
                        f"{sink.describe()} cannot show {plain.kind} records; '{plain.tag}' and later ones are skipped",
                    )
                    continue
                try:
                    write(plain)
                except Exception as error:  # one sink failing does not stop the others
                    self.failed(error, plain, sink)

    def flush(self) -> None:
        self._each_sink("flush")

    def close(self) -> None:
        self._each_sink("close")

    def _each_sink(self, method: str) -> None:
        for sink in self.sinks:
            try:
                getattr(sink, method)()
            except Exception as error:  # one sink failing does not stop the others
                self.failed(error, None, sink)

    def failed(self, error: BaseException, record: Any, sink: Sink | None = None) -> None:
        """Count a failed write (or flush/close), keep the first, report it once per error type unless strict."""
        self.errors += getattr(error, "records", 1)  # one error may stand for several records not written
        if self.first_error is None:
            self.first_error = error
        if self.strict:
            return  # the front raises it on the training thread at its next call
        what = f"{record.kind} '{record.tag}' at step {record.step}" if hasattr(record, "kind") else "flush/close"
        who = sink.describe() if sink is not None else self._name
        self._warn(
            ("error", type(error), getattr(record, "kind", None)),
            f"{who} could not write {what}: {type(error).__name__}: {error}. "
            "Training goes on; later errors of this kind are counted, not printed (strict=True raises)",
        )

    def take_first_error(self) -> BaseException | None:
        error, self.first_error = self.first_error, None
        return error

    def _warn(self, key: Hashable, message: str) -> None:
        self._reporter.warn(key, message, stacklevel=3)
