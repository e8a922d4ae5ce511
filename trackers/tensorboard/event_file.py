"""TensorBoard event files written directly on the writer thread, checksummed in C, only ever whole records.

TensorBoard's own ``EventFileWriter`` hands every event to one more thread
and, unless TensorFlow is installed, computes each record's CRC32C in pure
Python (``tensorboard.compat.tensorflow_stub``): about 12 ms per 100 KB
figure (30 µs in C), all of it holding the GIL the training thread needs.
Here the records are framed on the looptrack writer thread and checksummed
with ``google-crc32c`` (C); the file format is TensorFlow's record format,
so every TensorBoard reader reads it.

The file under it, a :class:`~trackers.record_file.RecordFile`, never
holds a partial record: a write that fails (a full disk) is cut back to the
last whole record, since TensorBoard's reader stops at a torn one and would
hide everything written after the disk has room again. A file deleted under
the run is made again at the next write, which goes there.

>>> from tensorboard.compat.proto.event_pb2 import Event
>>> events = EventFile("runs/example")                           # doctest: +SKIP
>>> events.add_event(Event(step=1, wall_time=0.0))               # doctest: +SKIP
>>> events.close()                                               # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from typing import Any

try:
    from google_crc32c import value as _crc32c
except ImportError:  # the pure-Python fallback TensorBoard itself uses: correct, slower
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as _crc32c  # type: ignore[no-redef]

from trackers.record_file import RecordFile

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


class EventFile(RecordFile):
    """A new ``events.out.tfevents.*`` file in ``log_dir``, written as a :class:`~trackers.record_file.RecordFile`.

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
