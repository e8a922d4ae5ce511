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

import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trackers.report import LoggingError, OnceReporter
from trackers.writers import records as rec
from trackers.writers.worker import RecordQueue


class Writer:
    """Base class of every backend; see the module docstring for the two sides."""

    name = "writer"

    def __init__(self, *, flush_secs: float = 2.0, max_pending: int = 10_000, strict: bool = False) -> None:
        self.strict = strict
        self._reporter = OnceReporter()
        self._errors = 0
        self._first_error: BaseException | None = None
        self._closed = False
        self._queue = RecordQueue(
            self._write_record,
            self.flush_backend,
            self.close_backend,
            self._on_error,
            name=f"looptrack-{self.name}-writer",
            flush_secs=flush_secs,
            max_pending=max_pending,
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
            self._put(rec.Scalar(tag, rec.snapshot(value), step, walltime or time.time(), source))

    def histogram(
        self, tag: str, values: Any, step: int | None = None, *, bins: str = "tensorflow",
        walltime: float | None = None,
    ) -> None:
        """Log the distribution of a tensor's values."""
        if self._accept("histogram", tag, step):
            self._put(rec.Histogram(tag, rec.snapshot(values), step, walltime or time.time(), bins))

    def image(
        self, tag: str, image: Any, step: int | None = None, *, dataformats: str = "CHW",
        walltime: float | None = None,
    ) -> None:
        """Log an image tensor (CHW by default, values in [0, 1] or uint8)."""
        if self._accept("image", tag, step):
            self._put(rec.Image(tag, rec.snapshot(image), step, walltime or time.time(), dataformats))

    def figure(self, tag: str, figure: Any, step: int | None = None, *, walltime: float | None = None) -> None:
        """Log a matplotlib Figure, or a zero-argument callable that builds one (run on the writer thread)."""
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
        """Log a precision-recall curve from binary labels and probabilities."""
        if self._accept("pr_curve", tag, step):
            self._put(rec.PRCurve(tag, rec.snapshot(labels), rec.snapshot(predictions), step,
                                  walltime or time.time(), num_thresholds))

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
                step: int | None = None) -> None:
        """Log the run's hyper-parameters and the metrics they led to."""
        if self._accept("hparams", "hparams", step):
            metrics = {k: rec.snapshot(v) for k, v in (metrics or {}).items()}
            self._put(rec.HParams(dict(hparams), metrics, step, time.time()))

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything logged before this call is written and flushed."""
        self._raise_if_strict_error()
        if not self._closed:
            self._queue.flush(timeout)
        self._raise_if_strict_error()

    def close(self, timeout: float | None = None) -> None:
        """Write everything, flush and release the backend. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._queue.close(timeout)
        from trackers.lifecycle import unregister_writer

        unregister_writer(self)
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

    def _put(self, record: Any) -> None:
        if self.strict:
            self._raise_if_strict_error()
        self._queue.put(record)

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
        method: Callable[[Any], None] = getattr(self, f"write_{record.kind}", self.write_unsupported)
        method(record)

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
