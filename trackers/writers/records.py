"""Backend-neutral records: what the front queues and what sinks receive, as plain data.

On the training thread a record holds snapshots (:mod:`trackers.writers.transfer`); on the writer thread
:mod:`trackers.writers.plain` turns it into plain values (floats, ndarrays, CPU tensors, protos) once, and every
sink receives that same record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Scalar:
    """One number. ``new_style`` writes it as a tensor (``add_scalar(new_style=True)``), in double precision
    with ``double_precision``."""

    tag: str
    value: Any
    step: int | None = None
    walltime: float | None = None
    source: str | None = None
    new_style: bool = False
    double_precision: bool = False
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
    max_bins: int | None = None
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
    """A matplotlib Figure or a ``PIL.Image``, or a zero-argument callable that builds one on the writer thread.

    Sinks receive it drawn: ``figure`` is the built object and ``image`` its HWC uint8 RGB pixels.
    """

    tag: str
    figure: Any
    step: int | None = None
    walltime: float | None = None
    image: Any = None
    kind = "figure"


@dataclass
class Tensor:
    """A whole tensor (``add_tensor``), for TensorBoard's tensor data."""

    tag: str
    tensor: Any
    step: int | None = None
    walltime: float | None = None
    kind = "tensor"


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
    """One session of TensorBoard's HParams tab: its hyper-parameters and the metrics they led to.

    ``run`` is None for the run itself, else the name of the sub-run the session goes to (one per trial of a sweep).
    """

    hparams: Mapping[str, Any]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    step: int | None = None
    walltime: float | None = None
    write_scalars: bool = True
    tag: str = "hparams"
    run: str | None = None
    domain_discrete: Mapping[str, Sequence[Any]] | None = None
    kind = "hparams"


# everything the front queues and a sink may receive
Record = (
    Scalar
    | Scalars
    | CustomScalars
    | Histogram
    | HistogramRaw
    | Image
    | Audio
    | Video
    | Mesh
    | Figure
    | Tensor
    | Text
    | PRCurve
    | Graph
    | Embedding
    | HParams
)
