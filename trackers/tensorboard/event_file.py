"""TensorBoard event files written directly on the writer thread, checksummed in C.

TensorBoard's own ``EventFileWriter`` hands every event to one more thread
and, unless TensorFlow is installed, computes each record's CRC32C in pure
Python (``tensorboard.compat.tensorflow_stub``): about 12 ms per 100 KB
figure (30 µs in C), all of it holding the GIL the training thread needs.
Here the records are framed on the looptrack writer thread and checksummed
with ``google-crc32c`` (C); the file format is TensorFlow's record format,
so every TensorBoard reader reads it.

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


class EventFile:
    """A new ``events.out.tfevents.*`` file in ``log_dir``.

    Not thread-safe: one thread (the looptrack writer thread) adds, flushes
    and closes. ``flush`` hands the buffered records to the OS.
    """

    def __init__(self, log_dir: str, filename_suffix: str = "") -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._log_dir = str(log_dir)
        os.makedirs(self._log_dir, exist_ok=True)
        while True:  # exclusive create: never append to another writer's file of the same second
            name = (
                f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                f"lt{next(_uids)}{filename_suffix}"
            )
            try:
                self._file = open(os.path.join(self._log_dir, name), "xb")
                break
            except FileExistsError:
                continue
        self.path = self._file.name
        self.add_event(Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def get_logdir(self) -> str:
        return self._log_dir

    def add_event(self, event: Any) -> None:
        self._file.write(frame(event.SerializeToString()))

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

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()
