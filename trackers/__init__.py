"""looptrack's public surface: the Tracker, the writer front and its sinks, the registry.

from trackers import Tracker
from callbacks import LossLogger

with Tracker(net, callbacks=[LossLogger(every_n_steps=1000)],
             writer="runs/fashion_mnist_experiment_1") as tracker:
    ...
"""

from trackers.core.state import BatchRecord, RunState
from trackers.core.tracker import Tracker, default_callbacks
from trackers.errors import CallbackError, LoggingError, LooptrackWarning, NonFiniteError
from trackers.registry import register_callback, register_sink
from trackers.writers import (
    CsvSink,
    CsvWriter,
    JsonlSink,
    JsonlWriter,
    LogDirError,
    MemorySink,
    MemoryWriter,
    Sink,
    TensorBoardSink,
    TensorBoardWriter,
    Writer,
)

__all__ = [
    "BatchRecord",
    "CallbackError",
    "CsvSink",
    "CsvWriter",
    "JsonlSink",
    "JsonlWriter",
    "LogDirError",
    "LoggingError",
    "LooptrackWarning",
    "MemorySink",
    "MemoryWriter",
    "NonFiniteError",
    "RunState",
    "Sink",
    "TensorBoardSink",
    "TensorBoardWriter",
    "Tracker",
    "Writer",
    "default_callbacks",
    "register_callback",
    "register_sink",
]
__version__ = "0.1.0"
