"""A model's graph for TensorBoard's Graphs tab, from ``torch.fx`` instead of the deprecated ``torch.jit.trace``.

:func:`trace_graph` traces the model symbolically (``torch.fx``), or with
``torch.export`` where symbolic tracing fails, propagates the example
input's shapes with fake tensors (no real compute, the model's buffers and
the RNG untouched) and :func:`to_graph_def` writes a ``GraphDef`` whose node
names are module paths (``layer1/0/conv1``), so TensorBoard folds them by
module, with op types and ``_output_shapes`` on every node.

>>> graph = trace_graph(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()), (torch.ones(2, 3),))
>>> [(n.name, n.op) for n in graph.node]
[('input/input_1', 'IO Node'), ('0', 'Linear'), ('1', 'ReLU'), ('output/output', 'IO Node')]
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx
from tensorboard.compat.proto.attr_value_pb2 import AttrValue
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.compat.proto.node_def_pb2 import NodeDef
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.versions_pb2 import VersionDef

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
)


@contextlib.contextmanager
def _model_as_found(model: torch.nn.Module) -> Iterator[None]:
    """Trace without side effects: hooks silenced, eval mode (no BatchNorm updates), RNG forked; all restored."""
    saved = []
    for module in model.modules():
        for name in _HOOK_DICTS:
            hooks = getattr(module, name, None)
            if isinstance(hooks, dict) and hooks:
                saved.append((module, name, hooks))
                setattr(module, name, OrderedDict())
    modes = [(m, m.training) for m in model.modules()]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        model.eval()
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
        for module, name, hooks in saved:
            setattr(module, name, hooks)


def _fake_propagate(graph_module: torch.fx.GraphModule, args: tuple[Any, ...]) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
    FakeTensorProp(graph_module, mode).propagate(*fake_args)


def trace_module(
    model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
) -> tuple[torch.fx.GraphModule, dict[str, str]]:
    """``(graph module with node.meta['val'], lifted)``: symbolic tracing first, ``torch.export`` if that fails.

    ``lifted`` maps the placeholders ``torch.export`` made of parameters and
    buffers to their names in the model.
    """
    kwargs = kwargs or {}
    with _model_as_found(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # export's notes about RNN weights and the like are not the user's business
        try:
            if kwargs:
                raise NotImplementedError("keyword inputs: use torch.export")
            graph_module = torch.fx.symbolic_trace(model)
            _fake_propagate(graph_module, args)
            return graph_module, {}
        except Exception as fx_error:
            try:
                exported = torch.export.export(model, tuple(args), kwargs, strict=False)
            except Exception as export_error:
                raise RuntimeError(
                    f"symbolic tracing failed ({type(fx_error).__name__}: {fx_error}) and so did "
                    f"torch.export ({type(export_error).__name__}: {export_error})"
                ) from export_error
            signature = exported.graph_signature
            lifted = {**signature.inputs_to_parameters, **signature.inputs_to_buffers}
            return exported.graph_module, lifted


def _tensors(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return [value] if isinstance(value, torch.Tensor) else []


def _shape_attrs(value: Any) -> dict[str, AttrValue]:
    tensors = _tensors(value)
    if not tensors:
        return {}
    shapes = [TensorShapeProto(dim=[TensorShapeProto.Dim(size=int(d)) for d in t.shape]) for t in tensors]
    dtypes = ", ".join(str(t.dtype).replace("torch.", "") for t in tensors)
    return {"_output_shapes": AttrValue(list=AttrValue.ListValue(shape=shapes)), "dtype": AttrValue(s=dtypes.encode())}


def _scope(node: torch.fx.Node) -> str:
    """The module path a node belongs to, as TensorBoard name scopes (``layer1/0``)."""
    if node.op == "call_module":
        return str(node.target).replace(".", "/")
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1]
        path = path[0] if isinstance(path, tuple) else path
        path = str(path).replace("L['self'].", "").replace("L__self___", "")
        return path.replace(".", "/").strip("/")
    return ""


def _op_type(node: torch.fx.Node, graph_module: torch.fx.GraphModule, lifted: dict[str, str]) -> str:
    if node.op == "placeholder" and node.name in lifted:
        return "Parameter"
    if node.op in ("placeholder", "output"):
        return "IO Node"
    if node.op == "call_module":
        return type(graph_module.get_submodule(str(node.target))).__name__
    if node.op == "get_attr":
        return "Parameter"
    target = node.target
    if node.op == "call_method":
        return str(target)
    packet = getattr(target, "_overloadpacket", None)  # aten ops from torch.export: aten.lstm.input -> lstm
    if packet is not None:
        return packet.__name__
    return getattr(target, "__name__", str(target))


def to_graph_def(graph_module: torch.fx.GraphModule, lifted: dict[str, str] | None = None) -> GraphDef:
    """TensorBoard's GraphDef for a traced graph whose nodes carry ``meta['val']``."""
    lifted = lifted or {}
    names: dict[torch.fx.Node, str] = {}
    used: set[str] = set()
    nodes = []
    for node in graph_module.graph.nodes:
        if node.op == "placeholder" and node.name in lifted:
            base = lifted[node.name].replace(".", "/")  # a parameter: inside its module's group
        elif node.op == "placeholder":
            base = f"input/{node.name}"
        elif node.op == "output":
            base = "output/output"
        elif node.op == "call_module":
            base = _scope(node)
        else:
            scope = _scope(node)
            base = f"{scope}/{node.name}" if scope else node.name
        name, count = base, 1
        while name in used:
            name, count = f"{base}_{count}", count + 1
        used.add(name)
        names[node] = name
        value = node.meta.get("val")
        if node.op == "output":
            value = [a.meta.get("val") if isinstance(a, torch.fx.Node) else a for a in _flat_nodes(node.args[0])]
        nodes.append(
            NodeDef(
                name=name,
                op=_op_type(node, graph_module, lifted),
                input=[names[i] for i in node.all_input_nodes if i in names],
                attr=_shape_attrs(value),
            )
        )
    return GraphDef(node=nodes, versions=VersionDef(producer=22))


def _flat_nodes(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat_nodes(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flat_nodes(v)]
    return [value]


def trace_graph(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> GraphDef:
    """Trace ``model`` on ``args`` (its real first input) and return TensorBoard's GraphDef."""
    graph_module, lifted = trace_module(model, args, kwargs)
    return to_graph_def(graph_module, lifted)
