"""The model's graph in TensorBoard's Graphs tab, traced once from the first real batch."""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter
from trackers.tensorboard.graphdef import trace_graph


class GraphTrace(Callback):
    """Writes the model's graph once per run, from the input of its first real forward call.

    >>> tracker = Tracker(net, callbacks=[GraphTrace()], writer="runs/fashion_mnist_experiment_1")   # doctest: +SKIP

    No dummy input is needed: the Tracker's forward pre-hook keeps the first
    call's arguments, and the graph is traced after that first batch
    (``example_input=`` traces from the given tensor(s) at the start
    instead). The graph comes from ``torch.fx`` (or ``torch.export`` where
    symbolic tracing fails) with fake-tensor shapes, so the model is left as
    it was: mode, BatchNorm statistics and RNG state. ``use_jit=True`` asks
    for ``SummaryWriter.add_graph``'s deprecated ``torch.jit.trace`` path
    instead. A model that can't be traced gets one warning and training goes
    on.
    """

    reads_outputs = False

    def __init__(self, example_input: Any = None, use_jit: bool = False) -> None:
        self.example_input = example_input
        self.use_jit = use_jit
        self.done = False
        self._reporter = OnceReporter()

    @override
    def on_train_start(self, state: RunState) -> None:
        self.done = False
        if self.example_input is not None:
            args = self.example_input if isinstance(self.example_input, tuple) else (self.example_input,)
            self._trace(state, args, {})

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        self._trace_first_input(state)

    @override
    def on_validation_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        self._trace_first_input(state)

    def _trace_first_input(self, state: RunState) -> None:
        if not self.done and state.first_inputs is not None:
            self._trace(state, state.first_inputs, state.first_kwargs or {})

    def _trace(self, state: RunState, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.done = True
        model = state.model
        if model is None:
            self._reporter.warn("no-model", "GraphTrace needs the model: Tracker(model, ...); no graph is written")
            return
        try:
            if self.use_jit or isinstance(model, torch.jit.ScriptModule):  # fx can't trace TorchScript
                from torch.utils.tensorboard._pytorch_graph import graph as jit_graph

                graph_def, _ = jit_graph(model, args)
            else:
                graph_def = trace_graph(model, args, kwargs)
        except Exception as error:
            shapes = ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor))
            self._reporter.warn(
                "failed",
                f"GraphTrace: could not trace {type(model).__name__} on inputs of shape {shapes}: "
                f"{type(error).__name__}: {str(error).splitlines()[0][:300]}. No graph is written; training goes on",
            )
            return
        state.writer.graph(graph_def)

    def __repr__(self) -> str:
        return f"GraphTrace(use_jit={self.use_jit})"
