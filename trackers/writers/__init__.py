"""The writer: one front callbacks call (validate, snapshot, queue) and the sinks records go to."""

from trackers.writers.front import SinkWriter, Writer
from trackers.writers.logdir import LogDirError
from trackers.writers.resolve import resolve_sink, resolve_writer
from trackers.writers.sink import Sink
from trackers.writers.sinks.csv import CsvSink, CsvWriter
from trackers.writers.sinks.jsonl import JsonlSink, JsonlWriter
from trackers.writers.sinks.memory import MemorySink, MemoryWriter
from trackers.writers.sinks.tensorboard import TensorBoardSink, TensorBoardWriter

__all__ = [
    "CsvSink",
    "CsvWriter",
    "JsonlSink",
    "JsonlWriter",
    "LogDirError",
    "MemorySink",
    "MemoryWriter",
    "Sink",
    "SinkWriter",
    "TensorBoardSink",
    "TensorBoardWriter",
    "Writer",
    "resolve_sink",
    "resolve_writer",
]
