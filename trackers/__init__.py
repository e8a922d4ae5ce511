"""looptrack's core: the Tracker, its events, writers and loop adapters.

    from trackers import Tracker
    from callbacks import LossLogger

    with Tracker(net, callbacks=[LossLogger(every_n_steps=1000)],
                 writer="runs/fashion_mnist_experiment_1") as tracker:
        ...
"""

from trackers.report import CallbackError, LoggingError, LooptrackWarning
from trackers.state import BatchRecord, RunState
from trackers.tracker import Tracker, default_callbacks
from trackers.writers import (CsvWriter, JsonlWriter, LogDirError, MemoryWriter, MultiWriter, TensorBoardWriter,
                              Writer)

__all__ = [
    "BatchRecord",
    "CallbackError",
    "CsvWriter",
    "JsonlWriter",
    "MultiWriter",
    "LogDirError",
    "LoggingError",
    "LooptrackWarning",
    "MemoryWriter",
    "RunState",
    "TensorBoardWriter",
    "Tracker",
    "Writer",
    "default_callbacks",
]
__version__ = "0.1.0"
