"""The base of sinks that append records to one file of a log dir: where the file goes, a file of whole records
only (:class:`~trackers.record_file.RecordFile`), and what it met (deleted, a full disk) said at flush and close."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ClassVar

from typing_extensions import override

from trackers.record_file import RecordFile
from trackers.writers.logdir import IfExists, file_in_log_dir
from trackers.writers.sink import Sink


class RecordFileSink(Sink):
    """Appends to ``path`` (default ``<log_dir>/<file_name>``); a subclass names the file and what a record is.

    >>> class LinesSink(RecordFileSink):
    ...     file_name, unit = "lines.txt", "line"
    ...     def write_text(self, record):
    ...         self._file.add(record.text.encode() + b"\\n")
    >>> sink = LinesSink(log_dir="runs/exp1")                                  # doctest: +SKIP
    """

    file_name: ClassVar[str]
    """The file's name in the log dir when no ``path`` is given."""
    unit: ClassVar[str]
    """What one record of the file is called in messages (``"line"``, ``"row"``)."""
    header: ClassVar[Callable[[], bytes] | None] = None
    """What a new (or made again) file starts with."""
    durable: ClassVar[bool] = False
    """Whether :meth:`flush` also ``fsync``s."""

    log_dir: str
    keeps_values = False

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        if_exists: IfExists = "new",
    ) -> None:
        owner = type(self).__name__
        self.path, self.log_dir = file_in_log_dir(path, log_dir, self.file_name, owner, if_exists)
        directory, name = os.path.split(self.path)
        header = type(self).header
        self._file = RecordFile(directory or ".", name, header)  # only whole records, even on a full disk

    @override
    def describe(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    @override
    def flush(self) -> None:
        try:
            self._file.sync() if self.durable else self._file.flush()
        finally:
            self._file.report(self.warn, self.unit)  # deleted under the run, a full disk

    @override
    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._file.report(self.warn, self.unit)
