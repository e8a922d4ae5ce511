"""Scalars as CSV rows (tag, step, walltime, value): the simplest thing a spreadsheet opens."""

from __future__ import annotations

import csv
import os

from trackers.writers import records as rec
from trackers.writers.base import Writer
from trackers.writers.logdir import IfExists, file_in_log_dir


class CsvWriter(Writer):
    """Appends every scalar to ``path`` (default ``<log_dir>/scalars.csv``); other kinds are reported once and skipped.

    >>> tracker = Tracker(net, writer=["runs/exp1", CsvWriter(log_dir="runs/exp1")])   # doctest: +SKIP

    If the file already has rows (an earlier run), this run goes to the same
    file name in the first of ``<dir>_2``, ``<dir>_3``, ... where it has none,
    with a :class:`~trackers.report.LooptrackWarning`; ``self.path`` and
    ``self.log_dir`` are the ones used. ``if_exists="append"`` appends to it.
    """

    name = "csv"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, log_dir: str | os.PathLike[str] | None = None,
                 if_exists: IfExists = "new", flush_secs: float = 2.0, max_pending: int = 10_000,
                 when_full: str = "block", strict: bool = False) -> None:
        path, self.log_dir = file_in_log_dir(path, log_dir, "scalars.csv", "CsvWriter", if_exists)
        self.path = path
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        self._file = open(path, "a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["tag", "step", "walltime", "value"])
        super().__init__(flush_secs=flush_secs, max_pending=max_pending, when_full=when_full, strict=strict)

    def describe(self) -> str:
        return f"CsvWriter({self.path!r})"

    def write_scalar(self, record: rec.Scalar) -> None:
        self._csv.writerow([record.tag, record.step, f"{record.walltime:.3f}", repr(record.value)])

    def write_scalars(self, record: rec.Scalars) -> None:
        for key, value in record.values.items():
            self._csv.writerow([f"{record.tag}/{key}", record.step, f"{record.walltime:.3f}",
                                repr(rec.to_float(value))])

    def flush_backend(self) -> None:
        self._file.flush()

    def close_backend(self) -> None:
        self._file.close()
