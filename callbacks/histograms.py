"""Parameter and gradient histograms every N steps, binned in torch on the parameters' device."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter

Include = Sequence[str] | Callable[[str, torch.nn.Parameter], bool] | None


class ParameterHistograms(Callback):
    """Histograms of the weights (``parameters/<name>``) and, when present, their gradients (``gradients/<name>``).

    >>> tracker = Tracker(net, callbacks=[ParameterHistograms(every_n_steps=500, include=["conv", "fc3"])],
    ...                   writer="runs/fashion_mnist_experiment_1")             # doctest: +SKIP

    ``include`` selects parameters by name prefix (a list of strings) or by a
    ``(name, param) -> bool`` function; ``None`` takes them all. The buckets
    are TensorBoard's default ones. Gradients are taken when they exist: as
    the model's optimizer is about to step (before a framework zeroes
    them), or at the step's end for loops that zero them later; a logging
    step without any gradient is reported once. The buckets
    are TensorBoard's default ones, counted in torch: on an accelerator the
    counting is queued on the device at the logging step and only the small
    counts travel; on the CPU the training thread copies the values and the
    writer thread counts them. Non-finite values are left out and their
    number logged under ``nonfinite/parameters/<name>`` (only when there are
    any).
    """

    every: Every

    def __init__(self, every_n_steps: int = 500, include: Include = None, gradients: bool = True) -> None:
        self.every = Every(every_n_steps, owner="ParameterHistograms")
        if include is not None and not callable(include):
            if isinstance(include, str) or not all(isinstance(p, str) for p in include):
                raise TypeError(
                    "ParameterHistograms: include must be a list of name prefixes (e.g. ['conv1', 'fc']) "
                    f"or a function (name, param) -> bool, got {include!r}"
                )
            include = tuple(include)
        self.include = include
        self.gradients = gradients
        self._parameters: list[tuple[str, torch.nn.Parameter]] = []
        self._gradients_logged: set[str] = set()
        self._reporter = OnceReporter()

    @override
    def on_train_start(self, state: RunState) -> None:
        if state.model is None:
            self._reporter.warn("no-model", "ParameterHistograms needs the model: Tracker(model, ...); it does nothing")
            self._parameters = []
            return
        self._parameters = [(name, p) for name, p in state.model.named_parameters() if self._selected(name, p)]
        if not self._parameters:
            names = [name for name, _ in state.model.named_parameters()][:5]
            self._reporter.warn(
                "none-selected",
                f"ParameterHistograms: include={self.include!r} selects no parameter of "
                f"{type(state.model).__name__} (its names start like {names}); nothing will be logged",
            )

    @override
    def on_before_optimizer_step(self, state: RunState, optimizer: Any) -> None:
        if self.gradients:
            self._log_gradients(state)  # the step's gradients exist now, before the loop zeroes them

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        writer, step = state.writer, state.step
        for name, param in self._parameters:
            writer.histogram(f"parameters/{name}", param, step, nonfinite_tag=f"nonfinite/parameters/{name}")
        if self.gradients:
            self._log_gradients(state)  # a loop that zeroes gradients at the start of the next step still has them
            if not self._gradients_logged:
                self._reporter.warn(
                    "no-gradients",
                    f"ParameterHistograms: no selected parameter had a gradient at step {step}, before the "
                    "optimizer step or after it, so no gradients/ histograms are written; does the loop call "
                    "backward() through a torch.optim optimizer over this model? gradients=False turns them off",
                )
        self._gradients_logged = set()

    def _log_gradients(self, state: RunState) -> None:
        for name, param in self._parameters:
            if param.grad is not None and name not in self._gradients_logged:
                self._gradients_logged.add(name)
                state.writer.histogram(
                    f"gradients/{name}", param.grad, state.step, nonfinite_tag=f"nonfinite/gradients/{name}"
                )

    def _selected(self, name: str, param: torch.nn.Parameter) -> bool:
        if self.include is None:
            return True
        if callable(self.include):
            return bool(self.include(name, param))
        return name.startswith(self.include)

    def __repr__(self) -> str:
        return (
            f"ParameterHistograms(every_n_steps={self.every.n}, include={self.include!r}, gradients={self.gradients})"
        )
