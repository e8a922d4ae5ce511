"""Backend-neutral records: what a writer is asked to write, as plain data.

The training thread builds a record and hands it over; tensors in it are
snapshots (see :func:`snapshot`) so the loop may go on changing its own
tensors. On the writer thread, :func:`materialize` turns a snapshot into a CPU
tensor — the only place a device is read back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class DeviceSnapshot:
    """A copy of a device tensor on its way to host memory, with the event that says it arrived."""

    tensor: torch.Tensor
    ready: Any = None  # a torch.cuda.Event, or None when the copy is already usable

    def wait(self) -> torch.Tensor:
        if self.ready is not None:
            self.ready.synchronize()
        return self.tensor.cpu()


def snapshot(value: Any) -> Any:
    """Freeze ``value`` for the writer thread without waiting for the device.

    CUDA tensors start an asynchronous copy to host memory and record an event;
    CPU tensors are cloned (they are small, or the caller accepted the copy);
    anything else is returned as it is.
    """
    if not isinstance(value, torch.Tensor):
        return value
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
class Histogram:
    tag: str
    values: Any
    step: int | None = None
    walltime: float | None = None
    bins: str = "tensorflow"
    kind = "histogram"


@dataclass
class Image:
    tag: str
    image: Any
    step: int | None = None
    walltime: float | None = None
    dataformats: str = "CHW"
    kind = "image"


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
    tag: str
    labels: Any
    predictions: Any
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
    tag: str = "hparams"
    kind = "hparams"


Record = Scalar | Histogram | Image | Figure | Text | PRCurve | Graph | Embedding | HParams
RecordBuilder = Callable[[], Any]
