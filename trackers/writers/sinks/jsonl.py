"""One JSON object a line, for pandas (``pandas.read_json(path, lines=True)``); pictures as PNG files beside it."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from trackers.writers import records as rec
from trackers.writers.file_sink import RecordFileSink
from trackers.writers.front import SinkWriter


def _safe(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tag).strip("_") or "tag"


class JsonlSink(RecordFileSink):
    """Appends records to ``path`` (default ``<log_dir>/looptrack.jsonl``), one JSON object a line.

    >>> writer = Writer(JsonlSink("runs/exp1/looptrack.jsonl"))                    # doctest: +SKIP
    >>> pandas.read_json("runs/exp1/looptrack.jsonl", lines=True)                  # doctest: +SKIP

    Every line has ``kind``, ``tag``, ``step`` and ``walltime``; scalars add
    ``value``, histograms their raw fields, PR curves their six rows, text
    ``text``, hparams ``hparams`` and ``metrics``; images and figures are
    written as PNG files under ``<dir>/images/`` and the line holds ``path``.

    If the file already has lines (an earlier run), this run goes to the same
    file name in the first of ``<dir>_2``, ``<dir>_3``, ... where it has none,
    with a :class:`~trackers.errors.LooptrackWarning`; ``self.path`` and
    ``self.log_dir`` are the ones used. ``if_exists="append"`` appends to it.
    """

    file_name, unit, durable = "looptrack.jsonl", "line", True

    def _line(self, record: Any, **fields: Any) -> None:
        line = {"kind": record.kind, "tag": record.tag, "step": record.step, "walltime": record.walltime, **fields}
        self._file.add((json.dumps(line, default=_jsonable) + "\n").encode("utf-8"))

    def _png(self, record: Any, image_hwc: np.ndarray) -> str:
        from PIL import Image as PILImage

        folder = os.path.join(self.log_dir, "images")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{_safe(record.tag)}_{record.step if record.step is not None else 0}.png")
        PILImage.fromarray(image_hwc).save(path)
        return os.path.relpath(path, self.log_dir)

    def write_scalar(self, record: rec.Scalar) -> None:
        self._line(record, value=record.value)

    def write_scalars(self, record: rec.Scalars) -> None:
        self._line(record, values=dict(record.values))

    def write_histogram_raw(self, record: rec.HistogramRaw) -> None:
        self._line(
            record,
            min=record.min,
            max=record.max,
            num=record.num,
            sum=record.sum,
            sum_squares=record.sum_squares,
            bucket_limits=record.bucket_limits,
            bucket_counts=record.bucket_counts,
        )

    def write_image(self, record: rec.Image) -> None:
        from torch.utils.tensorboard.summary import convert_to_HWC, make_np

        image = make_np(record.image)
        if record.dataformats.startswith("N"):
            from torch.utils.tensorboard._utils import make_grid

            image, dataformats = make_grid(image), "CHW"
        else:
            dataformats = record.dataformats
        image = convert_to_HWC(image, dataformats)
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        self._line(record, path=self._png(record, image))

    def write_figure(self, record: rec.Figure) -> None:
        self._line(record, path=self._png(record, record.image))

    def write_text(self, record: rec.Text) -> None:
        self._line(record, text=record.text)

    def write_pr_curve(self, record: rec.PRCurve) -> None:
        tp, fp, tn, fn, precision, recall = (np.asarray(row).tolist() for row in record.data)
        self._line(
            record,
            true_positives=tp,
            false_positives=fp,
            true_negatives=tn,
            false_negatives=fn,
            precision=precision,
            recall=recall,
        )

    def write_hparams(self, record: rec.HParams) -> None:
        session = {} if record.run is None else {"run": record.run}
        self._line(record, hparams=dict(record.hparams), metrics=dict(record.metrics), **session)

    def write_tensor(self, record: rec.Tensor) -> None:
        tensor = record.tensor  # a CPU tensor
        dtype = str(tensor.dtype).removeprefix("torch.")
        self._line(record, shape=list(tensor.shape), dtype=dtype, values=tensor.tolist())


class JsonlWriter(SinkWriter):
    """``Writer(JsonlSink(path, ...))`` in one call."""

    sink_type = JsonlSink


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
