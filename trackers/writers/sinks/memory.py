"""The in-memory sink: keeps every plain record, for tests and notebooks."""

from __future__ import annotations

import threading
from typing import Any, cast

from trackers.writers import records as rec
from trackers.writers.front import SinkWriter
from trackers.writers.sink import Sink


class MemorySink(Sink):
    """Keeps every record it is given (values plain: floats, CPU tensors, drawn figures).

    >>> memory = MemorySink()
    >>> writer = Writer(memory)                   # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._records: list[Any] = []
        self._lock = threading.Lock()

    @property
    def records(self) -> list[Any]:
        """Everything written so far (flush the writer first to include what is still queued)."""
        with self._lock:
            return list(self._records)

    def series(self, tag: str) -> list[tuple[int | None, float]]:
        """``(step, value)`` pairs of one scalar tag, in the order they were logged."""
        return [(r.step, r.value) for r in self.records if r.kind == "scalar" and r.tag == tag]

    def tags(self, kind: str | None = None) -> set[str]:
        """The tags written, optionally of one kind (``"scalar"``, ``"histogram_raw"``, ...)."""
        return {r.tag for r in self.records if kind is None or r.kind == kind}

    def read_scalars(self) -> dict[str, list[list[Any]]]:
        out: dict[str, list[list[Any]]] = {}
        for r in self.records:
            if isinstance(r, rec.Scalar):
                out.setdefault(r.tag, []).append([r.walltime, r.step, r.value])
            elif isinstance(r, rec.Scalars):
                for key, value in r.values.items():
                    out.setdefault(f"{r.tag}/{key}", []).append([r.walltime, r.step, value])
        return out

    def _keep(self, record: Any) -> None:
        with self._lock:
            self._records.append(record)

    # every kind is kept as it comes
    write_scalar = write_scalars = write_custom_scalars = write_histogram_raw = write_image = _keep
    write_audio = write_video = write_mesh = write_figure = write_tensor = write_text = _keep
    write_pr_curve = write_graph = write_embedding = write_hparams = _keep


class MemoryWriter(SinkWriter):
    """``Writer(MemorySink())`` in one call, with the sink's readers on the writer itself.

    >>> writer = MemoryWriter()
    >>> writer.scalar("train/loss", 0.5, step=49)
    >>> writer.scalars("loss", {"train": 0.5, "val": 0.75}, step=49)
    >>> writer.flush()
    >>> writer.series("train/loss")
    [(49, 0.5)]
    >>> writer.close()
    """

    sink_type = MemorySink

    @property
    def sink(self) -> MemorySink:
        return cast(MemorySink, self.sinks[0])

    @property
    def records(self) -> list[Any]:
        """Everything written so far (call ``flush()`` first to include what is still queued)."""
        return self.sink.records

    def series(self, tag: str) -> list[tuple[int | None, float]]:
        """``(step, value)`` pairs of one scalar tag, in the order they were logged."""
        return self.sink.series(tag)

    def tags(self, kind: str | None = None) -> set[str]:
        """The tags written, optionally of one kind."""
        return self.sink.tags(kind)
