"""The writer thread's one conversion: a queued record becomes plain values (floats, binned histograms, PR-curve
rows, CPU tensors, drawn figures, built graphs) once, before any sink sees it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch

from trackers.tensorboard.histogram import TENSORFLOW_EDGES, merge_buckets, tensorboard_buckets
from trackers.tensorboard.pr_curve import curve_from_buckets
from trackers.writers import records as rec
from trackers.writers.transfer import materialize, to_float

Warn = Callable[[Hashable, str], None]


def render_figure(figure: Any) -> np.ndarray:
    """A figure as an HWC uint8 RGB array: a ``PIL.Image`` as it is, a matplotlib Figure through Agg (no pyplot)."""
    if hasattr(figure, "convert") and hasattr(figure, "getbands"):  # a PIL image
        return np.asarray(figure.convert("RGB"))
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def render_figures(figure: Any) -> np.ndarray:
    """One figure's pixels (HWC uint8), or a list's side by side in rows of eight as ``add_figure`` lays them."""
    if not isinstance(figure, (list, tuple)):
        return render_figure(figure)
    images = [render_figure(f) for f in figure]
    if not images:
        raise ValueError("the list of figures is empty")
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"figures of different sizes {sorted(s[:2] for s in shapes)} (height, width in pixels) can't be laid "
            "side by side; give them the same figsize and dpi"
        )
    height, width, _ = images[0].shape
    columns = min(len(images), 8)
    rows = -(-len(images) // columns)
    grid = np.zeros((height * rows, width * columns, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        row, column = divmod(i, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    return grid


def to_plain(record: rec.Record, warn: Warn) -> list[rec.Record]:
    """The plain form of ``record`` (a histogram with non-finite values also yields their count as a scalar)."""
    if isinstance(record, rec.Scalar):
        value = to_float(record.value)
        if not math.isfinite(value):
            source = f" (from {record.source})" if record.source else ""
            warn(
                ("nonfinite", record.tag),
                f"'{record.tag}'{source} is {value} at step {record.step}; logged as "
                "it is. Check the learning rate and the inputs of that step",
            )
        return [dataclasses.replace(record, value=value)]
    if isinstance(record, rec.Scalars):
        return [dataclasses.replace(record, values={k: to_float(v) for k, v in record.values.items()})]
    if isinstance(record, rec.Histogram):
        return _binned(record, warn)
    if isinstance(record, rec.PRCurve):
        data = np.asarray(materialize(record.data), dtype=np.float64)
        return [dataclasses.replace(record, data=curve_from_buckets(data) if data.shape[0] == 2 else data)]
    if isinstance(record, rec.Figure):
        if record.image is not None:  # drawn at the call already
            return [record]
        figure = record.figure() if callable(record.figure) else record.figure
        return [dataclasses.replace(record, figure=figure, image=render_figures(figure))]
    if isinstance(record, rec.Graph):
        graph_def = record.graph_def() if callable(record.graph_def) else record.graph_def
        return [dataclasses.replace(record, graph_def=graph_def)]
    if isinstance(record, rec.HParams):
        return [dataclasses.replace(record, metrics={k: to_float(v) for k, v in record.metrics.items()})]
    fields = {f.name: materialize(getattr(record, f.name)) for f in dataclasses.fields(record)}
    return [dataclasses.replace(record, **fields)]  # images, audio, video, meshes, embeddings: CPU tensors


def _binned(record: rec.Histogram, warn: Warn) -> list[rec.Record]:
    """Values (or counts on their way) as TensorBoard's raw histogram fields."""
    if record.counts is not None:
        counts, stats = (t.numpy() for t in materialize(record.counts))
        low, high, num, total, squares, nonfinite = stats.tolist()
        buckets = tensorboard_buckets(*merge_buckets(counts, TENSORFLOW_EDGES, record.max_bins))
    else:
        values = materialize(record.values)
        values = np.asarray(values.numpy() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
        values = values.reshape(-1)
        finite = values[np.isfinite(values)]
        nonfinite = values.size - finite.size
        low, high, num = (finite.min(), finite.max(), finite.size) if finite.size else (0.0, 0.0, 0)
        total, squares = float(finite.sum()), float(np.square(finite).sum())  # not dot: BLAS threads
        buckets = None
        if finite.size:
            counts, limits = np.histogram(finite, bins=record.bins)
            buckets = tensorboard_buckets(*merge_buckets(counts, limits, record.max_bins))
    out: list[rec.Record] = []
    if nonfinite and record.nonfinite_tag:
        out.append(rec.Scalar(record.nonfinite_tag, float(nonfinite), record.step, record.walltime))
    if buckets is None:
        warn(
            ("empty-histogram", record.tag),
            f"histogram '{record.tag}' at step {record.step} has no finite values; skipped",
        )
        return out
    bucket_limits, bucket_counts = buckets
    out.append(
        rec.HistogramRaw(
            record.tag,
            float(low),
            float(high),
            float(num),
            float(total),
            float(squares),
            bucket_limits,
            bucket_counts,
            record.step,
            record.walltime,
        )
    )
    return out
