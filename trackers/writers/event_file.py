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
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as _crc32c

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
    """A new ``events.out.tfevents.*`` file in ``log_dir``; the interface torch's ``FileWriter`` expects.

    Not thread-safe: one thread (the looptrack writer thread) adds, flushes
    and closes. ``flush`` hands the buffered records to the OS.
    """

    def __init__(self, log_dir: str, filename_suffix: str = "") -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._log_dir = str(log_dir)
        os.makedirs(self._log_dir, exist_ok=True)
        while True:  # exclusive create: never append to another writer's file of the same second
            name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                    f"lt{next(_uids)}{filename_suffix}")
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

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


def summary_writer(log_dir: str, *, purge_step: int | None, filename_suffix: str) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` whose main event file is an :class:`EventFile`.

    SummaryWriter still builds every summary (so the records are exactly
    its own); only the file underneath changes. ``add_scalars``' sub-runs
    keep TensorBoard's writer.
    """
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog
    from torch.utils.tensorboard.writer import FileWriter, SummaryWriter

    class DirectFileWriter(FileWriter):
        def __init__(self, log_dir: str, max_queue: int = 10, flush_secs: int = 120,
                     filename_suffix: str = "") -> None:
            self.event_writer = EventFile(log_dir, filename_suffix)

    class DirectSummaryWriter(SummaryWriter):
        def _get_file_writer(self) -> Any:
            if self.all_writers is None or self.file_writer is None:
                self.file_writer = DirectFileWriter(self.log_dir, filename_suffix=self.filename_suffix)
                self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
                if self.purge_step is not None:  # as SummaryWriter: readers drop what a crashed run left after it
                    self.file_writer.add_event(Event(step=self.purge_step, file_version="brain.Event:2"))
                    self.file_writer.add_event(Event(step=self.purge_step,
                                                     session_log=SessionLog(status=SessionLog.START)))
                    self.purge_step = None
            return self.file_writer

    return DirectSummaryWriter(log_dir, purge_step=purge_step, filename_suffix=filename_suffix)
