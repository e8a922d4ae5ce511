"""Scalars as CSV rows (tag, step, walltime, value): the simplest thing a spreadsheet opens."""

from __future__ import annotations

import csv
import io
import os

from trackers.record_file import RecordFile
from trackers.writers import records as rec
from trackers.writers.file_sink import RecordFileSink
from trackers.writers.front import SinkWriter
from trackers.writers.logdir import IfExists


def _header() -> bytes:
    """The first row of a new (or made again) file."""
    text = io.StringIO()
    csv.writer(text).writerow(["tag", "step", "walltime", "value"])
    return text.getvalue().encode("utf-8")


class CsvSink(RecordFileSink):
    """Appends every scalar to ``path`` (default ``<log_dir>/scalars.csv``); other kinds are reported once and skipped.

    >>> tracker = Tracker(net, writer=["runs/exp1", CsvSink(log_dir="runs/exp1")])   # doctest: +SKIP

    If the file already has rows (an earlier run), this run goes to the same
    file name in the first of ``<dir>_2``, ``<dir>_3``, ... where it has none,
    with a :class:`~trackers.errors.LooptrackWarning`; ``self.path`` and
    ``self.log_dir`` are the ones used. ``if_exists="append"`` appends to it.
    """

    file_name, unit = "scalars.csv", "row"
    header = staticmethod(_header)

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        if_exists: IfExists = "new",
    ) -> None:
        super().__init__(path, log_dir=log_dir, if_exists=if_exists)
        self._csv = csv.writer(_Rows(self._file))

    def write_scalar(self, record: rec.Scalar) -> None:
        self._csv.writerow([record.tag, record.step, f"{record.walltime:.3f}", repr(record.value)])

    def write_scalars(self, record: rec.Scalars) -> None:
        for key, value in record.values.items():
            self._csv.writerow([f"{record.tag}/{key}", record.step, f"{record.walltime:.3f}", repr(value)])


class _Rows:
    """What ``csv.writer`` writes to: each row (one ``write`` a row) is one record of the file."""

    def __init__(self, file: RecordFile) -> None:
        self._file = file

    def write(self, row: str) -> None:
        self._file.add(row.encode("utf-8"))


class CsvWriter(SinkWriter):
    """``Writer(CsvSink(path, ...))`` in one call."""

    sink_type = CsvSink
