"""Resuming a run at step T: the events at and after T are removed from the files, not just hidden.

``SummaryWriter(purge_step=T)`` only writes a marker that some readers use to
hide later events, by heuristics that differ between readers. Here the old
event files are rewritten without them (each file atomically), so every
reader shows curves that don't double back.
"""

from __future__ import annotations

import os
from pathlib import Path

from tensorboard.compat.proto import event_pb2

from trackers.tensorboard.event_file import frame
from trackers.tensorboard.event_reader import FileReport, event_files, read_records


def trim_events(log_dir: str | os.PathLike[str], step: int) -> int:
    """Remove every event with ``step >= step`` from the event files under ``log_dir``; returns how many."""
    removed = 0
    for path in event_files(log_dir):
        data = path.read_bytes()
        kept = bytearray()
        dropped_here = 0
        for payload in read_records(data, FileReport(Path(path))):
            event = event_pb2.Event.FromString(payload)
            if event.step >= step and not event.HasField("file_version"):
                dropped_here += 1
                continue
            kept += frame(payload)
        if dropped_here:
            temporary = path.with_name(path.name + ".trimming")
            temporary.write_bytes(bytes(kept))
            os.replace(temporary, path)
            removed += dropped_here
    return removed
