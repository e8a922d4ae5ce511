"""MLflow as a backend (extra ``looptrack[mlflow]``): scalars as metrics, pictures and curves as artifacts,
hyper-parameters as params."""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import time
from typing import Any

import numpy as np
from typing_extensions import override

from trackers.optional import require
from trackers.writers import records as rec
from trackers.writers.front import SinkWriter
from trackers.writers.sink import Sink


def _key(tag: str) -> str:
    """An MLflow-legal metric/param/artifact name for a tag (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]+", "_", tag) or "tag"


def _millis(walltime: float | None) -> int:
    return int((time.time() if walltime is None else walltime) * 1000)


class MlflowSink(Sink):
    """Logs into one MLflow run.

    >>> sink = MlflowSink(tracking_uri="http://127.0.0.1:5000", experiment="fashion_mnist")   # doctest: +SKIP
    >>> tracker = Tracker(net, writer=["runs/exp1", sink])              # TensorBoard and MLflow   # doctest: +SKIP

    Scalars become metrics (with their step and time); images and figures
    PNG artifacts under ``images/``; PR curves JSON artifacts under
    ``pr_curves/``; text under ``text/``; hparams become params, their
    metrics metrics. Histograms, graphs and embeddings have no MLflow
    counterpart and are reported once and skipped. The run is ended when
    the writer closes.
    """

    keeps_values = False

    def __init__(
        self, tracking_uri: str | None = None, experiment: str = "looptrack", run_name: str | None = None
    ) -> None:
        mlflow = require("mlflow")
        self._client = mlflow.tracking.MlflowClient(tracking_uri)
        found = self._client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self._client.create_experiment(experiment)
        self._experiment_id = experiment_id
        self.run_id = self._client.create_run(experiment_id, run_name=run_name).info.run_id
        self.tracking_uri = tracking_uri

    @override
    def describe(self) -> str:
        return f"MlflowSink(run {self.run_id} at {self.tracking_uri or 'the default tracking URI'})"

    def _artifact(self, folder: str, name: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, name)
            with open(path, "wb") as file:
                file.write(data)
            self._client.log_artifact(self.run_id, path, artifact_path=folder)

    def _png(self, record: Any, image_hwc: np.ndarray) -> None:
        from PIL import Image as PILImage

        buffer = io.BytesIO()
        PILImage.fromarray(image_hwc).save(buffer, format="PNG")
        self._artifact(f"images/{_key(record.tag)}", f"step_{record.step or 0}.png", buffer.getvalue())

    def write_scalar(self, record: rec.Scalar) -> None:
        self._client.log_metric(
            self.run_id, _key(record.tag), record.value, timestamp=_millis(record.walltime), step=record.step or 0
        )

    def write_scalars(self, record: rec.Scalars) -> None:
        for key, value in record.values.items():
            self._client.log_metric(
                self.run_id,
                _key(f"{record.tag}/{key}"),
                value,
                timestamp=_millis(record.walltime),
                step=record.step or 0,
            )

    def write_image(self, record: rec.Image) -> None:
        from torch.utils.tensorboard.summary import convert_to_HWC, make_np

        image = convert_to_HWC(make_np(record.image), record.dataformats.lstrip("N"))
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        self._png(record, image)

    def write_figure(self, record: rec.Figure) -> None:
        self._png(record, record.image)

    def write_text(self, record: rec.Text) -> None:
        self._client.log_text(self.run_id, record.text, f"text/{_key(record.tag)}/step_{record.step or 0}.md")

    def write_pr_curve(self, record: rec.PRCurve) -> None:
        rows = ("true_positives", "false_positives", "true_negatives", "false_negatives", "precision", "recall")
        curve = {name: np.asarray(row).tolist() for name, row in zip(rows, record.data)}
        self._artifact(f"pr_curves/{_key(record.tag)}", f"step_{record.step or 0}.json", json.dumps(curve).encode())

    def write_hparams(self, record: rec.HParams) -> None:
        """The run's params, or, for a session of its own (``record.run``, a trial of a sweep), a child run's."""
        run_id = self.run_id
        if record.run is not None:
            parent = {"mlflow.parentRunId": self.run_id}
            run_id = self._client.create_run(self._experiment_id, run_name=record.run, tags=parent).info.run_id
        for key, value in record.hparams.items():
            self._client.log_param(run_id, _key(key), value)
        if record.write_scalars:  # not when they are tags already logged as metrics
            for key, value in record.metrics.items():
                self._client.log_metric(run_id, _key(key), value, step=record.step or 0)
        if record.run is not None:
            self._client.set_terminated(run_id)

    @override
    def close(self) -> None:
        self._client.set_terminated(self.run_id)


class MlflowWriter(SinkWriter):
    """``Writer(MlflowSink(tracking_uri, experiment, run_name))`` in one call."""

    sink_type = MlflowSink
