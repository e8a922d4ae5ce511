"""The writer front: what callbacks and users call, on the training thread.

It validates each call, snapshots its tensors without waiting for the
device, and queues one record; on the writer thread the record is made plain
once (:mod:`trackers.writers.plain`) and handed to every sink. A front with
no sinks (a rank that does not write) accepts everything and keeps nothing.

>>> from trackers.writers.sinks.memory import MemorySink
>>> memory = MemorySink()
>>> writer = Writer([memory])
>>> writer.scalar("train/loss", torch.tensor(0.25), step=99)
>>> writer.close()
>>> memory.series("train/loss")
[(99, 0.25)]
"""

from __future__ import annotations

import json
import numbers
import os
import sys
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from trackers import lifecycle
from trackers.errors import LoggingError, OnceReporter
from trackers.tensorboard.histogram import bucket_counts
from trackers.tensorboard.pr_curve import MAX_THRESHOLDS, binary_bucket_counts
from trackers.writers import records as rec
from trackers.writers.delivery import Delivery
from trackers.writers.plain import render_figures
from trackers.writers.queue import DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_BYTES, RecordQueue, check_options
from trackers.writers.sink import Sink
from trackers.writers.transfer import Deferred, nbytes, release_unwritten, snapshot

_REPORTED_WAIT_SECONDS = 1.0  # waiting less for the writer in a whole run is not worth a word


def _now(walltime: float | None) -> float:
    return time.time() if walltime is None else walltime


def _close_in_pyplot(figure: Any) -> None:
    """Close ``figure`` in pyplot if pyplot manages it (the figure stays drawable); anything else is left alone."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    figure_type = getattr(sys.modules.get("matplotlib.figure"), "Figure", None)
    if pyplot is not None and figure_type is not None and isinstance(figure, figure_type):
        pyplot.close(figure)


def _trace(model: torch.nn.Module, args: tuple[Any, ...], use_jit: bool, verbose: bool, strict: bool) -> Any:
    """The model's GraphDef, from torch.fx (or torch.jit.trace, as ``add_graph``, when ``use_jit``)."""
    if use_jit:
        from torch.utils.tensorboard._pytorch_graph import graph as jit_graph

        return jit_graph(model, args, verbose, strict)[0]
    from trackers.tensorboard.graphdef import trace_graph

    return trace_graph(model, args)


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over ``array``'s memory where torch can share it (it is copied right after, by the snapshot)."""
    return torch.from_numpy(np.require(array, dtype=array.dtype.newbyteorder("="), requirements=["W"]))


def _held_bytes(record: rec.Record) -> int:
    return sum(nbytes(value) for value in vars(record).values())


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


class Writer:
    """The one front of a run's logging, writing through ``sinks``.

    ``Writer(TensorBoardSink("runs/x"))``, ``Writer([TensorBoardSink("runs/x"), JsonlSink(log_dir="runs/x")])``;
    ``Writer([])`` writes nothing. Options: ``flush_secs`` (how often the writer
    thread flushes on its own), ``max_pending`` (how many records may wait for
    the writer thread), ``max_pending_bytes`` (how much host memory the copies
    of waiting records may hold, 256 MiB by default), ``when_full``
    (``"block"``: the training thread waits for room, nothing is lost;
    ``"drop_oldest"``: the oldest waiting records are dropped and counted,
    training never waits) and ``strict`` (raise instead of reporting a failed
    write).
    """

    def __init__(
        self,
        sinks: Sink | Sequence[Sink] = (),
        *,
        flush_secs: float = 2.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        when_full: str = "block",
        strict: bool = False,
    ) -> None:
        sinks = [sinks] if isinstance(sinks, Sink) else list(sinks)
        for sink in sinks:
            if not isinstance(sink, Sink):
                raise TypeError(
                    f"Writer takes sinks (trackers.writers.Sink instances such as TensorBoardSink"
                    f"('runs/x')), got {sink!r} ({type(sink).__name__})"
                )
        check_options("Writer", flush_secs, max_pending, when_full, max_pending_bytes)
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self._reporter = OnceReporter()
        self._delivery = Delivery(self.sinks, self._reporter, self.describe())
        self.strict = strict
        self._closed = False
        self._last_scalars: dict[str, Any] = {}
        self._hparams_sessions = 0
        self._queue: RecordQueue | None = None
        if self.sinks:
            self._queue = RecordQueue(
                self._delivery.write,
                self._delivery.flush,
                self._delivery.close,
                self._delivery.failed,
                name="looptrack-writer",
                flush_secs=flush_secs,
                max_pending=max_pending,
                when_full=when_full,
                max_pending_bytes=max_pending_bytes,
                on_drop=lambda record: release_unwritten(vars(record).values()),
            )
            lifecycle.register_writer(self)

    # ----------------------------------------------------------- what callbacks call
    def scalar(
        self,
        tag: str,
        value: Any,
        step: int | None = None,
        *,
        walltime: float | None = None,
        source: str | None = None,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """Log one number (a Python number or a one-element tensor, on any device). ``new_style`` and
        ``double_precision`` are ``add_scalar``'s: the value goes into a tensor field (float64 with the latter)."""
        if not self.sinks and isinstance(tag, str):  # nothing is written: keep the value for last_scalar, copy nothing
            self._last_scalars[tag] = value
        if self._accept("scalar", tag, step, value):
            value = snapshot(value)
            self._last_scalars[tag] = value
            self._put(rec.Scalar(tag, value, step, _now(walltime), source, new_style, double_precision))

    def last_scalar(self, tag: str) -> Any:
        """The last value logged under ``tag`` (a snapshot; no read-back), or None."""
        return self._last_scalars.get(tag)

    def scalars(
        self, main_tag: str, values: Mapping[str, Any], step: int | None = None, *, walltime: float | None = None
    ) -> None:
        """Several scalars on one chart (``add_scalars``), e.g. ``{"train": loss, "val": val_loss}``."""
        if self._accept("scalars", main_tag, step):
            self._put(rec.Scalars(main_tag, {str(k): snapshot(v) for k, v in values.items()}, step, _now(walltime)))

    def custom_scalars(self, layout: Mapping[str, Any]) -> None:
        """A custom-scalars layout: ``{"Losses": {"train vs val": ["Multiline", ["train/loss", "val/loss"]]}}``."""
        if self._accept("custom_scalars", "custom_scalars", None):
            self._put(rec.CustomScalars(dict(layout), walltime=time.time()))

    def histogram(
        self,
        tag: str,
        values: Any,
        step: int | None = None,
        *,
        bins: Any = "tensorflow",
        walltime: float | None = None,
        max_bins: int | None = None,
        nonfinite_tag: str | None = None,
    ) -> None:
        """Log the distribution of values (a tensor, a NumPy array or a list) as ``add_histogram`` does:
        TensorBoard's default buckets, or any ``bins`` NumPy's ``histogram`` takes (``"auto"``, ``"fd"``, a count,
        edges); ``max_bins`` merges neighbouring buckets until at most that many are left.

        With the default buckets the counting runs in torch on the tensor's
        device: queued at once on an accelerator, on the writer thread for
        CPU tensors. Non-finite values are left out; if there are any and
        ``nonfinite_tag`` is given, their count is logged there as a scalar.

        >>> writer.histogram("weights", np.random.rand(100, 100), 0)           # doctest: +SKIP
        """
        if not self._accept("histogram", tag, step, values):
            return
        if not isinstance(values, torch.Tensor):
            values = self._numbers("histogram", tag, values)
            if values is None:
                return
        if values.numel() == 0 if isinstance(values, torch.Tensor) else values.size == 0:
            self._reject(("empty", tag), f"histogram '{tag}' at step {step}: the values are empty; skipped")
            return
        if max_bins is not None and (isinstance(max_bins, bool) or not isinstance(max_bins, int) or max_bins < 1):
            self._reject(("max_bins", tag), f"histogram '{tag}': max_bins must be a positive int, got {max_bins!r}")
            max_bins = None
        if isinstance(bins, str) and bins == "tensorflow":
            if not isinstance(values, torch.Tensor):
                values = _as_tensor(values)
            counts = Deferred.on_device(bucket_counts, values)
            self._put(rec.Histogram(tag, None, step, _now(walltime), bins, counts, nonfinite_tag, max_bins))
        else:
            self._put(rec.Histogram(tag, snapshot(values), step, _now(walltime), bins, None, nonfinite_tag, max_bins))

    def histogram_raw(
        self,
        tag: str,
        *,
        min: float,
        max: float,
        num: float,
        sum: float,
        sum_squares: float,
        bucket_limits: Sequence[float],
        bucket_counts: Sequence[float],
        step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Log a histogram you binned yourself (``add_histogram_raw``: right bucket limits and counts)."""
        if len(bucket_limits) != len(bucket_counts):
            self._reject(
                ("raw-lengths", tag),
                f"histogram_raw '{tag}': {len(bucket_limits)} bucket limits "
                f"but {len(bucket_counts)} counts; they must be equal",
            )
            return
        if self._accept("histogram_raw", tag, step):
            self._put(
                rec.HistogramRaw(
                    tag, min, max, num, sum, sum_squares, list(bucket_limits), list(bucket_counts), step, _now(walltime)
                )
            )

    def image(
        self,
        tag: str,
        image: Any,
        step: int | None = None,
        *,
        dataformats: str = "CHW",
        walltime: float | None = None,
    ) -> None:
        """Log an image tensor (CHW by default, values in [0, 1] or uint8)."""
        if self._accept("image", tag, step, image):
            self._put(rec.Image(tag, snapshot(image), step, _now(walltime), dataformats))

    def images(
        self,
        tag: str,
        images: Any,
        step: int | None = None,
        *,
        dataformats: str = "NCHW",
        walltime: float | None = None,
    ) -> None:
        """Log a batch of images (``add_images``)."""
        if self._accept("images", tag, step, images):
            self._put(rec.Image(tag, snapshot(images), step, _now(walltime), dataformats))

    def image_with_boxes(
        self,
        tag: str,
        image: Any,
        boxes: Any,
        step: int | None = None,
        *,
        labels: Sequence[str] | None = None,
        dataformats: str = "CHW",
        walltime: float | None = None,
    ) -> None:
        """Log an image with bounding boxes drawn on it (boxes ``[N, 4]`` as x1, y1, x2, y2)."""
        if self._accept("image", tag, step, image):
            self._put(
                rec.Image(
                    tag,
                    snapshot(image),
                    step,
                    _now(walltime),
                    dataformats,
                    snapshot(boxes),
                    list(labels) if labels is not None else None,
                )
            )

    def audio(
        self, tag: str, sound: Any, step: int | None = None, *, sample_rate: int = 44100, walltime: float | None = None
    ) -> None:
        """Log a mono sound clip (values in [-1, 1])."""
        if self._accept("audio", tag, step):
            self._put(rec.Audio(tag, snapshot(sound), step, _now(walltime), sample_rate))

    def video(
        self, tag: str, video: Any, step: int | None = None, *, fps: int = 4, walltime: float | None = None
    ) -> None:
        """Log videos ``[N, T, C, H, W]`` (the TensorBoard backend needs ``moviepy``)."""
        if self._accept("video", tag, step):
            self._put(rec.Video(tag, snapshot(video), step, _now(walltime), fps))

    def mesh(
        self,
        tag: str,
        vertices: Any,
        *,
        colors: Any = None,
        faces: Any = None,
        config: Mapping[str, Any] | None = None,
        step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Log a 3D point cloud or mesh (``[B, N, 3]`` vertices)."""
        if self._accept("mesh", tag, step):
            self._put(
                rec.Mesh(tag, snapshot(vertices), snapshot(colors), snapshot(faces), config, step, _now(walltime))
            )

    def figure(
        self, tag: str, figure: Any, step: int | None = None, *, close: bool = True, walltime: float | None = None
    ) -> None:
        """Log a matplotlib Figure, a list of them (one image, side by side), a ``PIL.Image``, or a zero-argument
        callable building one on the writer thread.

        ``close=True`` (``add_figure``'s default) hands the figure over: it is
        closed in pyplot now (so a loop that makes a figure a step does not
        pile them up) and drawn on the writer thread. ``close=False`` leaves
        it open for you to change and log again, so it is drawn now, as it
        is at the call.

        >>> fig, ax = plt.subplots(); ax.plot(losses)                          # doctest: +SKIP
        >>> writer.figure("train/curve", fig, step=99)                         # doctest: +SKIP
        """
        if not self._accept("figure", tag, step):
            return
        figures = list(figure) if isinstance(figure, (list, tuple)) else [figure]
        image = None
        if close:
            for one in figures:
                _close_in_pyplot(one)
        if hasattr(figure, "getbands") and hasattr(figure, "copy"):
            figure = figure.copy()  # a PIL image: its pixels as they are now
        elif not close and not callable(figure):
            try:
                image = render_figures(figure)
            except Exception as error:
                self._reject(("figure", tag), f"figure '{tag}' at step {step} can't be drawn: {error}; skipped")
                return
        self._put(rec.Figure(tag, figure, step, _now(walltime), image))

    def tensor(self, tag: str, tensor: Any, step: int | None = None, *, walltime: float | None = None) -> None:
        """Log a whole tensor (``add_tensor``): TensorBoard keeps its values and shape."""
        if not self._accept("tensor", tag, step, tensor):
            return
        if not isinstance(tensor, torch.Tensor):
            array = self._numbers("tensor", tag, tensor)
            if array is None:
                return
            tensor = _as_tensor(array)
        self._put(rec.Tensor(tag, snapshot(tensor), step, _now(walltime)))

    def text(self, tag: str, text: str, step: int | None = None, *, walltime: float | None = None) -> None:
        """Log a (markdown) text."""
        if self._accept("text", tag, step):
            self._put(rec.Text(tag, str(text), step, _now(walltime)))

    def pr_curve(
        self,
        tag: str,
        labels: Any,
        predictions: Any,
        step: int | None = None,
        *,
        num_thresholds: int = 127,
        weights: Any = None,
        walltime: float | None = None,
    ) -> None:
        """Log a precision-recall curve from binary labels and probabilities (``add_pr_curve``); ``weights``
        says what each prediction counts for (1 by default)."""
        if not self._accept("pr_curve", tag, step):
            return
        num_thresholds = self._thresholds(tag, num_thresholds)
        parts = []
        for part in (labels, predictions, weights):
            if part is not None and not isinstance(part, torch.Tensor):
                array = self._numbers("pr_curve", tag, part)
                if array is None:
                    return
                part = _as_tensor(array)
            parts.append(part)
        labels, predictions, weights = parts
        sizes = {name: p.numel() for name, p in zip(("labels", "predictions", "weights"), parts) if p is not None}
        if len(set(sizes.values())) > 1:
            self._reject(
                ("pr-sizes", tag),
                f"pr_curve '{tag}': labels, predictions and weights must have as many values each, got "
                + ", ".join(f"{k} {v}" for k, v in sizes.items())
                + "; skipped",
            )
            return
        buckets = Deferred.on_device(binary_bucket_counts, labels, predictions, num_thresholds, weights)
        self._put(rec.PRCurve(tag, buckets, step, _now(walltime), num_thresholds))

    def pr_curve_raw(
        self,
        tag: str,
        true_positive_counts: Any,
        false_positive_counts: Any,
        true_negative_counts: Any,
        false_negative_counts: Any,
        precision: Any,
        recall: Any,
        step: int | None = None,
        *,
        num_thresholds: int = 127,
        walltime: float | None = None,
    ) -> None:
        """Log a precision-recall curve from counts you computed (``add_pr_curve_raw``)."""
        if not self._accept("pr_curve", tag, step):
            return
        parts = [
            true_positive_counts,
            false_positive_counts,
            true_negative_counts,
            false_negative_counts,
            precision,
            recall,
        ]
        data = Deferred(
            lambda *p: np.stack([np.asarray(x, dtype=np.float64).reshape(-1) for x in p]), *(snapshot(x) for x in parts)
        )
        self._put(rec.PRCurve(tag, data, step, _now(walltime), self._thresholds(tag, num_thresholds)))

    def pr_curve_counts(
        self,
        tag: str,
        counts: Any,
        step: int | None = None,
        *,
        num_thresholds: int = 127,
        walltime: float | None = None,
    ) -> None:
        """Log a precision-recall curve from bucket counts: ``counts[0]`` the positives and ``counts[1]`` the
        negatives in each of ``num_thresholds`` probability buckets (a ``[2, T]`` tensor, or an :meth:`on_device`
        result such as ``counts.part(class_index)``), as :func:`trackers.tensorboard.pr_curve.bucket_counts` makes."""
        if self._accept("pr_curve", tag, step):
            data = counts if isinstance(counts, Deferred) else snapshot(counts)
            self._put(rec.PRCurve(tag, data, step, _now(walltime), self._thresholds(tag, num_thresholds)))

    def on_device(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        """``fn(*args)`` where the tensors are, for a value logged later: on an accelerator its kernels are queued
        now (no sync) and only the result travels; CPU tensors are copied and ``fn`` runs on the writer thread.

        >>> counts = writer.on_device(torch.bincount, labels, None, 10)     # doctest: +SKIP
        >>> writer.histogram_raw(...)                                       # doctest: +SKIP
        """
        return Deferred.on_device(fn, *args)

    def later(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        """``fn(*args)`` on the writer thread, from snapshots of its tensor arguments taken now (no sync): for
        work that needs the host, such as drawing. Pass the result where a method takes a value or a callable.

        >>> writer.figure("predictions", writer.later(draw, images, labels), step=99)   # doctest: +SKIP
        """
        return Deferred.later(fn, *args)

    def graph(
        self,
        model: Any,
        input_to_model: Any = None,
        *,
        use_jit: bool = False,
        verbose: bool = False,
        use_strict_trace: bool = True,
        walltime: float | None = None,
    ) -> None:
        """Log a model's graph: ``graph(model, input_to_model)`` as ``add_graph`` takes it, or a TensorBoard
        ``GraphDef`` (or a callable that builds one).

        A model is traced now, from ``input_to_model`` (a tensor or a tuple of
        them), with ``torch.fx`` (``torch.export`` where symbolic tracing
        fails) on fake tensors: the model is left as it was, node names are
        module paths. ``use_jit=True`` traces with ``torch.jit.trace`` as
        ``SummaryWriter`` does (``verbose`` and ``use_strict_trace`` are its
        options). A model that can't be traced is reported and nothing is
        written.

        >>> writer.graph(net, torch.zeros(1, 1, 28, 28))                       # doctest: +SKIP
        """
        if not self._accept("graph", "graph", None):
            return
        graph_def = model
        if isinstance(model, torch.nn.Module):
            args = tuple(input_to_model) if isinstance(input_to_model, (tuple, list)) else (input_to_model,)
            if input_to_model is None:
                args = ()
            try:
                graph_def = _trace(model, args, use_jit, verbose, use_strict_trace)
            except Exception as error:
                shapes = ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor)) or "no input"
                self._reject(
                    ("graph", type(model).__name__),
                    f"graph: could not trace {type(model).__name__} on inputs of shape {shapes}: "
                    f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}; no graph is written",
                )
                return
        self._put(rec.Graph(graph_def, _now(walltime)))

    def embedding(
        self,
        mat: Any,
        *,
        metadata: Any = None,
        label_img: Any = None,
        step: int | None = None,
        tag: str = "default",
        metadata_header: Sequence[str] | None = None,
    ) -> None:
        """Log points for TensorBoard's projector (one row of ``mat`` a point)."""
        if self._accept("embedding", tag, step):
            self._put(
                rec.Embedding(snapshot(mat), metadata, snapshot(label_img), step, tag, metadata_header, time.time())
            )

    def hparams(
        self,
        hparams: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        *,
        step: int | None = None,
        metrics_logged: bool = False,
        run_name: str | None = None,
        hparam_domain_discrete: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        """Log hyper-parameters and the metrics they led to: one session of TensorBoard's HParams tab.

        The first call without ``run_name`` writes the session into the run
        itself (``SummaryWriter`` always makes a sub-run named by the time;
        here the run's own curves sit beside its hyper-parameters). Each
        later call, and each call with a ``run_name``, is a session of its
        own in the sub-run ``<log_dir>/<run_name>`` (the time when no name is
        given), as ``add_hparams`` does: a sweep of four trials into one
        writer shows four sessions. ``hparam_domain_discrete`` lists the
        values a hyper-parameter can take, ``{"optimizer": ["adam", "sgd"]}``.

        The metrics are also written as scalars (in the session's run),
        unless ``metrics_logged`` says they are tags already logged during the
        run (TensorBoard's HParams tab then reads those series).

        >>> for lr in (0.1, 0.01):                                              # doctest: +SKIP
        ...     writer.hparams({"lr": lr}, {"hparam/accuracy": train(lr)}, run_name=f"lr={lr}")
        """
        if not self._accept("hparams", "hparams", step):
            return
        if run_name is None and self._hparams_sessions:
            run_name = str(time.time())
        self._hparams_sessions += 1
        metrics = {k: snapshot(v) for k, v in (metrics or {}).items()}
        domain = None if hparam_domain_discrete is None else {k: list(v) for k, v in hparam_domain_discrete.items()}
        self._put(
            rec.HParams(
                dict(hparams),
                metrics,
                step,
                time.time(),
                write_scalars=not metrics_logged,
                run=run_name or None,
                domain_discrete=domain,
            )
        )

    # ------------------------------------------------------------------ the run
    def flush(self, timeout: float | None = None) -> None:
        """Return once everything logged before this call is written and flushed."""
        self._raise_if_strict_error()
        if self._queue is not None and not self._closed and not self._queue.flush(timeout) and not self._queue.alive:
            self._thread_died()
        self._raise_if_strict_error()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for what is queued to be written, without waking the writer thread and without
        raising: safe in a signal handler. Returns whether everything was written."""
        return self._queue is None or self._closed or self._queue.flush(timeout, wake=False)

    def close(self, timeout: float | None = None) -> None:
        """Write everything, flush and close the sinks. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._queue is None:
            return
        self._queue.close(timeout)
        lifecycle.unregister_writer(self)
        if self._queue.dropped:
            self._reporter.warn(
                "closing-dropped",
                f"{self.describe()}: {self._queue.dropped} record(s) were dropped"
                + (f" ({_mib(self._queue.dropped_bytes)} of data)" if self._queue.dropped_bytes else "")
                + f" because the queue was full (when_full='drop_oldest', max_pending={self._queue.max_pending}, "
                f"max_pending_bytes={self._queue.max_pending_bytes})",
            )
        if self._queue.waited_seconds >= _REPORTED_WAIT_SECONDS:
            self._reporter.warn(
                "closing-waited",
                f"{self.describe()}: training waited {self._queue.waited_seconds:.1f} s in all "
                f"({self._queue.waits} time(s)) for the writer to make room (when_full='block', "
                f"max_pending_bytes={self._queue.max_pending_bytes}): records were logged faster than they could "
                "be written. Log less often (every_n_steps), raise max_pending_bytes, or pass "
                "when_full='drop_oldest' to drop instead of waiting",
            )
        if self.errors and not self.strict:
            self._reporter.warn(
                "closing-errors",
                f"{self.describe()}: {self.errors} record(s) could not be written during this run "
                "(the first error was reported when it happened)",
            )
        self._raise_if_strict_error()

    def release_sinks(self) -> tuple[Sink, ...]:
        """Write what is queued, then hand the sinks over (open) for another front; this one is closed."""
        if self._closed:
            raise ValueError(f"{self.describe()} is closed; its sinks are closed too")
        self._closed = True
        if self._queue is not None:
            self._queue.close(close_backend=False)
            lifecycle.unregister_writer(self)
        return self.sinks  # still readable here (a MemoryWriter's records); written only by their new front

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def strict(self) -> bool:
        """Raise instead of reporting: bad input at once, a failed write at the next call on the training thread."""
        return self._delivery.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        self._delivery.strict = value

    @property
    def errors(self) -> int:
        """How many records failed to write so far."""
        return self._delivery.errors

    @property
    def dropped(self) -> int:
        """Records dropped because the queue was full (``when_full="drop_oldest"``)."""
        return 0 if self._queue is None else self._queue.dropped

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs (a writer with no sinks has none)."""
        return self._queue is not None and self._queue.alive

    @property
    def pending(self) -> int:
        """Records waiting for the writer thread."""
        return 0 if self._queue is None else self._queue.pending

    @property
    def max_pending_bytes(self) -> int:
        """How much host memory the copies of waiting records may hold before ``when_full`` applies."""
        return 0 if self._queue is None else self._queue.max_pending_bytes

    @property
    def pending_bytes(self) -> int:
        """Host memory held by the copies of records waiting for the writer thread (at most ``max_pending_bytes``,
        plus one record that is larger on its own)."""
        return 0 if self._queue is None else self._queue.pending_bytes

    @property
    def waited_seconds(self) -> float:
        """How long the training thread has waited for room in the queue (``when_full="block"``)."""
        return 0.0 if self._queue is None else self._queue.waited_seconds

    @property
    def log_dir(self) -> str | None:
        """The directory of the first sink that writes files, or None."""
        return next((s.log_dir for s in self.sinks if s.log_dir), None)

    def describe(self) -> str:
        """How this writer names itself in messages."""
        if not self.sinks:
            return "Writer with no sinks"
        return ", ".join(sink.describe() for sink in self.sinks)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Writer([{self.describe()}])"

    def export_scalars(self, path: str | os.PathLike[str]) -> None:
        """Write every scalar logged so far as JSON: ``{tag: [[walltime, step, value], ...]}``.

        The format of tensorboardX's ``export_scalars_to_json`` (keyed by
        ``<log_dir>/<tag>`` there, by tag here).
        """
        self.flush()
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.read_scalars(), file, indent=1)

    def read_scalars(self) -> dict[str, list[list[Any]]]:
        """Every scalar written so far, ``{tag: [[walltime, step, value], ...]}``, from the first sink that can read."""
        for sink in self.sinks:
            read = getattr(sink, "read_scalars", None)
            if read is not None:
                self.flush()
                return read()
        raise NotImplementedError(f"{self.describe()}: no sink can read its scalars back")

    # ------------------------------------------------------------ training thread
    def _accept(self, kind: str, tag: Any, step: Any, value: Any = None) -> bool:
        problem = None
        if isinstance(value, torch.Tensor) and value.is_meta:
            problem = (
                ("meta", kind),
                f"{kind} '{tag}': the tensor is on the meta device and has no values (a model built on 'meta' and "
                "not yet materialised: model.to_empty(device=...), then load its weights); it is dropped, and so is "
                f"every later {kind} of a meta tensor",
            )
        elif self._closed:
            problem = (("closed", kind), f"{self.describe()} is closed; {kind} '{tag}' and later records are dropped")
        elif not isinstance(tag, str):
            problem = (
                ("tag", kind),
                f"{kind} tag must be a string, got {tag!r} ({type(tag).__name__}); record dropped",
            )
        elif step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
            problem = (("step", tag), f"{kind} '{tag}': step must be an integer or None, got {step!r}; record dropped")
        if problem is None:
            return bool(self.sinks)
        if self.strict:
            raise LoggingError(f"{problem[1]}")
        self._reporter.warn(problem[0], problem[1], stacklevel=4)
        return False

    def _reject(self, key: Hashable, message: str) -> None:
        if self.strict:
            raise LoggingError(message)
        self._reporter.warn(key, message, stacklevel=4)

    def _numbers(self, kind: str, tag: str, values: Any) -> np.ndarray | None:
        """``values`` (an array, a list, a number) as a real-valued NumPy array, or None after reporting why not."""
        array: np.ndarray | None = None
        try:
            array = np.asarray(values)
        except Exception as error:  # ragged lists and the like
            why = f"{type(error).__name__}: {error}"
        else:
            why = f"dtype {array.dtype}"
        if array is None or array.dtype.kind not in "biuf":
            self._reject(
                ("numbers", kind, tag),
                f"{kind} '{tag}': the values must be real numbers (a tensor, a NumPy array or a list of numbers), "
                f"got a {type(values).__name__} ({why[:200]}); skipped",
            )
            return None
        return array

    def _thresholds(self, tag: str, num_thresholds: int) -> int:
        if not 2 <= num_thresholds <= MAX_THRESHOLDS:
            self._reject(
                ("thresholds", tag),
                f"pr_curve '{tag}': num_thresholds must be 2..{MAX_THRESHOLDS} "
                f"(TensorBoard's limit), got {num_thresholds}; using {MAX_THRESHOLDS}",
            )
            return MAX_THRESHOLDS
        return num_thresholds

    def _put(self, record: rec.Record) -> None:
        if self.strict:
            self._raise_if_strict_error()
        queue = self._queue
        if queue is None:
            return
        if not queue.alive:
            self._thread_died()
            return
        if not queue.put(record, 0 if isinstance(record, rec.Scalar) else _held_bytes(record)):
            self._reporter.warn(
                "dropping",
                f"{self.describe()}: the writer can't keep up and its queue is full "
                f"(max_pending={queue.max_pending} records, max_pending_bytes={queue.max_pending_bytes}); "
                "dropping the oldest waiting records (when_full='drop_oldest'). The count is reported at close; "
                "when_full='block' waits instead",
                stacklevel=4,
            )

    def _thread_died(self) -> None:
        pending = 0 if self._queue is None else self._queue.pending
        message = (
            f"{self.describe()}: the writer thread has stopped; {pending} waiting record(s) "
            "and everything logged from now on are lost. This is a looptrack bug: please report it"
        )
        if self.strict:
            raise LoggingError(message)
        self._reporter.warn("thread-died", message, stacklevel=4)

    def _raise_if_strict_error(self) -> None:
        if self.strict and self._delivery.first_error is not None:
            error = self._delivery.take_first_error()
            raise LoggingError(f"{self.describe()} failed to write: {error}") from error


class SinkWriter(Writer):
    """A front with one sink of ``sink_type``, built from the sink's own arguments plus the front's options.

    ``TensorBoardWriter("runs/x", flush_secs=5)`` is ``Writer(TensorBoardSink("runs/x"), flush_secs=5)``.
    """

    sink_type: ClassVar[type[Sink]]

    def __init__(
        self,
        *args: Any,
        flush_secs: float = 2.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        when_full: str = "block",
        strict: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            self.sink_type(*args, **kwargs),
            flush_secs=flush_secs,
            max_pending=max_pending,
            max_pending_bytes=max_pending_bytes,
            when_full=when_full,
            strict=strict,
        )

    @property
    def sink(self) -> Sink:
        """The sink this front writes to."""
        return self.sinks[0]
