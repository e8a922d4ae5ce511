"""What a backend implements: a sink receives plain records on the writer thread and writes the kinds it knows."""

from __future__ import annotations

from collections.abc import Hashable

from trackers.errors import OnceReporter


class Sink:
    """The base class of every backend; override ``write_<kind>`` for the kinds it can show.

    A sink never sees the training thread, queues or snapshots: on the writer
    thread it gets records whose values are already plain (``write_scalar``
    gets ``record.value`` as a float, ``write_figure`` gets ``record.image`` as
    HWC uint8 pixels, ``write_histogram_raw`` gets the bins). A kind it has no
    ``write_<kind>`` for is reported once by the writer and skipped. The kinds
    are the ``kind`` of the classes in :mod:`trackers.writers.records`:
    scalar, scalars, custom_scalars, histogram_raw, image, audio, video, mesh,
    figure, tensor, text, pr_curve, graph, embedding, hparams.

    >>> class PrintSink(Sink):
    ...     def write_scalar(self, record):
    ...         print(record.tag, record.step, record.value)
    >>> from trackers.writers.front import Writer
    >>> writer = Writer(PrintSink())
    >>> writer.scalar("train/loss", 0.5, step=3)
    >>> writer.close()
    train/loss 3 0.5
    """

    log_dir: str | None = None
    """The directory the sink writes under, if it writes files."""

    keeps_values: bool = True
    """Whether the sink may hold on to a record's arrays after ``write_<kind>`` returns. A sink that copies or
    encodes what it keeps sets it to False, and the writer then reuses those buffers for later records."""

    def flush(self) -> None:
        """Make what was written durable."""

    def close(self) -> None:
        """Release files and connections; nothing is written after it."""

    def describe(self) -> str:
        """How messages name this sink."""
        return type(self).__name__

    def warn(self, key: Hashable, message: str) -> None:
        """Report a problem of this sink once per ``key`` (a :class:`~trackers.errors.LooptrackWarning`)."""
        reporter = self.__dict__.setdefault("_once", OnceReporter())
        reporter.warn((id(self), key), f"{self.describe()}: {message}")
