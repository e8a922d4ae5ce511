"""Scalars as CSV rows (tag, step, walltime, value): the simplest thing a spreadsheet opens."""

from __future__ import annotations

import csv
import io
import os

from typing_extensions import override

from trackers.record_file import RecordFile
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
    keeps_values = False

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        if_exists: IfExists = "new",
    ) -> None:
        self.path, self.log_dir = file_in_log_dir(path, log_dir, "scalars.csv", "CsvSink", if_exists)
        directory, name = os.path.split(self.path)
        self._file = RecordFile(directory or ".", name, _header)  # only whole rows, even on a full disk
        self._csv = csv.writer(_Rows(self._file))

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
        try:
            self._file.flush()
        finally:
            self._file.report(self.warn, "row")  # deleted under the run, a full disk

    @override
    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._file.report(self.warn, "row")  # deleted under the run, a full disk


class _Rows:
    """What ``csv.writer`` writes to: each row (one ``write`` a row) is one record of the file."""

    def __init__(self, file: RecordFile) -> None:
        self._file = file

    def write(self, row: str) -> None:
        self._file.add(row.encode("utf-8"))


def _header() -> bytes:
    """The first row of a new (or made again) file."""
    text = io.StringIO()
    csv.writer(text).writerow(["tag", "step", "walltime", "value"])
    return text.getvalue().encode("utf-8")


class CsvWriter(SinkWriter):
    """``Writer(CsvSink(path, ...))`` in one call."""

    sink_type = CsvSink
