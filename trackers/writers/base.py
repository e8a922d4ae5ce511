"""The writer protocol: what callbacks and users call, and what a backend implements.

Front side (training thread): ``scalar``, ``histogram``, ``image``, ``figure``,
``text``, ``pr_curve``, ``graph``, ``embedding``, ``hparams``, ``flush``,
``close``. Each builds a record from :mod:`trackers.writers.records`,
snapshots its tensors without waiting for the device, and hands it to the
writer thread.

Back side (writer thread): a backend overrides ``write_<kind>(record)`` for
the kinds it can show, plus ``flush_backend`` and ``close_backend``. A kind
it does not override is reported once and skipped::

    class PrintWriter(Writer):
        name = "print"
        def write_scalar(self, record):
            print(record.tag, record.step, record.value)

    writer = PrintWriter()
    writer.scalar("train/loss", torch.tensor(0.5), step=3)
    writer.close()   # prints: train/loss 3 0.5
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from trackers.histogram import bucket_counts, tensorboard_buckets
from trackers.pr_curve import MAX_THRESHOLDS, binary_bucket_counts, curve_from_buckets
from trackers.report import LoggingError, OnceReporter
from trackers.writers import records as rec
from trackers.writers.worker import RecordQueue


class Writer:
    """Base class of every backend; see the module docstring for the two sides.

    Options every backend takes: ``flush_secs`` (how often the writer thread
    flushes on its own), ``max_pending`` (how many records may wait for the
    writer thread), ``when_full`` (``"block"``: the training thread waits for
    room, nothing is lost; ``"drop_oldest"``: the oldest waiting record is
    dropped and counted, training never waits) and ``strict`` (raise instead
    of reporting a failed write).
    """

    name = "writer"

    def __init__(self, *, flush_secs: float = 2.0, max_pending: int = 10_000, when_full: str = "block",
                 strict: bool = False) -> None:
        self.strict = strict
        self._reporter = OnceReporter()
        self._errors = 0
        self._first_error: BaseException | None = None
        self._closed = False
        self._last_scalars: dict[str, Any] = {}
        self._queue = RecordQueue(
            self._write_record,
            self.flush_backend,
            self.close_backend,
            self._on_error,
            name=f"looptrack-{self.name}-writer",
            flush_secs=flush_secs,
            max_pending=max_pending,
            when_full=when_full,
        )
        from trackers.lifecycle import register_writer

        register_writer(self)

    # ------------------------------------------------------------------ front
    def scalar(
        self, tag: str, value: Any, step: int | None = None, *, walltime: float | None = None,
        source: str | None = None,
    ) -> None:
        """Log one number (a Python number or a one-element tensor, on any device)."""
        if self._accept("scalar", tag, step):
            value = rec.snapshot(value)
            self._last_scalars[tag] = value
            self._put(rec.Scalar(tag, value, step, walltime or time.time(), source))

    def last_scalar(self, tag: str) -> Any:
        """The last value logged under ``tag`` (a snapshot; no read-back), or None."""
        return self._last_scalars.get(tag)

    def scalars(self, main_tag: str, values: Mapping[str, Any], step: int | None = None, *,
                walltime: float | None = None) -> None:
        """Several scalars on one chart (``add_scalars``), e.g. ``{"train": loss, "val": val_loss}``."""
        if self._accept("scalars", main_tag, step):
            self._put(rec.Scalars(main_tag, {str(k): rec.snapshot(v) for k, v in values.items()}, step,
                                  walltime or time.time()))

    def custom_scalars(self, layout: Mapping[str, Any]) -> None:
        """A custom-scalars layout: ``{"Losses": {"train vs val": ["Multiline", ["train/loss", "val/loss"]]}}``."""
        if self._accept("custom_scalars", "custom_scalars", None):
            self._put(rec.CustomScalars(dict(layout), walltime=time.time()))

    def histogram(
        self, tag: str, values: Any, step: int | None = None, *, bins: Any = "tensorflow",
        walltime: float | None = None, nonfinite_tag: str | None = None,
    ) -> None:
        """Log the distribution of a tensor's values (TensorBoard's default buckets unless ``bins`` says otherwise).

        With the default buckets the counting runs in torch on the tensor's
        device: queued at once on an accelerator, on the writer thread for
        CPU tensors. Non-finite values are left out; if there are any and
        ``nonfinite_tag`` is given, their count is logged there as a scalar.
        """
        if not self._accept("histogram", tag, step):
            return
        if isinstance(bins, str) and bins == "tensorflow" and isinstance(values, torch.Tensor):
            if values.numel() == 0:
                self._reject(("empty", tag), f"histogram '{tag}' at step {step}: the tensor is empty; skipped")
                return
            counts = rec.Deferred.on_device(bucket_counts, values)
            self._put(rec.Histogram(tag, None, step, walltime or time.time(), bins, counts, nonfinite_tag))
        else:
            self._put(rec.Histogram(tag, rec.snapshot(values), step, walltime or time.time(), bins, None,
                                    nonfinite_tag))

    def histogram_raw(
        self, tag: str, *, min: float, max: float, num: float, sum: float, sum_squares: float,
        bucket_limits: Sequence[float], bucket_counts: Sequence[float], step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Log a histogram you binned yourself (``add_histogram_raw``: right bucket limits and counts)."""
        if len(bucket_limits) != len(bucket_counts):
            self._reject(("raw-lengths", tag), f"histogram_raw '{tag}': {len(bucket_limits)} bucket limits "
                         f"but {len(bucket_counts)} counts; they must be equal")
            return
        if self._accept("histogram_raw", tag, step):
            self._put(rec.HistogramRaw(tag, min, max, num, sum, sum_squares, list(bucket_limits),
                                       list(bucket_counts), step, walltime or time.time()))

    def image(
        self, tag: str, image: Any, step: int | None = None, *, dataformats: str = "CHW",
        walltime: float | None = None,
    ) -> None:
        """Log an image tensor (CHW by default, values in [0, 1] or uint8)."""
        if self._accept("image", tag, step):
            self._put(rec.Image(tag, rec.snapshot(image), step, walltime or time.time(), dataformats))

    def images(
        self, tag: str, images: Any, step: int | None = None, *, dataformats: str = "NCHW",
        walltime: float | None = None,
    ) -> None:
        """Log a batch of images (``add_images``)."""
        if self._accept("images", tag, step):
            self._put(rec.Image(tag, rec.snapshot(images), step, walltime or time.time(), dataformats))

    def image_with_boxes(
        self, tag: str, image: Any, boxes: Any, step: int | None = None, *, labels: Sequence[str] | None = None,
        dataformats: str = "CHW", walltime: float | None = None,
    ) -> None:
        """Log an image with bounding boxes drawn on it (boxes ``[N, 4]`` as x1, y1, x2, y2)."""
        if self._accept("image", tag, step):
            self._put(rec.Image(tag, rec.snapshot(image), step, walltime or time.time(), dataformats,
                                rec.snapshot(boxes), list(labels) if labels is not None else None))

    def audio(self, tag: str, sound: Any, step: int | None = None, *, sample_rate: int = 44100,
              walltime: float | None = None) -> None:
        """Log a mono sound clip (values in [-1, 1])."""
        if self._accept("audio", tag, step):
            self._put(rec.Audio(tag, rec.snapshot(sound), step, walltime or time.time(), sample_rate))

    def video(self, tag: str, video: Any, step: int | None = None, *, fps: int = 4,
              walltime: float | None = None) -> None:
        """Log videos ``[N, T, C, H, W]`` (the TensorBoard backend needs ``moviepy``)."""
        if self._accept("video", tag, step):
            self._put(rec.Video(tag, rec.snapshot(video), step, walltime or time.time(), fps))

    def mesh(self, tag: str, vertices: Any, *, colors: Any = None, faces: Any = None,
             config: Mapping[str, Any] | None = None, step: int | None = None,
             walltime: float | None = None) -> None:
        """Log a 3D point cloud or mesh (``[B, N, 3]`` vertices)."""
        if self._accept("mesh", tag, step):
            self._put(rec.Mesh(tag, rec.snapshot(vertices), rec.snapshot(colors), rec.snapshot(faces), config,
                               step, walltime or time.time()))

    def figure(self, tag: str, figure: Any, step: int | None = None, *, walltime: float | None = None) -> None:
        """Log a matplotlib Figure or a ``PIL.Image``, or a zero-argument callable building one on the writer thread."""
        if self._accept("figure", tag, step):
            self._put(rec.Figure(tag, figure, step, walltime or time.time()))

    def text(self, tag: str, text: str, step: int | None = None, *, walltime: float | None = None) -> None:
        """Log a (markdown) text."""
        if self._accept("text", tag, step):
            self._put(rec.Text(tag, str(text), step, walltime or time.time()))

    def pr_curve(
        self, tag: str, labels: Any, predictions: Any, step: int | None = None, *,
        num_thresholds: int = 127, walltime: float | None = None,
    ) -> None:
        """Log a precision-recall curve from binary labels and probabilities (``add_pr_curve``)."""
        if not self._accept("pr_curve", tag, step):
            return
        num_thresholds = self._thresholds(tag, num_thresholds)
        labels = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
        predictions = predictions if isinstance(predictions, torch.Tensor) else torch.as_tensor(np.asarray(predictions))
        buckets = rec.Deferred.on_device(binary_bucket_counts, labels, predictions, num_thresholds)
        self._put(rec.PRCurve(tag, buckets, step, walltime or time.time(), num_thresholds))

    def pr_curve_raw(
        self, tag: str, true_positive_counts: Any, false_positive_counts: Any, true_negative_counts: Any,
        false_negative_counts: Any, precision: Any, recall: Any, step: int | None = None, *,
        num_thresholds: int = 127, walltime: float | None = None,
    ) -> None:
        """Log a precision-recall curve from counts you computed (``add_pr_curve_raw``)."""
        if not self._accept("pr_curve", tag, step):
            return
        parts = [true_positive_counts, false_positive_counts, true_negative_counts, false_negative_counts,
                 precision, recall]
        data = rec.Deferred(lambda *p: np.stack([np.asarray(x, dtype=np.float64).reshape(-1) for x in p]),
                            *(rec.snapshot(x) for x in parts))
        self._put(rec.PRCurve(tag, data, step, walltime or time.time(), self._thresholds(tag, num_thresholds)))

    def submit(self, record: Any) -> None:
        """Hand over a ready-made record from :mod:`trackers.writers.records` (its tensors already snapshots)."""
        if self._accept(record.kind, record.tag, record.step):
            self._put(record)

    def graph(self, graph_def: Any, *, walltime: float | None = None) -> None:
        """Log a model graph: a TensorBoard ``GraphDef`` or a callable that builds one."""
        if self._accept("graph", "graph", None):
            self._put(rec.Graph(graph_def, walltime or time.time()))

    def embedding(
        self, mat: Any, *, metadata: Sequence[Any] | None = None, label_img: Any = None,
        step: int | None = None, tag: str = "default", metadata_header: Sequence[str] | None = None,
    ) -> None:
        """Log points for TensorBoard's projector (one row of ``mat`` a point)."""
        if self._accept("embedding", tag, step):
            self._put(rec.Embedding(rec.snapshot(mat), metadata, rec.snapshot(label_img), step, tag,
                                    metadata_header, time.time()))

    def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, Any] | None = None, *,
                step: int | None = None, metrics_logged: bool = False) -> None:
        """Log the run's hyper-parameters and the metrics they led to.

        The metrics are also written as scalars, unless ``metrics_logged``
        says they are tags already logged during the run (TensorBoard's
        HParams tab then reads those series).
        """
        if self._accept("hparams", "hparams", step):
            metrics = {k: rec.snapshot(v) for k, v in (metrics or {}).items()}
            self._put(rec.HParams(dict(hparams), metrics, step, time.time(), write_scalars=not metrics_logged))

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything logged before this call is written and flushed."""
        self._raise_if_strict_error()
        if not self._closed and not self._queue.flush(timeout) and not self._queue.alive:
            self._thread_died()
        self._raise_if_strict_error()

    def _thread_died(self) -> None:
        message = (f"{self.describe()}: the writer thread has stopped; {self._queue.pending} waiting record(s) "
                   "and everything logged from now on are lost. This is a looptrack bug: please report it")
        if self.strict:
            raise LoggingError(message)
        self._reporter.warn("thread-died", message, stacklevel=4)

    def close(self, timeout: float | None = None) -> None:
        """Write everything, flush and release the backend. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._queue.close(timeout)
        from trackers.lifecycle import unregister_writer

        unregister_writer(self)
        if self._queue.dropped:
            self._reporter.warn("closing-dropped", f"{self.describe()}: {self._queue.dropped} record(s) were "
                                "dropped because the queue was full (when_full='drop_oldest')")
        if self._errors and not self.strict:
            self._reporter.warn(
                "closing-errors",
                f"{self.describe()}: {self._errors} record(s) could not be written during this run "
                "(the first error was reported when it happened)",
            )
        self._raise_if_strict_error()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def errors(self) -> int:
        """How many records failed to write so far."""
        return self._errors

    def describe(self) -> str:
        """How this writer names itself in messages."""
        return type(self).__name__

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------- back
    def flush_backend(self) -> None:
        """Make what was written durable (writer thread)."""

    def close_backend(self) -> None:
        """Release files and connections (writer thread)."""

    def export_scalars(self, path: str | os.PathLike[str]) -> None:
        """Write every scalar logged so far as JSON: ``{tag: [[walltime, step, value], ...]}``.

        The format of tensorboardX's ``export_scalars_to_json`` (keyed by
        ``<log_dir>/<tag>`` there, by tag here).
        """
        self.flush()
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.read_scalars(), file, indent=1)

    def read_scalars(self) -> dict[str, list[list[float]]]:
        """Every scalar written so far, ``{tag: [[walltime, step, value], ...]}``; backends that can read back override it."""
        raise NotImplementedError(f"{self.describe()} cannot read its scalars back")

    def write_unsupported(self, record: Any) -> None:
        self._reporter.warn(
            ("unsupported", record.kind),
            f"{self.describe()} cannot show {record.kind} records; '{record.tag}' and later ones are skipped",
        )

    # ---------------------------------------------------------------- private
    def _accept(self, kind: str, tag: Any, step: Any) -> bool:
        problem = None
        if self._closed:
            problem = (("closed", kind), f"{self.describe()} is closed; {kind} '{tag}' and later records are dropped")
        elif not isinstance(tag, str):
            problem = (("tag", kind), f"{kind} tag must be a string, got {tag!r} ({type(tag).__name__}); record dropped")
        elif step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
            problem = (("step", tag), f"{kind} '{tag}': step must be an integer or None, got {step!r}; record dropped")
        if problem is None:
            return True
        if self.strict:
            raise LoggingError(f"{problem[1]}")
        self._reporter.warn(problem[0], problem[1], stacklevel=4)
        return False

    def _reject(self, key: Any, message: str) -> None:
        if self.strict:
            raise LoggingError(message)
        self._reporter.warn(key, message, stacklevel=4)

    def _thresholds(self, tag: str, num_thresholds: int) -> int:
        if not 2 <= num_thresholds <= MAX_THRESHOLDS:
            self._reject(("thresholds", tag), f"pr_curve '{tag}': num_thresholds must be 2..{MAX_THRESHOLDS} "
                         f"(TensorBoard's limit), got {num_thresholds}; using {MAX_THRESHOLDS}")
            return MAX_THRESHOLDS
        return num_thresholds

    def _put(self, record: Any) -> None:
        if self.strict:
            self._raise_if_strict_error()
        if not self._queue.alive:
            self._thread_died()
            return
        if not self._queue.put(record):
            self._reporter.warn(
                "dropping", f"{self.describe()}: the writer can't keep up and its queue is full "
                f"(max_pending={self._queue._max_pending}); dropping the oldest waiting records "
                "(when_full='drop_oldest'). The count is reported at close; when_full='block' waits instead",
                stacklevel=4,
            )

    @property
    def dropped(self) -> int:
        """Records dropped because the queue was full (``when_full="drop_oldest"``)."""
        return self._queue.dropped

    def _write_record(self, record: Any) -> None:
        if isinstance(record, rec.Scalar):
            record.value = rec.to_float(record.value)
            if not math.isfinite(record.value):
                source = f" (from {record.source})" if record.source else ""
                self._reporter.warn(
                    ("nonfinite", record.tag),
                    f"'{record.tag}'{source} is {record.value} at step {record.step}; logged as it is. "
                    "Check the learning rate and the inputs of that step",
                )
        elif isinstance(record, rec.Histogram):
            record = self._bin(record)
            if record is None:
                return
        elif isinstance(record, rec.PRCurve):
            data = np.asarray(rec.materialize(record.data), dtype=np.float64)
            record.data = curve_from_buckets(data) if data.shape[0] == 2 else data
        method: Callable[[Any], None] = getattr(self, f"write_{record.kind}", self.write_unsupported)
        method(record)

    def _bin(self, record: rec.Histogram) -> rec.HistogramRaw | None:
        """Turn values (or counts on their way) into TensorBoard's raw histogram fields."""
        if record.counts is not None:
            counts, stats = (t.numpy() for t in rec.materialize(record.counts))
            low, high, num, total, squares, nonfinite = stats.tolist()
            buckets = tensorboard_buckets(counts)
        else:
            values = rec.materialize(record.values)
            values = np.asarray(values.numpy() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
            values = values.reshape(-1)
            finite = values[np.isfinite(values)]
            nonfinite = values.size - finite.size
            counts, limits = np.histogram(finite, bins=record.bins) if finite.size else (np.zeros(0), None)
            low, high, num = (finite.min(), finite.max(), finite.size) if finite.size else (0.0, 0.0, 0)
            total, squares = float(finite.sum()), float(np.square(finite).sum())  # not dot: BLAS threads
            buckets = tensorboard_buckets(counts, limits) if finite.size else None
        if nonfinite and record.nonfinite_tag:
            self._write_record(rec.Scalar(record.nonfinite_tag, float(nonfinite), record.step, record.walltime))
        if buckets is None:
            self._reporter.warn(("empty-histogram", record.tag),
                                f"histogram '{record.tag}' at step {record.step} has no finite values; skipped")
            return None
        limits, kept = buckets
        return rec.HistogramRaw(record.tag, float(low), float(high), float(num), float(total), float(squares),
                                limits, kept, record.step, record.walltime)

    def _on_error(self, error: BaseException, record: Any) -> None:
        self._errors += 1
        if self._first_error is None:
            self._first_error = error
        if self.strict:
            return  # raised on the training thread at its next call
        what = f"{record.kind} '{record.tag}' at step {record.step}" if record is not None and hasattr(record, "kind") else "flush/close"
        self._reporter.warn(
            ("error", type(error)),
            f"{self.describe()} could not write {what}: {type(error).__name__}: {error}. "
            "Training goes on; later errors of this kind are counted, not printed (strict=True raises)",
        )

    def _raise_if_strict_error(self) -> None:
        if self.strict and self._first_error is not None:
            error, self._first_error = self._first_error, None
            raise LoggingError(f"{self.describe()} failed to write: {error}") from error
