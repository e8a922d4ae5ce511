"""SummaryWriter calls replayed through looptrack's writer, and both log dirs read back with TensorBoard's reader.

Used by ``test_summarywriter_parity.py``: :func:`replay` maps one
``SummaryWriter.add_*`` call onto the looptrack writer's method (names drop
``add_``, ``global_step`` is ``step``), :func:`read_logdir` reads a log dir the
way TensorBoard does (``EventMultiplexer``, every event kept, plus the
projector's files) into plain values, and :func:`compare` lists what differs
between two such reads, one line each.
"""

from __future__ import annotations

import inspect
import io
import os
import re
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter

# ------------------------------------------------------------------------------------------------ the calls


@dataclass(frozen=True)
class Call:
    """One ``SummaryWriter`` call: ``Call("add_scalar", ("loss", 0.5, 3))``."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        shown = [_short(a) for a in self.args] + [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(shown)})"


def call(name: str, *args: Any, **kwargs: Any) -> Call:
    return Call(name, args, kwargs)


def _short(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 0:
        return f"<{type(value).__name__} {tuple(shape)} {getattr(value, 'dtype', '')}>"
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Route:
    """Where a SummaryWriter method goes: the looptrack method and how many leading arguments stay positional."""

    method: str
    positional: int
    rename: dict[str, str] = field(default_factory=dict)


ROUTES: dict[str, Route] = {
    "add_scalar": Route("scalar", 2),
    "add_scalars": Route("scalars", 2),
    "add_tensor": Route("tensor", 2),
    "add_histogram": Route("histogram", 2),
    "add_histogram_raw": Route("histogram_raw", 1),
    "add_image": Route("image", 2),
    "add_images": Route("images", 2),
    "add_image_with_boxes": Route("image_with_boxes", 3),
    "add_figure": Route("figure", 2),
    "add_video": Route("video", 2),
    "add_audio": Route("audio", 2),
    "add_text": Route("text", 2),
    # verbose and use_strict_trace are passed on: looptrack takes them, for its use_jit=True (torch.jit.trace as
    # SummaryWriter); by default it traces with torch.fx, which ignores them (see the DELIBERATE graph cases)
    "add_graph": Route("graph", 2),
    "add_embedding": Route("embedding", 1),
    "add_pr_curve": Route("pr_curve", 3),
    "add_pr_curve_raw": Route("pr_curve_raw", 7),
    "add_custom_scalars": Route("custom_scalars", 1),
    "add_mesh": Route("mesh", 2, rename={"config_dict": "config"}),
    "add_hparams": Route("hparams", 2),
}
RENAMED_EVERYWHERE = {"global_step": "step"}


def looptrack_call(
    call_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, list[Any], dict[str, Any]]:
    """``(method, args, kwargs)`` of the looptrack call that does what ``SummaryWriter.<call_name>(*args, **kwargs)``
    does. Only the arguments the call gives are passed on, so SummaryWriter's defaults are tested too."""
    if call_name == "add_custom_scalars_multilinechart":
        bound = _bind(call_name, args, kwargs)
        layout = {bound.get("category", "default"): {bound.get("title", "untitled"): ["Multiline", bound["tags"]]}}
        return "custom_scalars", [layout], {}
    if call_name == "add_custom_scalars_marginchart":
        bound = _bind(call_name, args, kwargs)
        layout = {bound.get("category", "default"): {bound.get("title", "untitled"): ["Margin", bound["tags"]]}}
        return "custom_scalars", [layout], {}
    route = ROUTES[call_name]
    bound = _bind(call_name, args, kwargs)
    names = list(bound)
    order = [p for p in inspect.signature(getattr(SummaryWriter, call_name)).parameters if p != "self"]
    positional: list[Any] = []
    for name in order[: route.positional]:
        if name not in bound:
            break
        positional.append(bound[name])
        names.remove(name)
    keywords = {route.rename.get(name, RENAMED_EVERYWHERE.get(name, name)): bound[name] for name in names}
    return route.method, positional, keywords


def replay(call_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], writer: Any) -> Any:
    """Make on looptrack's ``writer`` the call ``SummaryWriter.<call_name>(*args, **kwargs)``."""
    method, positional, keywords = looptrack_call(call_name, args, kwargs)
    return getattr(writer, method)(*positional, **keywords)


def _bind(call_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by SummaryWriter's parameter names (a wrong call raises TypeError, as SummaryWriter's)."""
    signature = inspect.signature(getattr(SummaryWriter, call_name))
    arguments = dict(signature.bind(None, *args, **kwargs).arguments)
    arguments.pop("self")
    return arguments


def not_expressible(error: BaseException) -> bool:
    """Whether looptrack refused the call's shape itself (a method or an argument it does not have)."""
    text = str(error)
    return isinstance(error, AttributeError) or (
        isinstance(error, TypeError)
        and ("unexpected keyword argument" in text or "positional argument" in text or "required" in text)
    )


# ------------------------------------------------------------------------------------------------ the reading

KINDS = ("scalars", "histograms", "images", "audio", "tensors")


@dataclass
class RunData:
    """One run as TensorBoard's reader returns it, made plain."""

    tags: dict[str, set[str]] = field(default_factory=dict)
    graph: Any = None  # a GraphDef, or None
    run_metadata: set[str] = field(default_factory=set)
    metadata: dict[str, tuple[str, Any, str, str]] = field(default_factory=dict)  # tag: plugin, content, names
    events: dict[tuple[str, str], list[tuple[int, float, Any]]] = field(default_factory=dict)  # (kind, tag)


@dataclass
class Logdir:
    runs: dict[str, RunData]
    files: dict[str, Any]  # every file but the event files: relative path -> plain content


HPARAMS_RUN = re.compile(r"\d+\.\d+(e[-+]?\d+)?")


def read_logdir(log_dir: str | os.PathLike[str]) -> Logdir:
    """Everything TensorBoard reads in ``log_dir``: each run (sub-directories included) and the projector's files."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    guidance = {kind: 0 for kind in event_accumulator.STORE_EVERYTHING_SIZE_GUIDANCE}
    # purge_orphaned_data=False: every event written is compared, not only those TensorBoard keeps after a restart
    multiplexer = EventMultiplexer(size_guidance=guidance, purge_orphaned_data=False)
    multiplexer.AddRunsFromDirectory(str(log_dir))
    multiplexer.Reload()
    runs = {run.replace(os.sep, "/"): _run_data(multiplexer.GetAccumulator(run)) for run in multiplexer.Runs()}
    return Logdir(runs, _files(Path(log_dir)))


def _run_data(accumulator: Any) -> RunData:
    tags = accumulator.Tags()
    data = RunData(
        tags={kind: set(tags[kind]) for kind in KINDS},
        graph=accumulator.Graph() if tags["graph"] else None,
        run_metadata=set(tags["run_metadata"]),
    )
    for tag, metadata in accumulator.summary_metadata.items():
        plugin = metadata.plugin_data.plugin_name
        data.metadata[tag] = (
            plugin,
            _plugin_content(plugin, metadata.plugin_data.content),
            metadata.display_name,
            metadata.summary_description,
        )
    for kind in KINDS:
        read = {
            "scalars": accumulator.Scalars,
            "histograms": accumulator.Histograms,
            "images": accumulator.Images,
            "audio": accumulator.Audio,
            "tensors": accumulator.Tensors,
        }[kind]
        for tag in tags[kind]:
            data.events[(kind, tag)] = [(e.step, e.wall_time, _value(kind, e)) for e in read(tag)]
    return data


def _plugin_content(plugin: str, content: bytes) -> Any:
    if plugin == "hparams":
        from google.protobuf.json_format import MessageToDict
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

        return MessageToDict(HParamsPluginData.FromString(content))
    return content


def _value(kind: str, event: Any) -> Any:
    if kind == "scalars":
        return event.value
    if kind == "histograms":
        h = event.histogram_value
        return {
            "min": h.min,
            "max": h.max,
            "num": h.num,
            "sum": h.sum,
            "sum_squares": h.sum_squares,
            "bucket_limit": np.asarray(h.bucket_limit),
            "bucket": np.asarray(h.bucket),
        }
    if kind == "images":
        return {"width": event.width, "height": event.height, **_png(event.encoded_image_string)}
    if kind == "audio":
        with wave.open(io.BytesIO(event.encoded_audio_string)) as sound:
            params = sound.getparams()
            frames = sound.readframes(params.nframes)
        return {
            "content_type": event.content_type,
            "sample_rate": event.sample_rate,
            "length_frames": event.length_frames,
            "wav": (params.nchannels, params.sampwidth, params.framerate, params.nframes),
            "frames": frames,
        }
    return _tensor(event.tensor_proto)


def _png(data: bytes) -> dict[str, Any]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return {"mode": image.mode, "pixels": np.asarray(image)}


def _tensor(proto: Any) -> Any:
    from tensorboard.util import tensor_util

    try:
        array = tensor_util.make_ndarray(proto)
    except Exception:  # a dtype make_ndarray can't decode (bfloat16): the proto itself
        return proto
    return array


def _files(root: Path) -> dict[str, Any]:
    files: dict[str, Any] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "tfevents" not in p.name):
        name = path.relative_to(root).as_posix()
        if path.name == "projector_config.pbtxt":
            from google.protobuf import text_format
            from google.protobuf.json_format import MessageToDict
            from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

            files[name] = MessageToDict(text_format.Parse(path.read_text(), ProjectorConfig()))
        elif path.name == "tensors.tsv":
            files[name] = np.loadtxt(path, delimiter="\t", ndmin=2)
        elif path.suffix == ".png":
            files[name] = _png(path.read_bytes())
        else:
            files[name] = path.read_bytes()
    return files


def merge_hparams_runs(logdir: Logdir) -> tuple[Logdir, list[str]]:
    """SummaryWriter.add_hparams writes into a new ``<log_dir>/<time.time()>`` run; looptrack into the run itself.
    Returns ``logdir`` with each such run folded into its parent, and their names."""
    merged = []
    for name in sorted(logdir.runs):
        base = name.rsplit("/", 1)
        if not HPARAMS_RUN.fullmatch(base[-1]):
            continue
        parent = base[0] if len(base) == 2 else "."
        run = logdir.runs.pop(name)
        target = logdir.runs.setdefault(parent, RunData(tags={kind: set() for kind in KINDS}))
        for kind in KINDS:
            target.tags[kind] |= run.tags[kind]
        target.graph = target.graph if run.graph is None else run.graph
        target.run_metadata |= run.run_metadata
        for tag, metadata in run.metadata.items():
            target.metadata.setdefault(tag, metadata)
        for key, events in run.events.items():
            target.events[key] = target.events.get(key, []) + events
        merged.append(name)
    return logdir, merged


# ------------------------------------------------------------------------------------------------ the comparing


def compare(
    reference: Logdir,
    ours: Logdir,
    *,
    walltime_tags: Iterable[str] = (),
    compare_graphs: bool = True,
    run_metadata: bool = True,
) -> list[str]:
    """What differs between ``reference`` (SummaryWriter's) and ``ours`` (looptrack's), one line each.

    Wall times are compared only for ``walltime_tags`` (the calls gave them);
    ``compare_graphs=False`` compares only whether a graph is there, and
    ``run_metadata=False`` leaves out the JIT's "step1" RunMetadata.
    """
    walltime_tags = set(walltime_tags)
    diffs: list[str] = []
    if set(reference.runs) != set(ours.runs):
        diffs.append(f"runs: SummaryWriter {sorted(reference.runs)}, looptrack {sorted(ours.runs)}")
    for name in sorted(set(reference.runs) & set(ours.runs)):
        diffs += [
            f"run {name!r}: {d}"
            for d in _compare_run(reference.runs[name], ours.runs[name], walltime_tags, compare_graphs, run_metadata)
        ]
    diffs += _compare_files(reference.files, ours.files)
    return diffs


def _compare_run(
    ref: RunData, ours: RunData, walltime_tags: set[str], compare_graphs: bool, run_metadata: bool
) -> list[str]:
    diffs = []
    for kind in KINDS:
        if ref.tags[kind] != ours.tags[kind]:
            diffs.append(f"{kind} tags: SummaryWriter {sorted(ref.tags[kind])}, looptrack {sorted(ours.tags[kind])}")
    if (ref.graph is None) != (ours.graph is None):
        has = {True: "has a graph", False: "has none"}
        diffs.append(f"graph: SummaryWriter {has[ref.graph is not None]}, looptrack {has[ours.graph is not None]}")
    elif compare_graphs and ref.graph is not None and ref.graph != ours.graph:
        diffs.append("graph: the GraphDefs differ")
    if run_metadata and ref.run_metadata != ours.run_metadata:
        diffs.append(f"run metadata: SummaryWriter {sorted(ref.run_metadata)}, looptrack {sorted(ours.run_metadata)}")
    for tag in sorted(set(ref.metadata) | set(ours.metadata)):
        a, b = ref.metadata.get(tag), ours.metadata.get(tag)
        if a is None or b is None:
            diffs.append(f"summary metadata of {tag!r}: only {'looptrack' if a is None else 'SummaryWriter'} has it")
        elif a != b:
            diffs.append(f"summary metadata of {tag!r}: SummaryWriter {_short(a)}, looptrack {_short(b)}")
    for key in sorted(set(ref.events) & set(ours.events)):
        kind, tag = key
        plugin = ref.metadata[tag][0] if tag in ref.metadata else ""
        theirs, mine = ref.events[key], ours.events[key]
        if [e[0] for e in theirs] != [e[0] for e in mine]:
            diffs.append(
                f"{kind} {tag!r} steps: SummaryWriter {[e[0] for e in theirs]}, looptrack {[e[0] for e in mine]}"
            )
            continue
        if tag in walltime_tags and [e[1] for e in theirs] != [e[1] for e in mine]:
            diffs.append(
                f"{kind} {tag!r} wall times: SummaryWriter {[e[1] for e in theirs]}, looptrack {[e[1] for e in mine]}"
            )
        for (step, _, x), (_, _, y) in zip(theirs, mine):
            problem = value_diff(kind, plugin, x, y)
            if problem:
                diffs.append(f"{kind} {tag!r} step {step}: {problem}")
    return diffs


def value_diff(kind: str, plugin: str, ref: Any, ours: Any) -> str | None:
    """How one value differs (None if it does not): exact, but sums of histograms and PR curves within float error."""
    if kind == "histograms":
        for name in ("min", "max", "num", "bucket_limit", "bucket"):
            if not np.array_equal(ref[name], ours[name]):
                return f"histogram {name}: SummaryWriter {_short(ref[name])}, looptrack {_short(ours[name])}"
        for name in ("sum", "sum_squares"):  # the order of summation may differ
            if not np.isclose(ref[name], ours[name], rtol=1e-9, atol=0.0):
                return f"histogram {name}: SummaryWriter {ref[name]!r}, looptrack {ours[name]!r}"
        return None
    if kind == "images":
        for name in ("width", "height", "mode"):
            if ref[name] != ours[name]:
                return f"image {name}: SummaryWriter {ref[name]!r}, looptrack {ours[name]!r}"
        if ref["pixels"].shape != ours["pixels"].shape or not np.array_equal(ref["pixels"], ours["pixels"]):
            return f"image pixels differ ({_pixel_diff(ref['pixels'], ours['pixels'])})"
        return None
    if kind == "audio":
        for name in ref:
            if ref[name] != ours[name]:
                return f"audio {name} differs: SummaryWriter {_short(ref[name])}, looptrack {_short(ours[name])}"
        return None
    if kind == "tensors":
        if not isinstance(ref, np.ndarray) or not isinstance(ours, np.ndarray):  # a proto make_ndarray can't decode
            if type(ref) is type(ours) and ref == ours:
                return None
            return f"tensors differ: SummaryWriter {_short(ref)}, looptrack {_short(ours)}"
        if ref.dtype != ours.dtype or ref.shape != ours.shape:
            return f"tensor: SummaryWriter {ref.dtype}{ref.shape}, looptrack {ours.dtype}{ours.shape}"
        if plugin == "pr_curves":
            same = np.allclose(ref, ours, rtol=1e-6, atol=1e-6)
        elif ref.dtype.kind in "fc":
            same = np.array_equal(ref, ours, equal_nan=True)
        else:
            same = np.array_equal(ref, ours)
        return None if same else f"tensor values: SummaryWriter {ref!r:.200}, looptrack {ours!r:.200}"
    if ref != ours and not (isinstance(ref, float) and np.isnan(ref) and np.isnan(ours)):
        return f"value: SummaryWriter {ref!r}, looptrack {ours!r}"
    return None


def _pixel_diff(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"shapes {a.shape} and {b.shape}"
    delta = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return f"{int((delta > 0).sum())} values differ, by up to {int(delta.max())}"


def _compare_files(ref: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    diffs = []
    if set(ref) != set(ours):
        diffs.append(f"files: SummaryWriter {sorted(ref)}, looptrack {sorted(ours)}")
    for name in sorted(set(ref) & set(ours)):
        a, b = ref[name], ours[name]
        if isinstance(a, np.ndarray):
            same = a.shape == b.shape and np.array_equal(a, b)
        elif isinstance(a, dict) and "pixels" in a:
            same = a["mode"] == b["mode"] and a["pixels"].shape == b["pixels"].shape
            same = same and np.array_equal(a["pixels"], b["pixels"])
        else:
            same = a == b
        if not same:
            diffs.append(f"file {name}: SummaryWriter {_short(a)}, looptrack {_short(b)}")
    return diffs


# ------------------------------------------------------------------------------------------------ graphs, loosely


def module_paths_in_jit_graph(graph_def: Any) -> set[str]:
    """Module paths of torch.jit's nodes: ``OuterNet/Sequential[seq]/Linear[0]/input.3`` is in ``seq/0``."""
    paths = set()
    for node in graph_def.node:
        if not node.op.startswith("aten::"):
            continue
        scopes = re.findall(r"\[([^\]]+)\]", node.name)
        if scopes:
            paths.add("/".join(scopes))
    return paths


def module_paths_in_fx_graph(graph_def: Any) -> set[str]:
    """Module paths of looptrack's (torch.fx) nodes: a module call is named by its path (``seq/0``, a second call
    of the same module ``seq/0_1``), an op inside a module ``<path>/<op>``."""
    names = {n.name for n in graph_def.node}
    paths = set()
    for node in graph_def.node:
        if node.op in ("IO Node", "Parameter"):
            continue
        if node.op[:1].isupper():  # a module: Linear, Conv2d
            base = re.sub(r"_\d+$", "", node.name)
            paths.add(base if base in names else node.name)
        elif "/" in node.name:
            paths.add(node.name.rsplit("/", 1)[0])
    return paths


def functional_ops_in_jit_graph(graph_def: Any) -> list[str]:
    """The ops called outside any submodule (``aten::relu`` in the model's own forward), without ``aten::``."""
    return sorted(
        node.op.removeprefix("aten::").rstrip("_")
        for node in graph_def.node
        if node.op.startswith("aten::") and not re.search(r"\[[^\]]+\]", node.name)
    )


def functional_ops_in_fx_graph(graph_def: Any) -> list[str]:
    return sorted(
        node.op.rstrip("_")
        for node in graph_def.node
        if node.op not in ("IO Node", "Parameter") and not node.op[:1].isupper() and "/" not in node.name
    )


def leaf_modules_with_parameters(model: Any) -> set[str]:
    """``{"fc1", "seq/0"}``: the model's leaf modules that hold parameters (what any graph of it must show)."""
    return {
        name.replace(".", "/")
        for name, module in model.named_modules()
        if name and not list(module.children()) and list(module.parameters(recurse=False))
    }


def graph_diff(reference: Any, ours: Any, model: Any, functional_ops: bool) -> list[str]:
    """The loose comparison of a JIT graph (SummaryWriter) and an fx graph (looptrack) of ``model``."""
    diffs = []
    wanted = leaf_modules_with_parameters(model)
    jit_paths, fx_paths = module_paths_in_jit_graph(reference), module_paths_in_fx_graph(ours)
    if not wanted <= jit_paths:
        diffs.append(f"SummaryWriter's graph lacks modules {sorted(wanted - jit_paths)}")
    if not wanted <= fx_paths:
        diffs.append(f"looptrack's graph lacks modules {sorted(wanted - fx_paths)}")
    if functional_ops:
        a, b = functional_ops_in_jit_graph(reference), functional_ops_in_fx_graph(ours)
        if a != b:
            diffs.append(f"ops outside modules: SummaryWriter {a}, looptrack {b}")
    return diffs


# ------------------------------------------------------------------------------------------------ figures


def figures_in(calls: Iterable[Call]) -> list[Any]:
    """The matplotlib figures the calls pass (alone or in a list)."""
    from matplotlib.figure import Figure

    found: list[Any] = []
    for c in calls:
        for value in (*c.args, *c.kwargs.values()):
            items = value if isinstance(value, list) else [value]
            found += [v for v in items if isinstance(v, Figure)]
    return found


def open_states(figures: Iterable[Any]) -> list[bool]:
    import matplotlib.pyplot as plt

    return [bool(plt.fignum_exists(f.number)) for f in figures]


Make = Callable[[], list[Call]]
