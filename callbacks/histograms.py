"""Parameter and gradient histograms every N steps, binned in torch on the parameters' device."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback
from trackers.core.module_hooks import unwrap
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter

Include = Sequence[str] | Callable[[str, torch.nn.Parameter], bool] | None


class ParameterHistograms(Callback):
    """Histograms of the weights (``parameters/<name>``) and, when present, their gradients (``gradients/<name>``).

    >>> tracker = Tracker(net, callbacks=[ParameterHistograms(every_n_steps=500, include=["conv", "fc3"])],
    ...                   writer="runs/fashion_mnist_experiment_1")             # doctest: +SKIP

    ``include`` selects parameters by name prefix (a list of strings) or by a
    ``(name, param) -> bool`` function; ``None`` takes them all. The weights
    are taken at the step's end, after the optimizer step. The gradients
    are taken right after the model's optimizer steps (torch's optimizer
    step hook, before the loop can zero them): they are the ones that step
    used, after whatever the loop did between backward and step (clipping,
    ``GradScaler``'s unscaling, the sum over accumulated micro-batches). That
    holds under Lightning too, whose ``optimizer.step()`` runs the step's
    forward and backward. Each parameter is taken from the first optimizer
    over it that steps in the step; one no optimizer stepped over during the
    tracked step (a loop stepping outside it) is taken at the step's end if
    it still has a gradient then. A logging step without any gradient is
    reported once. The buckets are TensorBoard's default ones, counted in
    torch: on an accelerator the counting is queued on the device at the
    logging step and only the small counts travel; on the CPU the training
    thread copies the values and the writer thread counts them. Non-finite
    values are left out and their number logged under
    ``nonfinite/parameters/<name>`` (``nonfinite/gradients/<name>``; only
    when there are any).
    """

    reads_outputs = False

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
        # the logging step and the optimizers whose gradients were logged in it (each optimizer's first step)
        self._stepped_step: int | None = None
        self._stepped: list[Any] = []
        self._reporter = OnceReporter()

    @override
    def on_train_start(self, state: RunState) -> None:
        if state.model is None:
            self._reporter.warn("no-model", "ParameterHistograms needs the model: Tracker(model, ...); it does nothing")
            self._parameters = []
            return
        model = unwrap(state.model)  # the bare model's names, inside DDP or torch.compile
        self._parameters = [(name, p) for name, p in model.named_parameters() if self._selected(name, p)]
        if not self._parameters:
            names = [name for name, _ in model.named_parameters()][:5]
            self._reporter.warn(
                "none-selected",
                f"ParameterHistograms: include={self.include!r} selects no parameter of "
                f"{type(state.model).__name__} (its names start like {names}); nothing will be logged",
            )

    @override
    def on_after_optimizer_step(self, state: RunState, optimizer: Any) -> None:
        # after the step, not before it: under Lightning the step's forward and backward run inside
        # optimizer.step(), so before it the gradients would be the previous step's (or none)
        if not self.gradients or not self._parameters:
            return
        if self._stepped_step != state.step_index:
            self._stepped_step, self._stepped = state.step_index, []
        if any(seen is optimizer for seen in self._stepped):
            return  # the same optimizer again in this step: its first step's gradients are logged
        self._stepped.append(optimizer)
        self._log_stepped_gradients(state, {id(p) for group in optimizer.param_groups for p in group["params"]})

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        self._stepped_step, self._stepped = None, []
        writer, step = state.writer, state.step
        for name, param in self._parameters:
            writer.histogram(f"parameters/{name}", param, step, nonfinite_tag=f"nonfinite/parameters/{name}")
        if self.gradients:
            # a parameter no optimizer stepped over in the tracked step: a loop stepping outside it, which
            # zeroes gradients at the start of the next step, still has them now
            self._log_gradients(state)
            if not self._gradients_logged:
                self._reporter.warn(
                    "no-gradients",
                    f"ParameterHistograms: no selected parameter had a gradient at step {step}, when the "
                    "optimizer stepped or at the step's end, so no gradients/ histograms are written; does the "
                    "loop call backward() through a torch.optim optimizer over this model? gradients=False turns "
                    "them off",
                )
        self._gradients_logged = set()

    def _log_stepped_gradients(self, state: RunState, stepped_over: set[int]) -> None:
        """The gradients of the parameters ``optimizer`` just stepped over (inside ``step()``, after it ran)."""
        try:
            self._log_gradients(state, stepped_over)
        except Exception as error:  # the hook runs inside optimizer.step(): a failure must not stop training
            if state.writer.strict:
                raise
            self._reporter.warn(
                ("failed", type(error).__name__),
                f"ParameterHistograms: logging the gradients as the optimizer stepped failed at step {state.step} "
                f"({type(error).__name__}: {error}); the gradients not logged by then are taken at the step's end "
                "and the run goes on",
            )

    def _log_gradients(self, state: RunState, only: set[int] | None = None) -> None:
        for name, param in self._parameters:
            if only is not None and id(param) not in only:
                continue
            if param.grad is not None and name not in self._gradients_logged:
                state.writer.histogram(
                    f"gradients/{name}", param.grad, state.step, nonfinite_tag=f"nonfinite/gradients/{name}"
                )
                self._gradients_logged.add(name)

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
