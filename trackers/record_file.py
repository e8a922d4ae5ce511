"""A file that only ever holds whole records, even on a full disk or when it is deleted under the run.

:class:`RecordFile` appends records (bytes) to one file: a write that fails
(a full disk) is cut back to the last whole record and the rest wait in
memory until there is room, since a reader stops at a torn record and would
hide everything written after it. A file deleted under the run (or its
directory) is made again at the next write, which goes there; only what had
been written before the deletion is lost. :meth:`RecordFile.report` says
both in two warnings. The TensorBoard event files
(:class:`~trackers.tensorboard.event_file.EventFile`) and the JSONL and CSV
sinks write through it.

>>> import os, shutil, tempfile
>>> directory = tempfile.mkdtemp()
>>> lines = RecordFile(directory, "example.jsonl")
>>> lines.add(b'{"step": 1}\\n')
>>> lines.close()
>>> with open(os.path.join(directory, "example.jsonl"), "rb") as file:
...     file.read()
b'{"step": 1}\\n'
>>> shutil.rmtree(directory)
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Hashable
from typing import NamedTuple


class RecordsNotWritten(OSError):
    """Several records could not be written; ``records`` says how many (the writer counts each)."""

    def __init__(self, records: int, *args: object) -> None:
        super().__init__(*args)
        self.records = records


class Reopened(NamedTuple):
    """A :class:`RecordFile` found its file deleted under the run and made a new one."""

    old_path: str
    new_path: str
    lost: int
    """Records written to the old file before the deletion: they went with it. Every later one is in the new file."""
    made_dir: bool
    """The directory was gone too (the log dir was deleted) and was made again."""


class RecordFile:
    """Appends whole records (bytes) to a file in ``directory``; the file only ever holds whole records.

    ``name`` is the file's name (opened for appending, made if missing), or a
    function giving a fresh name for each file made (created exclusively, a
    new name while one exists). ``header()`` is written first into a file
    that is empty when opened.

    Records are gathered in memory and written with ``os.write`` once
    ``BUFFER_SIZE`` bytes wait, at :meth:`flush`, and at once for a record of
    a quarter of that or more, so a small record costs no system call.

    A full disk never leaves a partial record: when a write fails (ENOSPC,
    EFBIG) the file is cut back to its last whole record and the records not
    written wait in memory, in order, to be written as soon as there is room
    (tried again at each flush, and as more records come); ``waiting_error``
    says why while they do. At most ``MAX_WAITING`` bytes wait: a record added
    beyond that is not written and :meth:`add` raises ``OSError`` saying so;
    :meth:`close` raises for the records still waiting, which are not written.

    After each write (and at each flush) ``fstat`` checks that the file still
    has a name; one deleted under the run (``st_nlink == 0``) is made again,
    in a new directory if that is gone too, and the records just written go
    there as well: only what had been written before the deletion is lost.
    :meth:`take_reopened` says what was.

    Not thread-safe: one thread (the looptrack writer thread) adds, flushes and closes.
    """

    BUFFER_SIZE = 64 * 1024
    MAX_WAITING = 4 * 1024 * 1024

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str | Callable[[], str],
        header: Callable[[], bytes] | None = None,
    ) -> None:
        self.directory = os.fspath(directory)
        self.path = ""
        self.waiting_error: OSError | None = None
        """Why records wait in memory (the error of the last write, which found no room), else None."""
        self._name = name
        self._header = header
        self._fd = -1
        self._size = 0  # bytes of whole records in the file: what a failed write is cut back to
        self._cut_pending = False  # a cut back failed: it is tried again before anything else is written
        self._written = 0  # records of ours in the current file
        self._pending = bytearray()
        self._ends: list[int] = []  # where each pending record ends in _pending
        self._write_at = self.BUFFER_SIZE  # pending bytes that make add() write
        self._big = self.BUFFER_SIZE // 4  # a record this big is written at once
        self._reopened: list[Reopened] = []
        self._open()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    @property
    def waiting(self) -> int:
        """How many records wait in memory for room on the disk."""
        return len(self._ends) if self.waiting_error is not None else 0

    def add(self, record: bytes) -> None:
        """Append one record: written at the next flush, or now if it is big or enough bytes wait."""
        pending = self._pending
        pending += record
        self._ends.append(len(pending))
        if len(pending) >= self._write_at or len(record) >= self._big:  # a closed file's _write_at is 0
            self._write_pending()
            if self.waiting_error is not None and len(self._pending) > self.MAX_WAITING:
                raise self._refuse_last()

    def flush(self) -> None:
        """Hand the waiting records to the OS (those with no room go on waiting); a deleted file is made again."""
        if self._fd < 0:
            return
        if self._pending:
            self._write_pending()
        elif os.fstat(self._fd).st_nlink == 0:
            self._reopen(0, 0)

    def sync(self) -> None:
        """:meth:`flush`, then make what is written durable (``fsync``)."""
        self.flush()
        if self._fd >= 0:
            os.fsync(self._fd)

    def close(self) -> None:
        """Flush and close; records still waiting for room are not written, and ``OSError`` says how many."""
        if self._fd < 0:
            return
        try:
            self.flush()
            if self.waiting_error is not None:
                error = self.waiting_error
                raise RecordsNotWritten(
                    len(self._ends),
                    error.errno,
                    f"{error.strerror}; {len(self._ends)} record(s) waited in memory for room in {self.path} "
                    f"until it was closed and are not written {self._state()}",
                ) from error
        finally:
            self._pending, self._ends, self.waiting_error, self._write_at = bytearray(), [], None, 0
            os.close(self._fd)
            self._fd = -1

    def take_reopened(self) -> list[Reopened]:
        """The files made again since the last call, because the one written was deleted."""
        reopened, self._reopened = self._reopened, []
        return reopened

    def report(
        self,
        warn: Callable[[Hashable, str], None],
        unit: str,
        *,
        file: str = "file",
        directory: str = "directory",
    ) -> int:
        """Say with ``warn(key, message)`` what the file met; how many files were made again since the last call.

        Deleted under the run (the file, or its directory): the next write or flush went on in a new file, and
        what was not written yet went there too, so only what had been written before the deletion is lost. A full
        disk: the file keeps only whole records, the rest wait in memory. ``unit`` is what a record is called in
        the messages (``"line"``), ``file`` and ``directory`` what the file and its directory are (``"event file"``,
        ``"log dir"``).
        """
        reopened_files = self.take_reopened()
        for reopened in reopened_files:
            old_path, new_path = reopened.old_path, reopened.new_path
            if reopened.made_dir:
                what = f"the {directory} {os.path.dirname(old_path)!r} was deleted during the run; it is created again"
            else:
                what = f"the {file} {old_path!r} was deleted during the run"
            with_header = " (with its header)" if self._header is not None else ""
            warn(
                ("deleted", old_path),
                f"{what} and logging goes on in a new {file}, {new_path!r}{with_header}: the {reopened.lost} "
                f"{unit}(s) already flushed to {old_path!r} when it was deleted went with it, every later one is in "
                "the new file",
            )
        if self.waiting_error is not None:
            warn(
                ("waiting", self.path),
                f"{self.waiting_error}: {self.waiting} {unit}(s) wait in memory for room in {self.path!r} and are "
                f"written as soon as there is (the file keeps only whole {unit}s); once {self.MAX_WAITING // 1024} KB "
                f"wait, newer {unit}s are not written and count as errors",
            )
        return len(reopened_files)

    def _write_pending(self) -> None:
        data, ends = self._pending, self._ends
        if self._fd < 0:
            self._pending, self._ends = bytearray(), []
            raise ValueError(f"{self.path} is closed")
        done = self._write(data, ends)
        if os.fstat(self._fd).st_nlink == 0:  # deleted, before this write or since: these records go to a new file
            self._pending, self._ends = bytearray(), []  # lost if that cannot be made, as its error says
            self._reopen(len(ends), done)
            done = self._write(data, ends)
        if done == len(ends):
            self._pending, self._ends, self._write_at = bytearray(), [], self.BUFFER_SIZE
        else:  # no room for the rest: they wait, and are tried again as more come (and at each flush)
            start = ends[done - 1] if done else 0
            self._pending = data[start:] if start else data
            self._ends = [end - start for end in ends[done:]]
            self._write_at = min(len(self._pending) + self.BUFFER_SIZE, self.MAX_WAITING)

    def _write(self, data: bytearray, ends: list[int]) -> int:
        """Write the records of ``data`` (ending at ``ends``); how many were written whole.

        A failed write is cut back to the last whole record and noted in ``waiting_error``.
        """
        done = 0
        try:
            if self._cut_pending:
                os.ftruncate(self._fd, self._size)
                self._cut_pending = False
            with memoryview(data) as view:
                while done < len(data):
                    done += os.write(self._fd, view[done:])
        except OSError as error:
            self.waiting_error = error
            whole = bisect.bisect_right(ends, done)
            self._size += ends[whole - 1] if whole else 0
            self._written += whole
            try:
                os.ftruncate(self._fd, self._size)
                self._cut_pending = False
            except OSError:
                self._cut_pending = True
            return whole
        self.waiting_error = None
        self._size += done
        self._written += len(ends)
        return len(ends)

    def _refuse_last(self) -> OSError:
        """Take back the record just added, for which there is no room on the disk nor in memory."""
        error = self.waiting_error
        assert error is not None
        self._ends.pop()
        del self._pending[self._ends[-1] if self._ends else 0 :]
        self._write_at = min(len(self._pending) + self.BUFFER_SIZE, self.MAX_WAITING)
        refused = OSError(
            error.errno,
            f"{error.strerror}; the record is not written: there is no room in {self.path} {self._state()} and "
            + (
                f"{len(self._pending) // 1024} KB of {len(self._ends)} record(s) already wait in memory for it, "
                f"the most that may ({self.MAX_WAITING // 1024} KB)"
                if self._ends
                else f"the record alone is more than may wait in memory for it ({self.MAX_WAITING // 1024} KB)"
            ),
        )
        refused.__cause__ = error
        return refused

    def _state(self) -> str:
        if self._cut_pending:
            return "(it could not be cut back to its last whole record yet: tried again before the next write)"
        return "(it holds only whole records)"

    def _reopen(self, records: int, written_here: int) -> None:
        """The file was deleted: make a new one (and its directory) to write ``records`` and later ones to.

        ``written_here`` of those were written to the deleted file (they are written again).
        """
        old_path, lost = self.path, self._written - written_here
        try:
            made_dir = self._open()
        except OSError as error:
            raise OSError(
                error.errno,
                f"{old_path} was deleted during the run and cannot be made again ({error.strerror}); "
                f"{records} record(s) not written",
            ) from error
        self._reopened.append(Reopened(old_path, self.path, lost, made_dir))

    def _open(self) -> bool:
        """Open (or make) the file to write, write its header if it is empty; whether the directory was made."""
        made_dir = not os.path.isdir(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        if isinstance(self._name, str):
            path = os.path.join(self.directory, self._name)
            fd = os.open(path, flags, 0o666)
        else:
            while True:  # exclusive create: never append to another writer's file
                path = os.path.join(self.directory, self._name())
                try:
                    fd = os.open(path, flags | os.O_EXCL, 0o666)
                    break
                except FileExistsError:
                    continue
        try:
            size = os.fstat(fd).st_size
            if size == 0 and self._header is not None:
                header = self._header()
                with memoryview(header) as view:
                    while size < len(header):
                        size += os.write(fd, view[size:])
        except BaseException:
            try:
                os.ftruncate(fd, 0)  # a file of nothing is still a well-formed one
            except OSError:
                pass  # the error being raised says what went wrong
            os.close(fd)
            raise
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass  # the deleted file: nothing of it is read again
        self._fd, self.path, self._size, self._written, self._cut_pending = fd, path, size, 0, False
        return made_dir
