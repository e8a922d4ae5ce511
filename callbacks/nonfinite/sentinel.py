"""Where NaN or inf first appear in a training step: which module, which step, forward or backward, in what dtype.

Two ways of looking, chosen by ``every_n_steps``:

* every step (``every_n_steps=1``, the default): the step is checked as a whole at the end of each backward pass,
  before the optimizer uses the gradients (the gradients of the model's parameters and at its outputs, in one
  read-back); only a step found non-finite is run again module by module (:mod:`callbacks.nonfinite.replay`)
  and measured (:mod:`callbacks.nonfinite.measure`). A healthy step pays for keeping its calls' inputs and for the
  check, nothing per module.
* every n steps: every selected module call is measured as it runs, on the device, and the steps of the window
  are folded there; the values are read back once at the window's end, with no host sync on the other steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback, every_step
from callbacks.nonfinite.finding import NonFiniteFinding
from callbacks.nonfinite.measure import CallMeasure, StepRecord, find_in, read_back
from callbacks.nonfinite.replay import CallCapture, ReplayError, replay
from trackers.core.module_hooks import ModuleHooks, ModuleHookSet, unwrap
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState
from trackers.errors import NonFiniteError, OnceReporter

ACTIONS = ("warn", "raise")


class NonFiniteSentinel(Callback):
    """Names the module, step, direction (forward/backward) and dtype where NaN or inf first appear in training.

    >>> tracker = Tracker(net, callbacks=[NonFiniteSentinel(action="raise")])           # doctest: +SKIP
    >>> for inputs, labels in loader:                                                  # doctest: +SKIP
    ...     step(inputs, labels)   # raises trackers.NonFiniteError(module='block3.attn', step=1234, ...)

    By default every training step is checked as a whole when its backward pass ends, before the optimizer
    uses the gradients: are the model's parameter gradients and the gradients at its outputs all finite (one
    read-back, the step's one host sync)? A step found non-finite is then run again from what its calls were
    given (same weights, same random numbers, same output gradients), with every module selected by
    ``include``/``exclude`` (globs over ``named_modules()`` names, parameter-less modules included) measured:
    the smallest and largest element of its inputs and outputs in the forward and of the gradients at them in
    the backward. The culprit is then found (see :func:`callbacks.nonfinite.finding.find_nonfinite`): forward,
    the first module whose inputs were finite and outputs not; backward, the module whose output gradient was
    finite and whose input gradient was not. A NaN that only shows in the loss computed outside the model
    shows as a non-finite gradient arriving at the model's output.

    With ``every_n_steps=n > 1`` there is no host sync between checks, so nothing can be run again: every
    selected module call is measured as it runs (one ``torch.aminmax`` per tensor, queued on the device), the
    steps of the window are folded there keeping the values of its first non-finite step, and they are read
    back at the window's end (steps n-1, 2n-1, ..., or when the run ends): the step named is the one where it
    happened. This costs far more per step (see below), and is the way under FSDP's ``fully_shard``, where one
    rank cannot run its forward again alone.

    ``action="warn"`` warns once (a ``LooptrackWarning`` naming the module, step, direction, dtype, the
    largest input magnitude and what to try) and logs the same text under ``nonfinite/forward`` or
    ``nonfinite/backward``, once per module and direction; ``findings`` keeps them. ``action="raise"`` logs
    it too, then raises :class:`trackers.NonFiniteError` into the training loop at the end of the step it was
    found in, whatever ``strict`` says (a non-finite window the run ended in is only warned about). Only calls
    inside a training step are looked at, not validation. The gradients are those at module inputs and
    outputs (activations), not the parameters'; inputs passed by keyword are not seen by module hooks.

    Cost on the tutorial CNN on this CPU (``benchmarks/bench_inside.py``): checking every step adds about
    1 % at batch 64 (keeping each model call's inputs and random state, one sum per parameter gradient, one
    read-back), a few % at batch 4 where a step is 1 ms; ``every_n_steps > 1`` measures every module call,
    +15-25 % at batch 64 and +40 % at batch 4 (``torch.autograd.detect_anomaly``: +50 % and +170 %). A run
    going on after a non-finite step (``action="warn"``) is run again once per incident: the steps after a
    non-finite one are not, until a step is finite again. The model calls are kept where the model is called:
    the model itself, else (from the second step) the modules its ``training_step`` calls. Mixed precision with
    ``torch.amp.GradScaler`` makes inf gradients on purpose when its scale is too high: such steps are reported.
    """

    every: Every
    reads_outputs = False  # it never reads a batch's outputs: the Tracker need not keep them for it

    def __init__(
        self,
        action: str = "warn",
        every_n_steps: int = 1,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
    ) -> None:
        if action not in ACTIONS:
            raise ValueError(
                f"NonFiniteSentinel: action must be 'warn' (report and go on) or 'raise' (stop the loop with "
                f"trackers.NonFiniteError), got {action!r}"
            )
        self.action = action
        self.every = Every(every_n_steps, owner="NonFiniteSentinel")
        self.findings: list[NonFiniteFinding] = []
        self._reporter = OnceReporter()
        self._measure = CallMeasure(self._reporter)
        self._measured_modules = self._measure.module_hooks(include, exclude)
        self._logged: set[tuple[str, str]] = set()
        self._saw_calls = False
        # every step: the model's calls kept for a replay, the check queued for the end of the backward pass
        self._capture = CallCapture(on_gradient=self._queue_check)
        self._model: torch.nn.Module | None = None
        self._parameters: list[torch.nn.Parameter] = []
        self._sharded = False
        self._check_queued = False
        self._nonfinite_before = False  # whether the last backward pass checked was non-finite
        self._step = -1
        self._found: NonFiniteFinding | None = None  # found in this step, reported at its end
        # every n steps: the window folded on the device
        self._window: torch.Tensor | None = None  # the values of the window's first non-finite step, on the device
        self._window_found: torch.Tensor | None = None  # whether a step of the window was non-finite (bool, 0-d)
        self._window_place: torch.Tensor | None = None  # the place of the first such step in the window (0-d)
        self._window_steps: list[tuple[int, StepRecord]] = []  # each step folded: (step, its layout); per window

    @property
    def checks_every_step(self) -> bool:
        """Whether each step is checked whole and replayed if non-finite (else calls are measured as they run)."""
        return self.every.n == 1

    @override
    def module_hooks(self) -> Sequence[ModuleHooks]:
        return [] if self.checks_every_step else [self._measured_modules]

    # ------------------------------------------------------------ the run
    @override
    def on_train_start(self, state: RunState) -> None:
        if not self.checks_every_step or state.model is None or self._model is not None:
            return
        self._model = state.model
        self._parameters = [p for p in unwrap(state.model).parameters() if p.requires_grad]
        self._sharded = any(hasattr(p, "to_local") for p in self._parameters)  # FSDP2's fully_shard
        self._capture.watch([state.model])

    @override
    @every_step
    def on_train_batch_start(self, state: RunState, batch: BatchRecord) -> None:
        self._step = state.step
        if self.checks_every_step:
            self._capture.calls.clear()
            self._capture.kept = 0
            self._capture.active = True
        else:
            self._measure.start()

    @override
    @every_step
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        if self.checks_every_step:
            self._end_checked_step(state)
        else:
            self._end_measured_step(state)

    @override
    def on_train_end(self, state: RunState) -> None:
        self._capture.active = False
        self._capture.remove()
        self._measure.stop()
        if self._window_steps:  # the run ended inside a window: check what it folded
            finding = self._check_window()
            if finding is not None:
                self._report(state, finding, may_raise=False)

    # ------------------------------------------------------------ every step: check whole, replay if non-finite
    def _queue_check(self) -> None:
        """Inside the backward pass (a gradient reached a kept call's output): check when the pass ends."""
        if not self._check_queued:
            self._check_queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._check_backward)

    def _check_backward(self) -> None:
        """At the end of a backward pass, before the optimizer steps: were its gradients finite? If not, replay."""
        self._check_queued = False
        calls = [call for call in self._capture.calls if call.gradients]
        self._capture.calls = [call for call in self._capture.calls if not call.gradients]
        try:
            if self._found is not None:
                return
            finite = self._gradients_finite(calls)
            going_on, self._nonfinite_before = self._nonfinite_before, not finite
            if not finite and not going_on:  # a step after a non-finite one is the same incident: not run again
                self._found = self._replay(calls)
        except Exception as error:  # inside autograd: a failure here must not stop the backward pass
            self._reporter.warn(
                ("check", type(error).__name__),
                f"NonFiniteSentinel: checking the end of a backward pass failed ({type(error).__name__}: {error}); "
                "steps are not checked. The run goes on",
            )

    def _gradients_finite(self, calls: list[Any]) -> bool:
        """One read-back: whether the parameters' gradients and those at the kept calls' outputs are all finite."""
        gradients = [p.grad for p in self._parameters if p.grad is not None]
        gradients += [gradient for call in calls for gradient in call.gradients.values()]
        if self._sharded:  # DTensor gradients: this rank's shards
            gradients = [g.to_local() if hasattr(g, "to_local") else g for g in gradients]
        return all_finite([g for g in gradients if g.layout == torch.strided])

    def _replay(self, calls: list[Any]) -> NonFiniteFinding:
        """Run the step's calls again with every selected module measured; where it went non-finite."""
        step = self._step
        if self._model is None or not calls:
            return _unplaced(step, "no call of the model was kept in this step")
        hooks = ModuleHookSet()
        hooks.register(self._model, [(self.name, self._measured_modules)])
        active, self._capture.active = self._capture.active, False  # replayed calls are not kept, nor checked
        try:
            for call in calls:
                record = self._measure.start()
                try:
                    replay(call)
                finally:
                    values = self._measure.stop()
                if values is not None:
                    finding = find_in(record, read_back(values), step)
                    if finding is not None:
                        return finding
        except ReplayError as error:
            return _unplaced(step, f"the step's model call could not be run again: {error}")
        finally:
            hooks.remove()
            self._capture.active = active
        return _unplaced(step, "running the step's model calls again gave finite values throughout")

    def _end_checked_step(self, state: RunState) -> None:
        self._capture.active = False
        self._capture.calls.clear()
        self._saw_calls = self._saw_calls or self._capture.kept > 0
        if not self._saw_calls:
            self._watch_called_modules(state)
        found, self._found = self._found, None
        if found is not None:
            self._report(state, found, may_raise=True)

    def _watch_called_modules(self, state: RunState) -> None:
        """A step without a call of the model: keep the calls of its children (a LightningModule's training_step
        calls ``self.net(x)``), or say that nothing is checked."""
        model = self._model
        children = list(unwrap(model).children()) if model is not None else []
        if model is not None and self._capture.watched == [model] and children:
            self._capture.watch(children)
            return
        self._reporter.warn(
            "no-calls",
            f"NonFiniteSentinel: no call of the model was seen in training step {state.step}, so nothing is "
            "checked; give Tracker the model the loop calls (Tracker(net, callbacks=[...]))",
        )

    # ------------------------------------------------------------ every n steps: measure as it runs, fold
    def _end_measured_step(self, state: RunState) -> None:
        record = self._measure.record
        values = self._measure.stop()
        if record is None:
            return
        checking = self.every.fires(state.step_index)
        self._saw_calls = self._saw_calls or bool(record.calls)
        finding = None
        if values is not None:
            if checking and not self._window_steps:  # nothing folded before it: read this step's values
                finding = find_in(record, read_back(values), state.step)
            else:
                self._fold(values, record, state.step)
        if checking:
            if self._window_steps:
                finding = self._check_window()
            elif not self._saw_calls:
                self._reporter.warn(
                    "no-calls",
                    f"NonFiniteSentinel: no selected module ran in training step {state.step}, so nothing is "
                    "checked; give Tracker the model (Tracker(net, callbacks=[...])) and check include=/exclude=",
                )
        if finding is not None:
            self._report(state, finding, may_raise=True)

    def _fold(self, values: torch.Tensor, record: StepRecord, step: int) -> None:
        """Keep ``values`` if they are the window's first non-finite ones: a few device ops, no sync."""
        size = values.numel()
        window, found, place = self._window, self._window_found, self._window_place
        if window is None or found is None or place is None or window.device != values.device:
            dtype = torch.promote_types(values.dtype, torch.float32)  # float32 at least: the place is exact
            window = values.new_zeros(size, dtype=dtype)
            found = values.new_zeros((), dtype=torch.bool)
            place = values.new_zeros((), dtype=torch.int64)
            self._window_steps = []
        elif window.numel() < size or window.dtype != torch.promote_types(window.dtype, values.dtype):
            grown = values.new_zeros(max(size, window.numel()), dtype=torch.promote_types(window.dtype, values.dtype))
            grown[: window.numel()].copy_(window)
            window = grown
        if not self._window_steps:
            found.zero_()
        first = torch.logical_or(torch.isfinite(values).all(), found).logical_not_()  # non-finite, none before
        found.logical_or_(first)
        place.masked_fill_(first, len(self._window_steps))
        part = window[:size]
        torch.where(first, values, part, out=part)
        self._window, self._window_found, self._window_place = window, found, place
        if self._window_steps and record.same_layout(self._window_steps[-1][1]):
            record = self._window_steps[-1][1]  # one layout kept for a run of alike steps
        self._window_steps.append((step, record))

    def _check_window(self) -> NonFiniteFinding | None:
        """Read back whether the window went non-finite and its first such step's values: one transfer."""
        steps, self._window_steps = self._window_steps, []
        window, found, place = self._window, self._window_found, self._window_place
        if window is None or found is None or place is None:
            return None
        size = 2 * max(len(record.arrived) for _, record in steps)
        values = read_back(torch.cat([found.to(window.dtype).view(1), place.to(window.dtype).view(1), window[:size]]))
        if not values[0]:
            return None
        step, record = steps[int(values[1])]
        return find_in(record, values[2 : 2 + 2 * len(record.arrived)], step)

    def _report(self, state: RunState, finding: NonFiniteFinding, *, may_raise: bool) -> None:
        message = finding.describe(self.name)
        if (finding.module, finding.direction) not in self._logged:
            self._logged.add((finding.module, finding.direction))
            self.findings.append(finding)
            state.writer.text(f"nonfinite/{finding.direction}", message, finding.step)
        if may_raise and self.action == "raise":
            raise NonFiniteError(
                message,
                module=finding.module,
                step=finding.step,
                direction=finding.direction,
                dtype=finding.dtype,
                magnitude=finding.input_magnitude,
            )
        self._reporter.warn(
            "nonfinite",
            f"{message}. Later non-finite steps are logged under nonfinite/ once per module and direction, "
            "not warned about",
        )

    def __repr__(self) -> str:
        return f"NonFiniteSentinel(action={self.action!r}, every_n_steps={self.every.n})"


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of ``tensors`` is finite, in one read-back: their sums are (a NaN or inf makes its
    sum non-finite); the rare non-finite sum of finite values, an overflow, is told apart element by element.

    >>> all_finite([torch.ones(3), torch.tensor([1.0, 2.0])]), all_finite([torch.tensor([1.0, -float("inf")])])
    (True, False)
    >>> all_finite([torch.full((4,), 3e38)])  # the sum overflows; the values are finite
    True
    """
    if not tensors:
        return True
    device = tensors[0].device
    sums = [(t.sum(dtype=torch.float32) if t.element_size() < 4 else t.sum()).to(device) for t in tensors]
    if bool(torch.stack(sums).sum().isfinite()):
        return True
    return all(bool(t.isfinite().all()) for t in tensors)  # a step found non-finite: the exact answer


def _unplaced(step: int, why: str) -> NonFiniteFinding:
    """A non-finite step whose module could not be named, and why."""
    return NonFiniteFinding(
        module="", type_name="", step=step, direction="unknown", dtype=None, produced=False, unplaced=why
    )
