"""Parity with ``torch.utils.tensorboard.SummaryWriter``: the calls PyTorch's own ``test/test_tensorboard.py`` makes,
replayed through SummaryWriter and through looptrack's ``TensorBoardWriter`` into two log dirs, read back with
TensorBoard's reader and compared.

One case per call of that file (pytorch/pytorch ``test/test_tensorboard.py``, read at commit 017943b70f69): its
``SummaryWriter.add_*`` calls, its ``summary.<kind>(...)`` calls as the ``add_<kind>`` call that makes them
(``summary.image(..., dataformats="HW")`` is ``add_image(..., dataformats="HW")``, ``tensor_proto(...)`` is
``add_tensor(...)``), and the inputs of its ``make_np``/``convert_to_HWC``/``_prepare_video`` tests as the call they
feed (a NumPy scalar to ``add_scalar``, an HW image to ``add_image``, a video to ``add_video``).

Per case, both log dirs are read with ``EventMultiplexer`` (every event kept, every sub-run) and compared: the
runs; per run the tags of each kind, graph presence, the summary metadata (plugin and content) of each tag; per
tag the steps and the decoded values (scalars; histograms' min, max, num, sum, sum_squares, bucket limits and
counts; images' width, height and decoded pixels, since PNG bytes may differ in compression only; audio; tensors:
text, PR curves within float error, meshes, new-style scalars, ``add_tensor``), and every other file (the
projector's config, TSVs and sprite as pixels). Wall times are compared only where the call gives one.

Kinds of case (``SUMMARY`` at the end counts them):

* SAME: looptrack must write what SummaryWriter writes.
* DELIBERATE: looptrack differs on purpose; the reason is documented in the case, and what can be compared is
  (after the documented normalisation, or against the SummaryWriter call that writes what looptrack should).
* RAISES: SummaryWriter raises (as torch's test expects); looptrack must write nothing for the call, raising or
  reporting it.

Before looptrack had ``max_bins``, ``new_style``, ``tensor``, ``graph(model, input)``, lists of figures and
``close=``, 27 of these cases failed; all pass now.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from parity_calls import (  # noqa: E402
    Call,
    Logdir,
    call,
    compare,
    figures_in,
    graph_diff,
    merge_hparams_runs,
    not_expressible,
    open_states,
    read_logdir,
    replay,
)
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from trackers.writers.sinks.tensorboard import TensorBoardWriter  # noqa: E402

SAME, DELIBERATE, RAISES = "same", "deliberate", "raises"

HPARAMS_RUN_NAME = (
    "DELIBERATE: looptrack writes hparams into the run itself; SummaryWriter.add_hparams opens a new run "
    "<log_dir>/<time.time()> for them (its metrics as scalars too). The content is compared after folding "
    "that run into its parent; the run name is the difference"
)
FX_GRAPH = (
    "DELIBERATE: looptrack traces the graph with torch.fx (torch.jit.trace is deprecated), so node names and op "
    "names differ (module paths and module types, not JIT scopes and aten ops) and no 'step1' RunMetadata (JIT "
    "profile) is written. Compared loosely: both have a graph, both show every leaf module of the model that "
    "holds parameters, and (for the test's own small models) the same ops outside modules"
)
FX_DICT_OUTPUT = (
    "DELIBERATE: torch.jit.trace(strict=True) refuses a model returning a dict; torch.fx has no strict mode and "
    "traces it, so looptrack writes the graph add_graph(..., use_strict_trace=False) writes (compared loosely, "
    "see the fx graph cases)"
)
LIST_HISTOGRAM = (
    "DELIBERATE: looptrack bins a Python list like the array np.asarray makes of it; SummaryWriter's make_np "
    "raises NotImplementedError for a list. Compared with add_histogram of that array"
)


@dataclass(frozen=True)
class Case:
    id: str
    source: str  # the test in pytorch's test/test_tensorboard.py the call comes from
    calls: Callable[[], list[Call]]  # fresh inputs at each call, the same each time (seeded)
    kind: str = SAME
    why: str = ""  # DELIBERATE: the documented reason
    reference: Callable[[], list[Call]] | None = None  # DELIBERATE: what SummaryWriter is given instead
    torch_raises: bool = False  # torch's test expects SummaryWriter to raise on these calls
    graph: str = ""  # "loose": compare graphs loosely (fx vs JIT); "loose+ops": and the ops outside modules
    pathlib: bool = False  # log dirs given as pathlib.Path, as test_pathlib does
    needs: str = ""  # a module the case needs ("moviepy")
    slow: bool = False


def tensor_N(shape: tuple[int, ...], dtype: Any = float) -> np.ndarray:
    """As torch's test: 0, 1, 2, ... in ``shape``."""
    return np.arange(np.prod(shape), dtype=dtype).reshape(shape)


# ------------------------------------------------------------------------------------------ the test's models


class MyLinear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l = torch.nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l(x)


class InnerNNSquential(torch.nn.Module):
    def __init__(self, dim1: int, dim2: int) -> None:
        super().__init__()
        self.inner_nn_squential = torch.nn.Sequential(torch.nn.Linear(dim1, dim2), torch.nn.Linear(dim2, dim1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner_nn_squential(x)


class OuterNNSquential(torch.nn.Module):
    def __init__(self, dim1: int = 3, dim2: int = 4, depth: int = 2) -> None:
        super().__init__()
        self.outer_nn_squential = torch.nn.Sequential(*[InnerNNSquential(dim1, dim2) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer_nn_squential(x)


class ModelDict(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l = torch.nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.l(x)}


class MyMLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_len = 1 * 28 * 28
        self.fc1 = torch.nn.Linear(self.input_len, 1200)
        self.fc2 = torch.nn.Linear(1200, 1200)
        self.fc3 = torch.nn.Linear(1200, 10)

    def forward(self, x: torch.Tensor, update_batch_stats: bool = True) -> torch.Tensor:
        h = torch.nn.functional.relu(self.fc1(x.view(-1, self.input_len)))
        h = self.fc2(h)
        h = torch.nn.functional.relu(h)
        return self.fc3(h)


# ------------------------------------------------------------------------------------------ the test's inputs

TRUE_POSITIVE_COUNTS = [75, 64, 21, 5, 0]
FALSE_POSITIVE_COUNTS = [150, 105, 18, 0, 0]
TRUE_NEGATIVE_COUNTS = [0, 45, 132, 150, 150]
FALSE_NEGATIVE_COUNTS = [0, 11, 54, 70, 75]
PRECISION = [0.3333333, 0.3786982, 0.5384616, 1.0, 0.0]
RECALL = [1.0, 0.8533334, 0.28, 0.0666667, 0.0]


def mesh_arrays() -> dict[str, np.ndarray]:
    return {
        "vertices": np.array([[[1, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, -1]]], dtype=float),
        "colors": np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 255]]], dtype=int),
        "faces": np.array([[[0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 3, 2]]], dtype=int),
    }


def histogram_raw_float() -> list[Call]:
    num = 50
    floats = torch.rand((num,)).numpy()
    counts, limits = np.histogram(floats, [0.0, 0.25, 0.5, 0.75, 1.0])
    return [
        call(
            "add_histogram_raw",
            "float histogram raw",
            min=floats.min().item(),
            max=floats.max().item(),
            num=num,
            sum=floats.sum().item(),
            sum_squares=floats.dot(floats).item(),
            bucket_limits=limits[1:].tolist(),
            bucket_counts=counts.tolist(),
        )
    ]


def histogram_raw_int() -> list[Call]:
    num = 50
    ints = torch.randint(0, 100, (num,)).numpy()
    counts, limits = np.histogram(ints, [0, 25, 50, 75, 100])
    return [
        call(
            "add_histogram_raw",
            "int histogram raw",
            min=ints.min().item(),
            max=ints.max().item(),
            num=num,
            sum=ints.sum().item(),
            sum_squares=ints.dot(ints).item(),
            bucket_limits=limits[1:].tolist(),
            bucket_counts=counts.tolist(),
        )
    ]


def histogram_raw_histc() -> list[Call]:
    ints = torch.tensor(range(100)).float()
    counts = torch.histc(ints, bins=100, min=0, max=99)
    return [
        call(
            "add_histogram_raw",
            "int histogram raw",
            min=ints.min().item(),
            max=ints.max().item(),
            num=50,
            sum=ints.sum().item(),
            sum_squares=ints.dot(ints).item(),
            bucket_limits=torch.tensor(range(100)).tolist(),
            bucket_counts=counts.tolist(),
        )
    ]


def embedding_inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    features = torch.tensor([[1.0, 2.0, 3.0], [5.0, 4.0, 1.0], [3.0, 7.0, 7.0]])
    return features, torch.tensor([33.0, 44.0, 55.0]), torch.zeros((3, 3, 5, 5), dtype=dtype)


def embedding_plain(dtype: torch.dtype) -> list[Call]:
    features, labels, images = embedding_inputs(dtype)
    return [call("add_embedding", features, metadata=labels, label_img=images, global_step=2)]


def embedding_with_header(dtype: torch.dtype) -> list[Call]:
    features, labels, images = embedding_inputs(dtype)
    metadata = list(zip(labels, ["test"] * 2 + ["train"] * 2))
    return [
        call(
            "add_embedding",
            features,
            metadata=metadata,
            label_img=images,
            metadata_header=["digit", "dataset"],
            global_step=2,
        )
    ]


def circles_figure() -> Any:
    figure, axes = plt.figure(), plt.gca()
    axes.add_patch(plt.Circle((0.2, 0.5), 0.2, color="r"))
    axes.add_patch(plt.Circle((0.8, 0.5), 0.2, color="g"))
    plt.axis("scaled")
    plt.tight_layout()
    return figure


def plot_figures() -> list[Any]:
    figures = []
    for i in range(5):
        figure = plt.figure()
        plt.plot([i * 1, i * 2, i * 3], label="Plot " + str(i))
        plt.xlabel("X")
        plt.xlabel("Y")
        plt.legend()
        plt.tight_layout()
        figures.append(figure)
    return figures


def _one(name: str, *args: Any, **kwargs: Any) -> Callable[[], list[Call]]:
    """A case's calls: one call, its inputs built fresh each time (``args`` that are callables are called)."""

    def make() -> list[Call]:
        built = [a() if callable(a) and not isinstance(a, torch.nn.Module) else a for a in args]
        return [call(name, *built, **{k: v() if callable(v) else v for k, v in kwargs.items()})]

    return make


def _graph(model: Callable[[], torch.nn.Module], inputs: Callable[[], Any], **kwargs: Any) -> Callable[[], list[Call]]:
    return lambda: [call("add_graph", model(), inputs(), **kwargs)]


VIDEO_SHAPES = [(16, 30, 3, 28, 28), (36, 30, 3, 28, 28), (19, 29, 3, 23, 19), (3, 3, 3, 3, 3)]
# torch's smoke test also traces alexnet, resnet152, densenet121 and four VGGs: the same code path, minutes more here
TORCHVISION_MODELS = ["resnet34", "mobilenet_v2"]


def _torchvision(name: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import torchvision

        return getattr(torchvision.models, name)()

    return build


# ------------------------------------------------------------------------------------------------ the cases

NUMPY = "TestTensorBoardPyTorchNumpy"
UTILS = "TestTensorBoardUtils"
WRITER = "TestTensorBoardWriter.test_writer"
SUMMARY_TESTS = "TestTensorBoardSummary"
GRAPH = "TestTensorBoardPytorchGraph"
FIGURE = "TestTensorBoardFigure"
PROTO = "TestTensorProtoSummary"

# torch's test_video passes one-channel videos, which moviepy 1.x refuses ("Can't write images with one color
# channel"): torch's test only passes where moviepy is missing and add_video writes nothing. Both writers raise here.
ONE_CHANNEL_VIDEO: dict[str, Any] = {"kind": RAISES, "torch_raises": True}

CASES: list[Case] = [
    # -- TestTensorBoardPyTorchNumpy
    Case(
        "pytorch_write-variable_scalar",
        f"{NUMPY}.test_pytorch_write",
        _one("add_scalar", "scalar", lambda: torch.autograd.Variable(torch.rand(1)), 0),
    ),
    Case(
        "pytorch_histogram-float",
        f"{NUMPY}.test_pytorch_histogram",
        _one("add_histogram", "float histogram", lambda: torch.rand((50,))),
    ),
    Case(
        "pytorch_histogram-int",
        f"{NUMPY}.test_pytorch_histogram",
        _one("add_histogram", "int histogram", lambda: torch.randint(0, 100, (50,))),
    ),
    Case(
        "pytorch_histogram-bfloat16",
        f"{NUMPY}.test_pytorch_histogram",
        _one("add_histogram", "bfloat16 histogram", lambda: torch.rand(50, dtype=torch.bfloat16)),
    ),
    Case("pytorch_histogram_raw-float", f"{NUMPY}.test_pytorch_histogram_raw", histogram_raw_float),
    Case("pytorch_histogram_raw-int", f"{NUMPY}.test_pytorch_histogram_raw", histogram_raw_int),
    Case("pytorch_histogram_raw-histc", f"{NUMPY}.test_pytorch_histogram_raw", histogram_raw_histc),
    # -- make_np of Python and NumPy scalars (test_pytorch_np, TestTensorBoardNumpy.test_scalar) as add_scalar
    Case("make_np-python_int", f"{NUMPY}.test_pytorch_np", _one("add_scalar", "python int", 0, 0)),
    Case("make_np-python_float", f"{NUMPY}.test_pytorch_np", _one("add_scalar", "python float", 0.1, 0)),
    Case("make_np-float", "TestTensorBoardNumpy.test_scalar", _one("add_scalar", "float", 1.1, 0)),
    Case("make_np-uint64_max", "TestTensorBoardNumpy.test_scalar", _one("add_scalar", "uint64 max", 1 << 64 - 1, 0)),
    Case(
        "make_np-np_float16",
        "TestTensorBoardNumpy.test_scalar",
        _one("add_scalar", "np.float16", np.float16(1.00000087), 0),
    ),
    Case(
        "make_np-np_longdouble",
        "TestTensorBoardNumpy.test_scalar",
        _one("add_scalar", "np.float128", np.longdouble(1.00008 + 9), 0),
    ),
    Case(
        "make_np-np_int64",
        "TestTensorBoardNumpy.test_scalar",
        _one("add_scalar", "np.int64", np.int64(100000000000), 0),
    ),
    Case(
        "make_np-dict_raises",
        "TestTensorBoardNumpy.test_pytorch_np_expect_fail",
        _one("add_scalar", "dict", {"pytorch": 1.0}, 0),
        kind=RAISES,
        torch_raises=True,
    ),
    # -- TestTensorBoardUtils: the images and videos its conversions prepare
    Case(
        "to_HWC-chw",
        f"{UTILS}.test_to_HWC",
        _one(
            "add_image",
            "chw",
            lambda: np.random.randint(0, 256, size=(3, 32, 32), dtype=np.uint8),
            0,
            dataformats="chw",
        ),
    ),
    Case(
        "to_HWC-nchw",
        f"{UTILS}.test_to_HWC",
        _one(
            "add_images",
            "nchw",
            lambda: np.random.randint(0, 256, size=(16, 3, 32, 32), dtype=np.uint8),
            0,
            dataformats="nchw",
        ),
    ),
    Case(
        "to_HWC-hw",
        f"{UTILS}.test_to_HWC",
        _one("add_image", "hw", lambda: np.random.randint(0, 256, size=(32, 32), dtype=np.uint8), 0, dataformats="hw"),
    ),
    Case(
        "to_HWC-uint8_tensor_nchw",
        f"{UTILS}.test_convert_to_HWC_dtype_remains_same",
        _one("add_images", "uint8", lambda: torch.tensor([[[[1, 2, 3], [4, 5, 6]]]], dtype=torch.uint8), 0),
    ),
    *[
        Case(
            f"prepare_video-{'x'.join(map(str, shape))}",
            f"{UTILS}.test_prepare_video",
            _one("add_video", "video", lambda shape=shape: np.random.random(shape), 0),
            needs="moviepy",
            slow=shape[0] > 4,
        )
        for shape in VIDEO_SHAPES
    ],
    Case(
        "numpy_vid_uint8",
        f"{UTILS}.test_numpy_vid_uint8",
        _one("add_video", "video", lambda: np.random.randint(0, 256, (16, 30, 3, 28, 28)).astype(np.uint8), 0),
        needs="moviepy",
        slow=True,
    ),
    # -- TestTensorBoardWriter.test_writer
    Case(
        "writer-hparams",
        WRITER,
        _one("add_hparams", {"lr": 0.1, "bsize": 1}, {"hparam/accuracy": 10, "hparam/loss": 10}),
        kind=DELIBERATE,
        why=HPARAMS_RUN_NAME,
    ),
    Case("writer-scalar_systemtime", WRITER, _one("add_scalar", "data/scalar_systemtime", 0.1, 0)),
    Case("writer-scalar_walltime_0", WRITER, _one("add_scalar", "data/scalar_customtime", 0.2, 0, walltime=0)),
    Case("writer-scalar_new_style", WRITER, _one("add_scalar", "data/new_style", 0.2, 0, new_style=True)),
    Case(
        "writer-scalars",
        WRITER,
        _one(
            "add_scalars",
            "data/scalar_group",
            {"xsinx": 0 * np.sin(0), "xcosx": 0 * np.cos(0), "arctanx": np.arctan(0)},
            0,
        ),
    ),
    Case("writer-images", WRITER, _one("add_images", "Image", lambda: np.zeros((32, 3, 64, 64)), 0)),
    Case(
        "writer-image_with_boxes",
        WRITER,
        _one(
            "add_image_with_boxes",
            "imagebox",
            lambda: np.zeros((3, 64, 64)),
            lambda: np.array([[10, 10, 40, 40], [40, 40, 60, 60]]),
            0,
        ),
    ),
    Case("writer-audio", WRITER, _one("add_audio", "myAudio", lambda: np.zeros(44100 * 2), 0)),
    Case(
        "writer-video",
        WRITER,
        _one("add_video", "myVideo", lambda: np.random.rand(16, 48, 1, 28, 28).astype(np.float32), 0),
        needs="moviepy",
        slow=True,
        **ONE_CHANNEL_VIDEO,
    ),
    Case("writer-text", WRITER, _one("add_text", "Text", "text logged at step:0", 0)),
    Case("writer-markdown_text", WRITER, _one("add_text", "markdown Text", "a|b\n-|-\nc|d", 0)),
    Case("writer-histogram_numpy", WRITER, _one("add_histogram", "hist", lambda: np.random.rand(100, 100), 0)),
    Case(
        "writer-pr_curve",
        WRITER,
        lambda: [call("add_pr_curve", "xoxo", np.random.randint(2, size=100), np.random.rand(100), 0)],
    ),
    Case(
        "writer-pr_curve_raw",
        WRITER,
        _one(
            "add_pr_curve_raw",
            "prcurve with raw data",
            TRUE_POSITIVE_COUNTS,
            FALSE_POSITIVE_COUNTS,
            TRUE_NEGATIVE_COUNTS,
            FALSE_NEGATIVE_COUNTS,
            PRECISION,
            RECALL,
            0,
        ),
    ),
    Case("writer-mesh", WRITER, lambda: [call("add_mesh", "my_mesh", **mesh_arrays())]),
    # -- TestTensorBoardSummaryWriter
    Case(
        "summary_writer_ctx-scalar",
        "TestTensorBoardSummaryWriter.test_summary_writer_ctx",
        _one("add_scalar", "test", 1),
    ),
    Case("pathlib-scalar", "TestTensorBoardSummaryWriter.test_pathlib", _one("add_scalar", "test", 1), pathlib=True),
    # -- TestTensorBoardEmbedding
    Case(
        "embedding",
        "TestTensorBoardEmbedding.test_embedding",
        lambda: embedding_plain(torch.float32),
    ),
    Case("embedding-header", "TestTensorBoardEmbedding.test_embedding", lambda: embedding_with_header(torch.float32)),
    Case(
        "embedding_64",
        "TestTensorBoardEmbedding.test_embedding_64",
        lambda: embedding_plain(torch.float64),
    ),
    Case(
        "embedding_64-header",
        "TestTensorBoardEmbedding.test_embedding_64",
        lambda: embedding_with_header(torch.float64),
    ),
    # -- TestTensorBoardSummary
    Case(
        "uint8_image",
        f"{SUMMARY_TESTS}.test_uint8_image",
        _one("add_image", "uint8", lambda: np.random.randint(0, 256, size=(3, 32, 32), dtype=np.uint8), 0),
    ),
    Case(
        "float32_image",
        f"{SUMMARY_TESTS}.test_float32_image",
        _one("add_image", "float32", lambda: np.random.rand(3, 32, 32).astype(np.float32), 0),
    ),
    Case(
        "list_input-histogram",
        f"{SUMMARY_TESTS}.test_list_input",
        _one("add_histogram", "dummy", [1, 3, 4, 5, 6], bins="tensorflow"),
        kind=DELIBERATE,
        why=LIST_HISTOGRAM,
        reference=_one("add_histogram", "dummy", np.asarray([1, 3, 4, 5, 6]), bins="tensorflow"),
        torch_raises=True,
    ),
    Case(
        "empty_input-histogram_raises",
        f"{SUMMARY_TESTS}.test_empty_input",
        _one("add_histogram", "dummy", lambda: np.ndarray(0), bins="tensorflow"),
        kind=RAISES,
        torch_raises=True,
    ),
    Case(
        "image_with_boxes",
        f"{SUMMARY_TESTS}.test_image_with_boxes",
        _one("add_image_with_boxes", "dummy", lambda: tensor_N((3, 32, 32)), lambda: np.array([[10, 10, 40, 40]])),
    ),
    Case(
        "image_with_one_channel-CHW",
        f"{SUMMARY_TESTS}.test_image_with_one_channel",
        _one("add_image", "dummy", lambda: tensor_N((1, 8, 8)), dataformats="CHW"),
    ),
    Case(
        "image_with_one_channel_batched-NCHW",
        f"{SUMMARY_TESTS}.test_image_with_one_channel_batched",
        _one("add_image", "dummy", lambda: tensor_N((2, 1, 8, 8)), dataformats="NCHW"),
    ),
    Case(
        "image_with_3_channel_batched-NCHW",
        f"{SUMMARY_TESTS}.test_image_with_3_channel_batched",
        _one("add_image", "dummy", lambda: tensor_N((2, 3, 8, 8)), dataformats="NCHW"),
    ),
    Case(
        "image_without_channel-HW",
        f"{SUMMARY_TESTS}.test_image_without_channel",
        _one("add_image", "dummy", lambda: tensor_N((8, 8)), dataformats="HW"),
    ),
    Case(
        "video-tensor_N",
        f"{SUMMARY_TESTS}.test_video",
        _one("add_video", "dummy", lambda: tensor_N((4, 3, 1, 8, 8))),
        needs="moviepy",
        **ONE_CHANNEL_VIDEO,
    ),
    Case(
        "video-16x48",
        f"{SUMMARY_TESTS}.test_video",
        _one("add_video", "dummy", lambda: np.random.rand(16, 48, 1, 28, 28)),
        needs="moviepy",
        slow=True,
        **ONE_CHANNEL_VIDEO,
    ),
    Case(
        "video-20x7",
        f"{SUMMARY_TESTS}.test_video",
        _one("add_video", "dummy", lambda: np.random.rand(20, 7, 1, 8, 8)),
        needs="moviepy",
        **ONE_CHANNEL_VIDEO,
    ),
    Case("audio", f"{SUMMARY_TESTS}.test_audio", _one("add_audio", "dummy", lambda: tensor_N((42,)))),
    Case("text", f"{SUMMARY_TESTS}.test_text", _one("add_text", "dummy", "text 123")),
    *[
        Case(
            f"histogram_{bins}-max_bins",
            f"{SUMMARY_TESTS}.test_histogram_{bins}",
            _one("add_histogram", "dummy", lambda: tensor_N((1024,)), bins=bins, max_bins=5),
        )
        for bins in ("auto", "fd", "doane")
    ],
    Case(
        "custom_scalars",
        f"{SUMMARY_TESTS}.test_custom_scalars",
        _one(
            "add_custom_scalars",
            {
                "Taiwan": {"twse": ["Multiline", ["twse/0050", "twse/2330"]]},
                "USA": {
                    "dow": ["Margin", ["dow/aaa", "dow/bbb", "dow/ccc"]],
                    "nasdaq": ["Margin", ["nasdaq/aaa", "nasdaq/bbb", "nasdaq/ccc"]],
                },
            },
        ),
    ),
    Case(
        "mesh", f"{SUMMARY_TESTS}.test_mesh", lambda: [call("add_mesh", "my_mesh", **mesh_arrays(), config_dict=None)]
    ),
    Case(
        "scalar_new_style",
        f"{SUMMARY_TESTS}.test_scalar_new_style",
        _one("add_scalar", "test_scalar", 1.0, new_style=True),
    ),
    Case(
        "scalar_new_style-vector_raises",
        f"{SUMMARY_TESTS}.test_scalar_new_style",
        _one("add_scalar", "test_scalar2", lambda: torch.Tensor([1, 2, 3]), new_style=True),
        kind=RAISES,
        torch_raises=True,
    ),
    # -- TestTensorBoardPytorchGraph
    Case(
        "pytorch_graph",
        f"{GRAPH}.test_pytorch_graph",
        _graph(MyLinear, lambda: (torch.zeros(1, 3),)),
        kind=DELIBERATE,
        why=FX_GRAPH,
        graph="loose+ops",
    ),
    Case(
        "nested_nn_squential",
        f"{GRAPH}.test_nested_nn_squential",
        _graph(OuterNNSquential, lambda: torch.randn(2, 3)),
        kind=DELIBERATE,
        why=FX_GRAPH,
        graph="loose+ops",
    ),
    Case(
        "graph_dict_input-model",
        f"{GRAPH}.test_pytorch_graph_dict_input",
        _graph(MyLinear, lambda: torch.zeros(1, 3)),
        kind=DELIBERATE,
        why=FX_GRAPH,
        graph="loose+ops",
    ),
    Case(
        "graph_dict_input-model_strict",
        f"{GRAPH}.test_pytorch_graph_dict_input",
        _graph(MyLinear, lambda: torch.zeros(1, 3), use_strict_trace=True),
        kind=DELIBERATE,
        why=FX_GRAPH,
        graph="loose+ops",
    ),
    Case(
        "graph_dict_input-dict_strict",
        f"{GRAPH}.test_pytorch_graph_dict_input",
        _graph(ModelDict, lambda: torch.zeros(1, 3), use_strict_trace=True),
        kind=DELIBERATE,
        why=FX_DICT_OUTPUT,
        reference=_graph(ModelDict, lambda: torch.zeros(1, 3), use_strict_trace=False),
        torch_raises=True,
        graph="loose+ops",
    ),
    Case(
        "graph_dict_input-dict_not_strict",
        f"{GRAPH}.test_pytorch_graph_dict_input",
        _graph(ModelDict, lambda: torch.zeros(1, 3), use_strict_trace=False),
        kind=DELIBERATE,
        why=FX_GRAPH,
        graph="loose+ops",
    ),
    Case(
        "mlp_graph",
        f"{GRAPH}.test_mlp_graph",
        _graph(MyMLP, lambda: (torch.zeros(2, 1, 28, 28),)),
        kind=DELIBERATE,
        why=FX_GRAPH,
        graph="loose+ops",
    ),
    Case(
        "wrong_input_size-graph_raises",
        f"{GRAPH}.test_wrong_input_size",
        _graph(lambda: torch.nn.Linear(3, 5), lambda: torch.rand(1, 9)),
        kind=RAISES,
        torch_raises=True,
    ),
    *[
        Case(
            f"torchvision_smoke-{name}",
            f"{GRAPH}.test_torchvision_smoke",
            _graph(_torchvision(name), lambda: torch.zeros(2, 3, 224, 224)),
            kind=DELIBERATE,
            why=FX_GRAPH,
            graph="loose",
            slow=True,
        )
        for name in TORCHVISION_MODELS
    ],
    # -- TestTensorBoardFigure
    Case(
        "figure-close_false",
        f"{FIGURE}.test_figure",
        lambda: [call("add_figure", "add_figure/figure", circles_figure(), 0, close=False)],
    ),
    Case(
        "figure-close_default",
        f"{FIGURE}.test_figure",
        lambda: [call("add_figure", "add_figure/figure", circles_figure(), 1)],
    ),
    Case(
        "figure_list-close_false",
        f"{FIGURE}.test_figure_list",
        lambda: [call("add_figure", "add_figure/figure_list", plot_figures(), 0, close=False)],
    ),
    Case(
        "figure_list-close_default",
        f"{FIGURE}.test_figure_list",
        lambda: [call("add_figure", "add_figure/figure_list", plot_figures(), 1)],
    ),
    # -- TestTensorProtoSummary: tensor_proto is what add_tensor writes
    Case(
        "tensor_proto-half",
        f"{PROTO}.test_half_tensor_proto",
        _one("add_tensor", "dummy", lambda: torch.tensor([1.0, 2.0, 3.0], dtype=torch.float16)),
    ),
    Case(
        "tensor_proto-bfloat16",
        f"{PROTO}.test_half_tensor_proto",
        _one("add_tensor", "dummy", lambda: torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16)),
    ),
    Case(
        "tensor_proto-float",
        f"{PROTO}.test_float_tensor_proto",
        _one("add_tensor", "dummy", lambda: torch.tensor([1.0, 2.0, 3.0])),
    ),
    Case(
        "tensor_proto-int",
        f"{PROTO}.test_int_tensor_proto",
        _one("add_tensor", "dummy", lambda: torch.tensor([1, 2, 3], dtype=torch.int32)),
    ),
    Case(
        "tensor_proto-scalar",
        f"{PROTO}.test_scalar_tensor_proto",
        _one("add_tensor", "dummy", lambda: torch.tensor(0.1)),
    ),
    Case(
        "tensor_proto-complex",
        f"{PROTO}.test_complex_tensor_proto",
        _one("add_tensor", "dummy", lambda: torch.complex(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]))),
    ),
    Case("tensor_proto-empty", f"{PROTO}.test_empty_tensor_proto", _one("add_tensor", "dummy", lambda: torch.empty(0))),
]


# ------------------------------------------------------------------------------------------------ the running


def _seeded(make: Callable[[], list[Call]]) -> list[Call]:
    """The case's calls with fresh inputs, the same for each writer (the random ones seeded alike)."""
    np.random.seed(0)
    torch.manual_seed(0)
    return make()


def _explicit_walltime_tags(calls: list[Call]) -> set[str]:
    return {str(c.args[0]) for c in calls if c.kwargs.get("walltime") is not None and c.args}


@dataclass
class Replayed:
    logdir: Logdir
    errors: list[BaseException | None]  # per call
    close_error: BaseException | None
    figures_open: list[bool]


def _with_summary_writer(calls: list[Call], log_dir: Path, pathlib: bool) -> Replayed:
    writer = SummaryWriter(log_dir if pathlib else str(log_dir))
    errors: list[BaseException | None] = []
    for c in calls:
        try:
            getattr(writer, c.name)(*c.args, **c.kwargs)
            errors.append(None)
        except Exception as error:
            errors.append(error)
    writer.close()
    return Replayed(read_logdir(log_dir), errors, None, open_states(figures_in(calls)))


def _with_looptrack(calls: list[Call], log_dir: Path, pathlib: bool) -> Replayed:
    # strict: a failed write raises (at the call or at close) instead of becoming a warning, so the failure is shown
    writer = TensorBoardWriter(log_dir if pathlib else str(log_dir), strict=True)
    errors: list[BaseException | None] = []
    for c in calls:
        try:
            replay(c.name, c.args, c.kwargs, writer)
            errors.append(None)
        except Exception as error:
            errors.append(error)
    close_error = None
    try:
        writer.close()
    except Exception as error:
        close_error = error
    return Replayed(read_logdir(log_dir), errors, close_error, open_states(figures_in(calls)))


def _written(logdir: Logdir) -> bool:
    """Whether a log dir holds anything but empty runs."""
    runs = logdir.runs.values()
    return bool(logdir.files) or any(run.graph is not None or any(run.tags.values()) for run in runs)


def _line(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _params() -> list[Any]:
    params = []
    for case in CASES:
        marks: list[Any] = [pytest.mark.slow] if case.slow else []
        if case.needs and importlib.util.find_spec(case.needs) is None:
            marks.append(pytest.mark.skip(reason=f"{case.needs} is not installed (SummaryWriter.add_video needs it)"))
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_parity(case: Case, tmp_path: Path) -> None:
    try:
        _check(case, tmp_path)
    finally:
        plt.close("all")


def _check(case: Case, tmp_path: Path) -> None:
    calls = _seeded(case.calls)
    if case.reference is not None:  # torch's own behaviour on the call itself, as its test expects it
        original = _with_summary_writer(_seeded(case.calls), tmp_path / "summary_writer_as_called", case.pathlib)
        raised = [e for e in original.errors if e is not None]
        assert bool(raised) == case.torch_raises, (
            f"SummaryWriter raised {raised} (torch's test expects raising: {case.torch_raises})"
        )
    reference = _with_summary_writer(_seeded(case.reference or case.calls), tmp_path / "summary_writer", case.pathlib)
    if case.kind != RAISES:  # not vacuous: SummaryWriter wrote something to compare with
        assert _written(reference.logdir), f"SummaryWriter wrote nothing for {[str(c) for c in calls]}"
    if case.reference is None:
        raised = [e for e in reference.errors if e is not None]
        assert bool(raised) == case.torch_raises, (
            f"SummaryWriter raised {raised} (torch's test expects raising: {case.torch_raises})"
        )
    ours = _with_looptrack(calls, tmp_path / "looptrack", case.pathlib)

    problems = []
    for c, error in zip(calls, ours.errors):
        if error is None:
            continue
        if not_expressible(error):
            problems.append(f"{c} cannot be expressed: {_line(error)}")
        elif case.kind != RAISES:
            problems.append(f"{c} raised {_line(error)} where SummaryWriter writes")
    if ours.close_error is not None and case.kind != RAISES:
        problems.append(f"closing the writer raised {_line(ours.close_error)}")
    assert not problems, "\n".join(problems)

    reference_logdir, _ = merge_hparams_runs(reference.logdir)  # HPARAMS_RUN_NAME: looptrack writes them in the run
    diffs = compare(
        reference_logdir,
        ours.logdir,
        walltime_tags=_explicit_walltime_tags(calls),
        compare_graphs=not case.graph,
        run_metadata=not case.graph,  # FX_GRAPH: no JIT profile
    )
    if case.graph:
        model = calls[0].args[0]
        for name in sorted(set(reference_logdir.runs) & set(ours.logdir.runs)):
            ref_graph, our_graph = reference_logdir.runs[name].graph, ours.logdir.runs[name].graph
            if ref_graph is not None and our_graph is not None:
                diffs += graph_diff(ref_graph, our_graph, model, functional_ops=case.graph == "loose+ops")
    if reference.figures_open != ours.figures_open:
        diffs.append(
            f"figures left open after the call: SummaryWriter {reference.figures_open}, looptrack {ours.figures_open}"
        )
    assert not diffs, "\n".join(diffs[:20])


# ------------------------------------------------------------------------------------------------ the summary

SUMMARY: dict[str, list[str]] = {
    kind: [case.id for case in CASES if case.kind == kind] for kind in (SAME, DELIBERATE, RAISES)
}
"""Case ids by kind: ``same`` (identical output), ``deliberate`` (a documented difference, ``Case.why``) and
``raises`` (SummaryWriter raises; looptrack writes nothing). ``len(SUMMARY["same"])`` and so on are the counts."""


def test_summary_counts_every_case_once() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert sorted(sum(SUMMARY.values(), [])) == sorted(ids)
    for case in CASES:
        assert (case.kind == DELIBERATE) == case.why.startswith("DELIBERATE:"), case.id
        assert case.reference is None or case.kind == DELIBERATE, case.id


def test_replay_maps_positional_to_keyword() -> None:
    from parity_calls import looptrack_call

    values = "values"  # any object: passed on as it is
    assert looptrack_call("add_histogram", ("h", values, 3, "auto", 1.0, 5), {}) == (
        "histogram",
        ["h", values],
        {"step": 3, "bins": "auto", "walltime": 1.0, "max_bins": 5},
    )
    assert looptrack_call("add_mesh", ("m", values), {"config_dict": None, "global_step": 1}) == (
        "mesh",
        ["m", values],
        {"config": None, "step": 1},
    )
    assert looptrack_call("add_embedding", (values, None, None, 2), {"tag": "t"}) == (
        "embedding",
        [values],
        {"metadata": None, "label_img": None, "step": 2, "tag": "t"},
    )
    model = torch.nn.Linear(1, 1)
    assert looptrack_call("add_graph", (model, values), {"use_strict_trace": False}) == (
        "graph",
        [model, values],
        {"use_strict_trace": False},
    )
