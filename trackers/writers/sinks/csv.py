"""Scalars as CSV rows (tag, step, walltime, value): the simplest thing a spreadsheet opens."""

from __future__ import annotations

import csv
import os

from typing_extensions import override

from trackers.writers import records as rec
from trackers.writers.front import SinkWriter
from trackers.writers.logdir import IfExists, file_in_log_dir
from trackers.writers.sink import Sink


class CsvSink(Sink):
    """Appends every scalar to ``path`` (default ``<log_dir>/scalars.csv``); other kinds are reported once and skipped.

    >>> tracker = Tracker(net, writer=["runs/exp1", CsvSink(log_dir="runs/exp1")])   # doctest: +SKIP

    If the file already has rows (an earlier run), this run goes to the same
    file name in the first of ``<dir>_2``, ``<dir>_3``, ... where it has none,
    with a :class:`~trackers.errors.LooptrackWarning`; ``self.path`` and
    ``self.log_dir`` are the ones used. ``if_exists="append"`` appends to it.
    """

    log_dir: str

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        if_exists: IfExists = "new",
    ) -> None:
        self.path, self.log_dir = file_in_log_dir(path, log_dir, "scalars.csv", "CsvSink", if_exists)
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["tag", "step", "walltime", "value"])

    @override
    def describe(self) -> str:
        return f"CsvSink({self.path!r})"

    def write_scalar(self, record: rec.Scalar) -> None:
        self._csv.writerow([record.tag, record.step, f"{record.walltime:.3f}", repr(record.value)])

    def write_scalars(self, record: rec.Scalars) -> None:
        for key, value in record.values.items():
            self._csv.writerow([f"{record.tag}/{key}", record.step, f"{record.walltime:.3f}", repr(value)])

    @override
    def flush(self) -> None:
        self._file.flush()

    @override
    def close(self) -> None:
        self._file.close()


class CsvWriter(SinkWriter):
    """``Writer(CsvSink(path, ...))`` in one call."""

    sink_type = CsvSink
