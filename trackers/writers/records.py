"""Backend-neutral records: what a writer is asked to write, as plain data.

The training thread builds a record and hands it over; tensors in it are
snapshots (see :func:`snapshot`) so the loop may go on changing its own
tensors. On the writer thread, :func:`materialize` turns a snapshot into a CPU
tensor — the only place a device is read back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from trackers.writers.buffers import POOL


@dataclass(frozen=True)
class DeviceSnapshot:
    """A copy of a device tensor on its way to host memory, with the event that says it arrived."""

    tensor: torch.Tensor
    ready: Any = None  # a torch.cuda.Event, or None when the copy is already usable

    def wait(self) -> torch.Tensor:
        if self.ready is not None:
            self.ready.synchronize()
        return self.tensor.cpu()


class Deferred:
    """A value computed on the writer thread, once (the result is kept).

    Built with :meth:`on_device`: work on CPU tensors is deferred to the
    writer thread (from copies), work on an accelerator is queued at once
    (kernels only, no sync) and just its small result travels.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._fn = fn
        self._args = args
        self._done = False
        self._value: Any = None
        self._pooled = False  # args are POOL buffers, given back once used
        self._lock = threading.Lock()  # several writers (fan-out) may ask at once

    @classmethod
    def on_device(cls, fn: Callable[..., Any], *args: Any) -> Deferred:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if all(t.device.type == "cpu" for t in tensors):
            deferred = cls(fn, *(POOL.copy(a) if isinstance(a, torch.Tensor) else a for a in args))
            deferred._pooled = True
            return deferred
        return cls(_identity, _map_tensors(fn(*args), snapshot))

    def part(self, index: Any) -> Deferred:
        """A deferred ``self()[index]``."""
        return Deferred(lambda: self()[index])

    def __call__(self) -> Any:
        with self._lock:
            return self._compute()

    def _compute(self) -> Any:
        if not self._done:
            args = [materialize(a) for a in self._args]
            self._value = _map_tensors(self._fn(*args), materialize)
            self._done = True
            if self._pooled:
                for arg in self._args:
                    if isinstance(arg, torch.Tensor):
                        POOL.give_back(arg)
            self._args = ()
        return self._value


def _identity(value: Any) -> Any:
    return value


def _map_tensors(value: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    return fn(value)


def snapshot(value: Any) -> Any:
    """Freeze ``value`` for the writer thread without waiting for the device.

    CUDA tensors start an asynchronous copy to host memory and record an event;
    CPU tensors are cloned (they are small, or the caller accepted the copy);
    anything else is returned as it is.
    """
    if not isinstance(value, torch.Tensor):
        return value  # numbers, arrays, Deferred
    value = value.detach()
    if value.device.type == "cpu":
        return value.clone()
    if value.device.type == "cuda":
        host = value.to("cpu", non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return DeviceSnapshot(host, event)
    return DeviceSnapshot(value.clone())


def materialize(value: Any) -> Any:
    """The CPU form of a snapshot (runs on the writer thread; may wait for the device)."""
    if isinstance(value, DeviceSnapshot):
        return value.wait()
    if isinstance(value, Deferred):
        return value()
    return value


def to_float(value: Any) -> float:
    value = materialize(value)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a scalar needs one value, got a tensor of shape {tuple(value.shape)}")
        return float(value.reshape(()).item())
    return float(value)


@dataclass
class Scalar:
    tag: str
    value: Any
    step: int | None = None
    walltime: float | None = None
    source: str | None = None
    kind = "scalar"


@dataclass
class Scalars:
    """Several scalars on one chart (``add_scalars``): one run per key, under ``main_tag``."""

    tag: str
    values: Mapping[str, Any]
    step: int | None = None
    walltime: float | None = None
    kind = "scalars"


@dataclass
class CustomScalars:
    """A custom-scalars layout: ``{category: {chart: ["Multiline" | "Margin", [tags]]}}``."""

    layout: Mapping[str, Any]
    tag: str = "custom_scalars"
    step: int | None = None
    walltime: float | None = None
    kind = "custom_scalars"


@dataclass
class Histogram:
    """Values to bin; with TensorBoard's bins the counts may already be on their way (``counts``)."""

    tag: str
    values: Any
    step: int | None = None
    walltime: float | None = None
    bins: Any = "tensorflow"
    counts: Any = None  # Deferred (counts[1548], stats[6]) for the 'tensorflow' bins
    nonfinite_tag: str | None = None
    kind = "histogram"


@dataclass
class HistogramRaw:
    tag: str
    min: float
    max: float
    num: float
    sum: float
    sum_squares: float
    bucket_limits: Sequence[float]
    bucket_counts: Sequence[float]
    step: int | None = None
    walltime: float | None = None
    kind = "histogram_raw"


@dataclass
class Image:
    """One image, or a batch of them when ``dataformats`` starts with N."""

    tag: str
    image: Any
    step: int | None = None
    walltime: float | None = None
    dataformats: str = "CHW"
    boxes: Any = None
    box_labels: Sequence[str] | None = None
    kind = "image"


@dataclass
class Audio:
    tag: str
    sound: Any
    step: int | None = None
    walltime: float | None = None
    sample_rate: int = 44100
    kind = "audio"


@dataclass
class Video:
    tag: str
    video: Any
    step: int | None = None
    walltime: float | None = None
    fps: int = 4
    kind = "video"


@dataclass
class Mesh:
    tag: str
    vertices: Any
    colors: Any = None
    faces: Any = None
    config: Mapping[str, Any] | None = None
    step: int | None = None
    walltime: float | None = None
    kind = "mesh"


@dataclass
class Figure:
    """A matplotlib Figure, or a zero-argument callable that builds one on the writer thread."""

    tag: str
    figure: Any
    step: int | None = None
    walltime: float | None = None
    kind = "figure"


@dataclass
class Text:
    tag: str
    text: str
    step: int | None = None
    walltime: float | None = None
    kind = "text"


@dataclass
class PRCurve:
    """A precision-recall curve: ``data`` is ``[6, T]`` (tp, fp, tn, fn, precision, recall),
    or a Deferred ``[2, T]`` of bucket counts that the writer thread turns into it."""

    tag: str
    data: Any
    step: int | None = None
    walltime: float | None = None
    num_thresholds: int = 127
    kind = "pr_curve"


@dataclass
class Graph:
    """A TensorBoard ``GraphDef`` protobuf (or a zero-argument callable that builds one)."""

    graph_def: Any
    walltime: float | None = None
    tag: str = "graph"
    step: int | None = None
    kind = "graph"


@dataclass
class Embedding:
    mat: Any
    metadata: Sequence[Any] | None = None
    label_img: Any = None
    step: int | None = None
    tag: str = "default"
    metadata_header: Sequence[str] | None = None
    walltime: float | None = None
    kind = "embedding"


@dataclass
class HParams:
    hparams: Mapping[str, Any]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    step: int | None = None
    walltime: float | None = None
    write_scalars: bool = True
    tag: str = "hparams"
    kind = "hparams"


Record = (Scalar | Scalars | CustomScalars | Histogram | HistogramRaw | Image | Audio | Video | Mesh | Figure
          | Text | PRCurve | Graph | Embedding | HParams)
