"""The TensorBoard backend, built on ``torch.utils.tensorboard`` and TensorBoard's own protos."""

from __future__ import annotations

import os
from typing import Any

from trackers.writers import records as rec
from trackers.writers.base import Writer
from trackers.writers.logdir import IfExists, default_log_dir, ensure_writable_dir, holds_events, run_dir


def render_figure(figure: Any) -> Any:
    """A figure as an HWC uint8 RGB array: a ``PIL.Image`` as it is, a matplotlib Figure through Agg (no pyplot)."""
    import numpy as np

    if hasattr(figure, "convert") and hasattr(figure, "getbands"):  # a PIL image
        return np.asarray(figure.convert("RGB"))
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class TensorBoardWriter(Writer):
    """Writes a normal TensorBoard run directory (``tensorboard --logdir`` shows it).

    The directory is created and checked here, on the calling thread, so a bad
    path fails at once; encoding and file I/O happen on the writer thread.

    >>> writer = TensorBoardWriter("runs/fashion_mnist_experiment_1", flush_secs=2)  # doctest: +SKIP
    >>> writer.scalar("train/loss", 0.25, step=99)                                   # doctest: +SKIP
    >>> writer.close()                                                               # doctest: +SKIP

    ``log_dir=None`` means ``runs/<datetime>_<host><comment>`` as with
    ``SummaryWriter``; ``purge_step=T`` resumes a run in the same directory:
    the earlier files lose their events at and after step T (rewritten, not
    merely hidden, so every reader agrees).

    A directory that already holds a run (event files) is not mixed into:
    with ``if_exists="new"`` (the default) this run goes to the first of
    ``<log_dir>_2``, ``<log_dir>_3``, ... that holds none, with a
    :class:`~trackers.report.LooptrackWarning` naming both; ``self.log_dir``
    is the directory used. ``if_exists="append"`` writes into ``log_dir``
    whatever it holds (``purge_step`` always continues in ``log_dir``).
    """

    name = "tensorboard"

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        comment: str = "",
        purge_step: int | None = None,
        filename_suffix: str = "",
        if_exists: IfExists = "new",
        flush_secs: float = 2.0,
        max_pending: int = 10_000,
        when_full: str = "block",
        strict: bool = False,
    ) -> None:
        log_dir = os.fspath(log_dir) if log_dir is not None else default_log_dir(comment)
        self.log_dir = run_dir(
            log_dir, holds_events, if_exists="append" if purge_step is not None else if_exists,
            add_anyway=f"TensorBoardWriter({log_dir!r}, if_exists='append')",
            resume=f"Tracker(..., writer={log_dir!r}, resume_step=T)",
        )
        if purge_step is not None:
            from trackers.resume import trim_events

            trim_events(self.log_dir, purge_step)
        self._filename_suffix = filename_suffix
        self._summary_writer = self._open(purge_step)
        self.recreated = 0
        super().__init__(flush_secs=flush_secs, max_pending=max_pending, when_full=when_full, strict=strict)

    def _open(self, purge_step: int | None = None) -> Any:
        from trackers.writers.event_file import summary_writer

        # SummaryWriter builds the summaries; the event file under it is written on our thread (no timer, no
        # second thread, CRC in C).
        return summary_writer(self.log_dir, purge_step=purge_step, filename_suffix=self._filename_suffix)

    def describe(self) -> str:
        return f"TensorBoardWriter({self.log_dir!r})"

    # Writer thread -------------------------------------------------------
    def write_scalar(self, record: rec.Scalar) -> None:
        self._summary_writer.add_scalar(record.tag, record.value, record.step, record.walltime)

    def write_scalars(self, record: rec.Scalars) -> None:
        values = {k: rec.to_float(v) for k, v in record.values.items()}
        self._summary_writer.add_scalars(record.tag, values, record.step, record.walltime)

    def write_custom_scalars(self, record: rec.CustomScalars) -> None:
        self._summary_writer.add_custom_scalars(dict(record.layout))

    def write_histogram_raw(self, record: rec.HistogramRaw) -> None:
        self._summary_writer.add_histogram_raw(
            record.tag, record.min, record.max, record.num, record.sum, record.sum_squares,
            record.bucket_limits, record.bucket_counts, record.step, record.walltime,
        )

    def write_image(self, record: rec.Image) -> None:
        image = rec.materialize(record.image)
        if record.boxes is not None:
            self._summary_writer.add_image_with_boxes(
                record.tag, image, rec.materialize(record.boxes), record.step, record.walltime,
                dataformats=record.dataformats, labels=record.box_labels,
            )
        elif record.dataformats.startswith("N"):
            self._summary_writer.add_images(record.tag, image, record.step, record.walltime, record.dataformats)
        else:
            self._summary_writer.add_image(record.tag, image, record.step, record.walltime, record.dataformats)

    def write_audio(self, record: rec.Audio) -> None:
        self._summary_writer.add_audio(record.tag, rec.materialize(record.sound), record.step,
                                       record.sample_rate, record.walltime)

    def write_video(self, record: rec.Video) -> None:
        try:  # SummaryWriter.add_video needs moviepy 1.x and only prints when it is missing
            from moviepy import editor  # noqa: F401
        except ImportError as error:
            raise RuntimeError("videos need moviepy 1.x: pip install 'looptrack[video]'") from error
        self._summary_writer.add_video(record.tag, rec.materialize(record.video), record.step, record.fps,
                                       record.walltime)

    def write_mesh(self, record: rec.Mesh) -> None:
        self._summary_writer.add_mesh(
            record.tag, rec.materialize(record.vertices), rec.materialize(record.colors),
            rec.materialize(record.faces), record.config, record.step, record.walltime,
        )

    def write_figure(self, record: rec.Figure) -> None:
        figure = record.figure() if callable(record.figure) else record.figure
        self._summary_writer.add_image(record.tag, render_figure(figure), record.step, record.walltime,
                                       dataformats="HWC")

    def write_text(self, record: rec.Text) -> None:
        self._summary_writer.add_text(record.tag, record.text, record.step, record.walltime)

    def write_pr_curve(self, record: rec.PRCurve) -> None:
        tp, fp, tn, fn, precision, recall = record.data
        self._summary_writer.add_pr_curve_raw(
            record.tag, tp, fp, tn, fn, precision, recall, record.step, record.num_thresholds,
            walltime=record.walltime,
        )

    def write_graph(self, record: rec.Graph) -> None:
        from tensorboard.compat.proto import event_pb2

        graph_def = record.graph_def() if callable(record.graph_def) else record.graph_def
        event = event_pb2.Event(graph_def=graph_def.SerializeToString())
        self._summary_writer._get_file_writer().add_event(event, None, record.walltime)

    def write_embedding(self, record: rec.Embedding) -> None:
        self._summary_writer.add_embedding(
            rec.materialize(record.mat), metadata=rec.materialize(record.metadata),
            label_img=rec.materialize(record.label_img),
            global_step=record.step, tag=record.tag, metadata_header=record.metadata_header,
        )

    def write_hparams(self, record: rec.HParams) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        metrics = {k: rec.to_float(v) for k, v in record.metrics.items()}
        experiment, start, end = hparams_summary(dict(record.hparams), metrics)
        file_writer = self._summary_writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary, record.step, record.walltime)
        if record.write_scalars:
            for tag, value in metrics.items():
                self._summary_writer.add_scalar(tag, value, record.step, record.walltime)

    def read_scalars(self) -> dict[str, list[list[float]]]:
        """Every scalar in this run's directory (and its ``scalars`` sub-runs), read with TensorBoard's reader."""
        from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

        multiplexer = EventMultiplexer(size_guidance={"scalars": 0})
        multiplexer.AddRunsFromDirectory(self.log_dir)
        multiplexer.Reload()
        out: dict[str, list[list[float]]] = {}
        for run, tags in sorted(multiplexer.Runs().items()):
            prefix = "" if run == "." else run.replace(os.sep, "/") + "/"
            for tag in tags.get("scalars", []):
                events = multiplexer.Scalars(run, tag)
                out[prefix + tag] = [[e.wall_time, e.step, e.value] for e in events]
        return out

    def flush_backend(self) -> None:
        if not os.path.isdir(self.log_dir):
            self._recreate()
        self._summary_writer.flush()

    def _recreate(self) -> None:
        """The log dir vanished (deleted under a running job): say so, make it again, write a new file there."""
        self.recreated += 1
        self._reporter.warn(
            ("deleted", self.recreated),
            f"the log dir {self.log_dir!r} was deleted during the run; it is created again and logging goes on "
            f"in a new event file (what was written since the last flush, up to {self._queue._flush_secs:g} s, "
            "went with the deleted directory)",
        )
        try:
            self._summary_writer.close()
        except Exception:  # the old file is gone anyway
            pass
        ensure_writable_dir(self.log_dir)
        self._summary_writer = self._open()

    def close_backend(self) -> None:
        self._summary_writer.close()
