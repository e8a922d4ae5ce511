"""The TensorBoard sink: TensorBoard's own protos (built by ``torch.utils.tensorboard.summary``) in event files."""

from __future__ import annotations

import os

from typing_extensions import override

from trackers.tensorboard.event_file import EventFile
from trackers.tensorboard.projector import Projector
from trackers.tensorboard.purge import trim_events
from trackers.writers import records as rec
from trackers.writers.front import SinkWriter
from trackers.writers.logdir import IfExists, default_log_dir, holds_events, run_dir
from trackers.writers.sink import Sink


class TensorBoardSink(Sink):
    """Writes a normal TensorBoard run directory (``tensorboard --logdir`` shows it), the same events
    ``SummaryWriter`` writes for the same calls.

    The directory is created and checked here, on the calling thread, so a bad
    path fails at once; encoding and file I/O happen on the writer thread.

    >>> writer = Writer(TensorBoardSink("runs/fashion_mnist_experiment_1"))   # doctest: +SKIP

    ``log_dir=None`` means ``runs/<datetime>_<host><comment>`` as with
    ``SummaryWriter``; ``purge_step=T`` resumes a run in the same directory:
    the earlier files lose their events at and after step T (rewritten, not
    merely hidden, so every reader agrees).

    A directory that already holds a run (event files) is not mixed into:
    with ``if_exists="new"`` (the default) this run goes to the first of
    ``<log_dir>_2``, ``<log_dir>_3``, ... that holds none, with a
    :class:`~trackers.errors.LooptrackWarning` naming both; ``self.log_dir``
    is the directory used. ``if_exists="append"`` writes into ``log_dir``
    whatever it holds (``purge_step`` always continues in ``log_dir``).
    """

    log_dir: str
    keeps_values = False  # every record is encoded into the event file as it comes

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        comment: str = "",
        purge_step: int | None = None,
        filename_suffix: str = "",
        if_exists: IfExists = "new",
    ) -> None:
        given = os.fspath(log_dir) if log_dir is not None else default_log_dir(comment)
        self.log_dir = run_dir(
            given,
            holds_events,
            if_exists="append" if purge_step is not None else if_exists,
            add_anyway=f"TensorBoardSink({given!r}, if_exists='append')",
            resume=f"Tracker(..., writer={given!r}, resume_step=T)",
        )
        if purge_step is not None:
            trim_events(self.log_dir, purge_step)
        self._filename_suffix = filename_suffix
        self._file = EventFile(self.log_dir, filename_suffix)
        if purge_step is not None:
            self._file.add_purge_marker(purge_step)
        self._sub_runs: dict[str, EventFile] = {}
        self._projector: Projector | None = None
        self.recreated = 0

    @override
    def describe(self) -> str:
        return f"TensorBoardSink({self.log_dir!r})"

    def write_scalar(self, record: rec.Scalar) -> None:
        from torch.utils.tensorboard.summary import scalar

        summary = scalar(record.tag, record.value, new_style=record.new_style, double_precision=record.double_precision)
        self._file.add_summary(summary, record.step, record.walltime)

    def write_scalars(self, record: rec.Scalars) -> None:
        """One sub-run per key, ``<log_dir>/<main_tag>_<key>``, as ``add_scalars`` lays them out."""
        from torch.utils.tensorboard.summary import scalar

        for key, value in record.values.items():
            sub_run = self._sub_run(self.log_dir + "/" + record.tag.replace("/", "_") + "_" + key)
            sub_run.add_summary(scalar(record.tag, value), record.step, record.walltime)

    def _sub_run(self, folder: str) -> EventFile:
        sub_run = self._sub_runs.get(folder)
        if sub_run is None:
            sub_run = self._sub_runs[folder] = EventFile(folder, self._filename_suffix)
        return sub_run

    def write_custom_scalars(self, record: rec.CustomScalars) -> None:
        from torch.utils.tensorboard.summary import custom_scalars

        self._file.add_summary(custom_scalars(dict(record.layout)))

    def write_histogram_raw(self, record: rec.HistogramRaw) -> None:
        from torch.utils.tensorboard.summary import histogram_raw

        summary = histogram_raw(
            record.tag,
            record.min,
            record.max,
            record.num,
            record.sum,
            record.sum_squares,
            record.bucket_limits,
            record.bucket_counts,
        )
        self._file.add_summary(summary, record.step, record.walltime)

    def write_image(self, record: rec.Image) -> None:
        from torch.utils.tensorboard.summary import image, image_boxes

        if record.boxes is not None:
            labels = record.box_labels
            if labels is not None and len(labels) != record.boxes.shape[0]:
                labels = None  # as add_image_with_boxes
            summary = image_boxes(record.tag, record.image, record.boxes, dataformats=record.dataformats, labels=labels)
        else:
            summary = image(record.tag, record.image, dataformats=record.dataformats)
        self._file.add_summary(summary, record.step, record.walltime)

    def write_figure(self, record: rec.Figure) -> None:
        from torch.utils.tensorboard.summary import image

        self._file.add_summary(image(record.tag, record.image, dataformats="HWC"), record.step, record.walltime)

    def write_audio(self, record: rec.Audio) -> None:
        from torch.utils.tensorboard.summary import audio

        self._file.add_summary(
            audio(record.tag, record.sound, sample_rate=record.sample_rate), record.step, record.walltime
        )

    def write_video(self, record: rec.Video) -> None:
        try:  # torch's video summary needs moviepy 1.x and only prints when it is missing
            from moviepy import editor  # noqa: F401
        except ImportError as error:
            raise RuntimeError("videos need moviepy 1.x: pip install 'looptrack[video]'") from error
        from torch.utils.tensorboard.summary import video

        self._file.add_summary(video(record.tag, record.video, record.fps), record.step, record.walltime)

    def write_mesh(self, record: rec.Mesh) -> None:
        from torch.utils.tensorboard.summary import mesh

        summary = mesh(record.tag, record.vertices, record.colors, record.faces, record.config)
        self._file.add_summary(summary, record.step, record.walltime)

    def write_tensor(self, record: rec.Tensor) -> None:
        from torch.utils.tensorboard.summary import tensor_proto

        self._file.add_summary(tensor_proto(record.tag, record.tensor), record.step, record.walltime)

    def write_text(self, record: rec.Text) -> None:
        from torch.utils.tensorboard.summary import text

        self._file.add_summary(text(record.tag, record.text), record.step, record.walltime)

    def write_pr_curve(self, record: rec.PRCurve) -> None:
        from torch.utils.tensorboard.summary import pr_curve_raw

        tp, fp, tn, fn, precision, recall = record.data
        summary = pr_curve_raw(record.tag, tp, fp, tn, fn, precision, recall, record.num_thresholds, None)
        self._file.add_summary(summary, record.step, record.walltime)

    def write_graph(self, record: rec.Graph) -> None:
        from tensorboard.compat.proto import event_pb2

        self._file.add_event(event_pb2.Event(graph_def=record.graph_def.SerializeToString(), wall_time=record.walltime))

    def write_embedding(self, record: rec.Embedding) -> None:
        if self._projector is None:
            self._projector = Projector(self.log_dir)
        self._projector.add(
            record.mat, record.metadata, record.label_img, record.step, record.tag, record.metadata_header
        )

    def write_hparams(self, record: rec.HParams) -> None:
        """The session's three summaries and its metrics, in the run itself or in the sub-run ``record.run``."""
        from torch.utils.tensorboard.summary import hparams, scalar

        domain = dict(record.domain_discrete) if record.domain_discrete is not None else None
        events = self._file if record.run is None else self._sub_run(os.path.join(self.log_dir, record.run))
        for summary in hparams(dict(record.hparams), dict(record.metrics), domain):
            events.add_summary(summary, record.step, record.walltime)
        if record.write_scalars:
            for tag, value in record.metrics.items():
                events.add_summary(scalar(tag, value), record.step, record.walltime)

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

    @override
    def flush(self) -> None:
        """Hand every event file's records to the OS; one failing does not keep the others from it."""
        self._each_event_file("flush")

    @override
    def close(self) -> None:
        """Flush and close every event file, all of them even if one fails (the first error is raised)."""
        self._each_event_file("close")

    def _each_event_file(self, method: str) -> None:
        first_error: Exception | None = None
        for event_file in (self._file, *self._sub_runs.values()):
            try:
                getattr(event_file, method)()
            except Exception as error:
                first_error = first_error or error
            self.recreated += event_file.report(self.warn, "event", file="event file", directory="log dir")
        if first_error is not None:
            raise first_error


class TensorBoardWriter(SinkWriter):
    """``Writer(TensorBoardSink(log_dir, ...))`` in one call: ``TensorBoardWriter("runs/x", flush_secs=5)``."""

    sink_type = TensorBoardSink
