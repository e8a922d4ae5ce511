"""Writers: where logged records go. See :mod:`trackers.writers.base` for the protocol."""

from trackers.writers.base import Writer
from trackers.writers.csv_writer import CsvWriter
from trackers.writers.jsonl import JsonlWriter
from trackers.writers.logdir import LogDirError
from trackers.writers.memory import MemoryWriter
from trackers.writers.multi import MultiWriter
from trackers.writers.null import NullWriter
from trackers.writers.registry import register_writer_backend, resolve_writer, writer_backends
from trackers.writers.tensorboard import TensorBoardWriter

__all__ = [
    "CsvWriter",
    "JsonlWriter",
    "MultiWriter",
    "LogDirError",
    "MemoryWriter",
    "NullWriter",
    "TensorBoardWriter",
    "Writer",
    "register_writer_backend",
    "resolve_writer",
    "writer_backends",
]
