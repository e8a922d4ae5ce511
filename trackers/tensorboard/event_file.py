"""TensorBoard event files written directly on the writer thread, checksummed in C, only ever whole records.

TensorBoard's own ``EventFileWriter`` hands every event to one more thread
and, unless TensorFlow is installed, computes each record's CRC32C in pure
Python (``tensorboard.compat.tensorflow_stub``): about 12 ms per 100 KB
figure (30 µs in C), all of it holding the GIL the training thread needs.
Here the records are framed on the looptrack writer thread and checksummed
with ``google-crc32c`` (C); the file format is TensorFlow's record format,
so every TensorBoard reader reads it.

The file under it, :class:`RecordFile`, never holds a partial record: a
write that fails (a full disk) is cut back to the last whole record, since
TensorBoard's reader stops at a torn one and would hide everything written
after the disk has room again. A file deleted under the run is made again at
the next write, which goes there. The JSONL and CSV sinks append their lines
through it too.

>>> from tensorboard.compat.proto.event_pb2 import Event
>>> events = EventFile("runs/example")                           # doctest: +SKIP
>>> events.add_event(Event(step=1, wall_time=0.0))               # doctest: +SKIP
>>> events.close()                                               # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import itertools
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

try:
    from google_crc32c import value as _crc32c
except ImportError:  # the pure-Python fallback TensorBoard itself uses: correct, slower
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as _crc32c  # type: ignore[no-redef]

_MASK_DELTA = 0xA282EAD8
_uids = itertools.count()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data`` (the same value as TensorBoard's ``masked_crc32c``)."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, its masked CRC."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


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


class EventFile(RecordFile):
    """A new ``events.out.tfevents.*`` file in ``log_dir``, written as a :class:`RecordFile`.

    Not thread-safe: one thread (the looptrack writer thread) adds, flushes
    and closes. ``flush`` hands the buffered records to the OS. If the file is
    deleted under the run, the next write (or flush) goes on in a new event
    file in ``log_dir`` (made again if need be); ``path`` is the file written.
    """

    def __init__(self, log_dir: str, filename_suffix: str = "") -> None:
        self._log_dir = str(log_dir)
        self._filename_suffix = filename_suffix
        super().__init__(self._log_dir, self._new_name, self._version_record)

    def _new_name(self) -> str:
        return (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
            f"lt{next(_uids)}{self._filename_suffix}"
        )

    @staticmethod
    def _version_record() -> bytes:
        from tensorboard.compat.proto.event_pb2 import Event

        return frame(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())

    def get_logdir(self) -> str:
        return self._log_dir

    def add_event(self, event: Any) -> None:
        self.add(frame(event.SerializeToString()))

    def add_summary(self, summary: Any, step: int | None = None, walltime: float | None = None) -> None:
        """A ``Summary`` as one event, exactly as torch's ``FileWriter.add_summary`` frames it."""
        from tensorboard.compat.proto.event_pb2 import Event

        event = Event(summary=summary, wall_time=time.time() if walltime is None else walltime)
        if step is not None:
            event.step = int(step)
        self.add_event(event)

    def add_purge_marker(self, step: int) -> None:
        """As ``SummaryWriter(purge_step=...)`` writes: readers drop what a crashed run left at and after ``step``."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        self.add_event(Event(step=step, file_version="brain.Event:2", wall_time=time.time()))
        self.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START), wall_time=time.time()))
