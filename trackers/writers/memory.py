"""The in-memory backend: keeps every record, for tests and notebooks."""

from __future__ import annotations

import threading
from typing import Any

from trackers.writers import records as rec
from trackers.writers.base import Writer


class MemoryWriter(Writer):
    """Records everything it is given, with tensors moved to the CPU.

    >>> writer = MemoryWriter()
    >>> writer.scalar("train/loss", 0.5, step=49)
    >>> writer.flush()
    >>> writer.scalars("train/loss")
    [(49, 0.5)]
    >>> writer.close()
    """

    name = "memory"

    def __init__(self, *, flush_secs: float = 2.0, max_pending: int = 10_000, when_full: str = "block",
                 strict: bool = False) -> None:
        self._records: list[Any] = []
        self._lock = threading.Lock()
        super().__init__(flush_secs=flush_secs, max_pending=max_pending, when_full=when_full, strict=strict)

    @property
    def records(self) -> list[Any]:
        """Everything written so far (call ``flush()`` first to include what is still queued)."""
        with self._lock:
            return list(self._records)

    def scalars(self, tag: str) -> list[tuple[int | None, float]]:
        """``(step, value)`` pairs of one scalar tag, in the order they were logged."""
        return [(r.step, r.value) for r in self.records if r.kind == "scalar" and r.tag == tag]

    def tags(self, kind: str | None = None) -> set[str]:
        """The tags written, optionally of one kind (``"scalar"``, ``"histogram"``, ...)."""
        return {r.tag for r in self.records if kind is None or r.kind == kind}

    def read_scalars(self) -> dict[str, list[list[float]]]:
        out: dict[str, list[list[float]]] = {}
        for r in self.records:
            if r.kind == "scalar":
                out.setdefault(r.tag, []).append([r.walltime, r.step, r.value])
            elif r.kind == "scalars":
                for key, value in r.values.items():
                    out.setdefault(f"{r.tag}/{key}", []).append([r.walltime, r.step, value])
        return out

    def _keep(self, record: Any) -> None:
        with self._lock:
            self._records.append(record)

    def write_scalar(self, record: rec.Scalar) -> None:
        self._keep(record)

    def write_scalars(self, record: rec.Scalars) -> None:
        record.values = {k: rec.to_float(v) for k, v in record.values.items()}
        self._keep(record)

    def write_custom_scalars(self, record: rec.CustomScalars) -> None:
        self._keep(record)

    def write_histogram_raw(self, record: rec.HistogramRaw) -> None:
        self._keep(record)

    def write_image(self, record: rec.Image) -> None:
        record.image = rec.materialize(record.image)
        record.boxes = rec.materialize(record.boxes)
        self._keep(record)

    def write_audio(self, record: rec.Audio) -> None:
        record.sound = rec.materialize(record.sound)
        self._keep(record)

    def write_video(self, record: rec.Video) -> None:
        record.video = rec.materialize(record.video)
        self._keep(record)

    def write_mesh(self, record: rec.Mesh) -> None:
        record.vertices = rec.materialize(record.vertices)
        record.colors = rec.materialize(record.colors)
        record.faces = rec.materialize(record.faces)
        self._keep(record)

    def write_figure(self, record: rec.Figure) -> None:
        if callable(record.figure):
            record.figure = record.figure()
        self._keep(record)

    def write_text(self, record: rec.Text) -> None:
        self._keep(record)

    def write_pr_curve(self, record: rec.PRCurve) -> None:
        self._keep(record)

    def write_graph(self, record: rec.Graph) -> None:
        if callable(record.graph_def):
            record.graph_def = record.graph_def()
        self._keep(record)

    def write_embedding(self, record: rec.Embedding) -> None:
        record.mat = rec.materialize(record.mat)
        record.metadata = rec.materialize(record.metadata)
        record.label_img = rec.materialize(record.label_img)
        self._keep(record)

    def write_hparams(self, record: rec.HParams) -> None:
        record.metrics = {k: rec.to_float(v) for k, v in record.metrics.items()}
        self._keep(record)
