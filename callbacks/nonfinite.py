"""Where NaN or inf first appear in a training step: which module, which step, forward or backward, in what dtype.

Every selected module's inputs, outputs and the gradients at both are measured on the device as they are
computed (one ``torch.aminmax`` per tensor, queued, never waited for); the values are read back once per
checking step, so the other steps never wait for the device.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback, every_step
from trackers.core.module_hooks import ModuleHooks
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState
from trackers.errors import NonFiniteError, OnceReporter

ACTIONS = ("warn", "raise")

INPUT, OUTPUT, INPUT_GRADIENT, OUTPUT_GRADIENT = range(4)
"""What a measured tensor is to a module call: an input, an output, or the gradient at one of them."""


@dataclass(frozen=True)
class Call:
    """One call of a selected module in a step (its ``named_modules()`` name and class)."""

    name: str
    type_name: str
    dtype: torch.dtype | None  # of its first floating output (else of its first floating input)
    inputs_seen: bool  # False when no floating tensor came in by position (keyword inputs are not seen)


@dataclass(frozen=True)
class StepLayout:
    """What one step's measured values are.

    ``calls`` are in the order the calls started, ``ended`` their indices in the order they ended.
    A measured tensor is a *slot*: ``links`` are ``(call, kind, slot)`` (a tensor that is one call's output
    and the next one's input is one slot, measured once); ``arrived`` the slot of each measurement in the
    order it was queued, its smallest and largest element at ``values[2 * i]`` and ``values[2 * i + 1]``.
    A gradient slot that never arrived (nothing flowed back through it) is in no measurement.
    """

    calls: tuple[Call, ...]
    ended: tuple[int, ...]
    links: tuple[tuple[int, int, int], ...]
    arrived: tuple[int, ...]


@dataclass(frozen=True)
class NonFiniteFinding:
    """Where non-finite values first appeared: ``direction`` is ``"forward"`` or ``"backward"``.

    ``produced`` says the module's own forward (or backward) turned finite values into non-finite ones; when
    False they reached it from outside the selected modules (the batch or code between modules in the
    forward, the loss in the backward). ``input_magnitude`` is the largest ``|input|`` of that call in the
    forward (None if its inputs were not seen or not finite); ``gradient_magnitude`` the largest ``|gradient|``
    that reached its output.
    """

    module: str
    type_name: str
    step: int
    direction: str
    dtype: torch.dtype | None
    produced: bool
    inputs_seen: bool = True
    input_magnitude: float | None = None
    gradient_magnitude: float | None = None

    def describe(self, owner: str = "NonFiniteSentinel") -> str:
        """The report: what was found where, and what to try.

        >>> finding = NonFiniteFinding("fc", "Linear", 7, "forward", torch.float16, True, input_magnitude=7e4)
        >>> print(finding.describe().split(". Fix")[0])  # doctest: +NORMALIZE_WHITESPACE
        NonFiniteSentinel: NaN/inf first appeared in the forward of module 'fc' (Linear) at step 7: its inputs were
        finite (largest |input| 7e+04) and its float16 output was not
        """
        where = f"module {self.module!r} ({self.type_name})"
        dtype = str(self.dtype).replace("torch.", "") if self.dtype is not None else "unknown-dtype"
        size = f"largest |input| {self.input_magnitude:.3g}" if self.input_magnitude is not None else ""
        if self.direction == "forward" and self.produced:
            if self.inputs_seen:
                what = f"its inputs were finite ({size}) and its {dtype} output was not"
            else:
                what = (
                    f"its {dtype} output was the first non-finite one; its inputs were not seen (passed by keyword, "
                    "which module hooks do not see), so they may have been non-finite already"
                )
            return (
                f"{owner}: NaN/inf first appeared in the forward of {where} at step {self.step}: {what}. Fix: look "
                "at what it computes for such inputs (log or sqrt of a negative number, division by zero, exp "
                "overflow), run it in a larger dtype (float32 rather than float16/bfloat16), or lower the learning "
                "rate and clip gradients (torch.nn.utils.clip_grad_norm_) if its weights grew too large"
            )
        if self.direction == "forward":
            return (
                f"{owner}: the inputs of {where} were already NaN/inf when it ran at step {self.step}, and no "
                "selected module before it produced them: they came from the batch or from code between modules. "
                f"Fix: check the data (torch.isfinite(inputs).all()) and the code that feeds {self.module!r}, or "
                "select more modules with include=[...]"
            )
        gradient = f" (largest |gradient| {self.gradient_magnitude:.3g})" if self.gradient_magnitude is not None else ""
        if self.produced:
            inputs = f"; in the forward its {dtype} inputs had {size}" if size else f"; its output is {dtype}"
            return (
                f"{owner}: NaN/inf first appeared in the backward of {where} at step {self.step}: the gradient at "
                f"its output was finite{gradient} and the gradient it passed to its inputs was not{inputs}. Fix: "
                "a function with an infinite derivative somewhere (sqrt or x ** 0.5 at 0, log at 0, asin/acos at "
                "±1, the norm of a zero vector) needs an epsilon or a clamp (torch.sqrt(x + 1e-12)); else lower "
                "the learning rate, clip gradients (torch.nn.utils.clip_grad_norm_), or use a larger dtype "
                "(float32, or torch.amp.GradScaler with float16)"
            )
        return (
            f"{owner}: the gradient arriving at the output of {where} ({dtype}) was already NaN/inf at step "
            f"{self.step}: it came from the loss or from code after the selected modules. Fix: check the loss for "
            "log(0), division by zero or overflow (F.cross_entropy or log_softmax rather than log(softmax(x))), "
            "lower the learning rate, or scale float16 losses with torch.amp.GradScaler"
        )


def find_nonfinite(layout: StepLayout, values: Sequence[float], step: int) -> NonFiniteFinding | None:
    """Where one step's measured values (``layout``'s ``[min, max]`` pairs) first went non-finite, or None.

    Forward first: a non-finite forward makes every gradient non-finite. The calls are taken in the order
    they *ended* (a module's children end before it does); the first call whose inputs were all finite and
    whose outputs were not produced the values, so of a module and its children the innermost one is named,
    and a module whose own code (between its children) produced them is named itself. A call whose inputs
    were not seen (keyword inputs) counts if nothing before it was non-finite. Failing that, the first call
    that *received* non-finite inputs is named: they came from the batch or from code between modules.

    Backward: a call produced non-finite gradients when the gradients at its outputs were finite (at least
    one arrived) and a gradient at one of its inputs was not: its own backward made them. Gradients flow in
    reverse execution order, so of those calls the one that *started* last is named, the first to run
    backward: the one closest to the loss and, of a module and the children it contains, the innermost.
    When one tensor feeds several selected modules the gradient at it is their sum before any hook sees it,
    so each of them looks like a producer and the one started last is named. Failing that, the call
    started last whose output gradient was non-finite is named: the gradient came from the loss or from
    code after the selected modules.

    >>> layout = StepLayout((Call("fc", "Linear", torch.float32, True),), (0,), ((0, INPUT, 0), (0, OUTPUT, 1)), (0, 1))
    >>> finding = find_nonfinite(layout, [-2.0, 3.0, float("nan"), float("nan")], step=7)
    >>> finding.module, finding.step, finding.direction, finding.produced, finding.input_magnitude
    ('fc', 7, 'forward', True, 3.0)
    """
    if all(map(math.isfinite, values)):
        return None
    slot_finite: dict[int, bool] = {}
    slot_size: dict[int, float] = {}
    for index, slot in enumerate(layout.arrived):
        low, high = values[2 * index], values[2 * index + 1]
        if math.isfinite(low) and math.isfinite(high):
            slot_finite.setdefault(slot, True)
            slot_size[slot] = max(slot_size.get(slot, 0.0), -low, high)
        else:
            slot_finite[slot] = False
    count = len(layout.calls)
    finite = [[True] * 4 for _ in range(count)]
    size: list[list[float | None]] = [[None] * 4 for _ in range(count)]
    got_gradient = [False] * count
    for call, kind, slot in layout.links:
        if slot not in slot_finite:
            continue  # a gradient that never arrived
        got_gradient[call] = got_gradient[call] or kind == OUTPUT_GRADIENT
        if not slot_finite[slot]:
            finite[call][kind] = False
        else:
            known = size[call][kind]
            size[call][kind] = slot_size[slot] if known is None else max(known, slot_size[slot])

    def finding(index: int, direction: str, produced: bool) -> NonFiniteFinding:
        call = layout.calls[index]
        inputs_finite = finite[index][INPUT] and call.inputs_seen
        return NonFiniteFinding(
            module=call.name,
            type_name=call.type_name,
            step=step,
            direction=direction,
            dtype=call.dtype,
            produced=produced,
            inputs_seen=call.inputs_seen,
            input_magnitude=size[index][INPUT] if inputs_finite else None,
            gradient_magnitude=size[index][OUTPUT_GRADIENT] if finite[index][OUTPUT_GRADIENT] else None,
        )

    first_bad: int | None = None  # the first call, in the order calls ended, with a non-finite input or output
    for index in layout.ended:
        seen = layout.calls[index].inputs_seen
        if finite[index][INPUT] and not finite[index][OUTPUT] and (seen or first_bad is None):
            return finding(index, "forward", produced=True)
        if first_bad is None and not (finite[index][INPUT] and finite[index][OUTPUT]):
            first_bad = index
    if first_bad is not None:
        return finding(first_bad, "forward", produced=False)
    for index in reversed(range(count)):
        if got_gradient[index] and finite[index][OUTPUT_GRADIENT] and not finite[index][INPUT_GRADIENT]:
            return finding(index, "backward", produced=True)
    for index in reversed(range(count)):
        if not finite[index][OUTPUT_GRADIENT]:
            return finding(index, "backward", produced=False)
    return None  # non-finite values on no selected call (a gradient measured outside any link)


def _measured(value: Any) -> Iterator[torch.Tensor]:
    """The non-empty dense floating (or complex) tensors in a module's inputs or output, one level deep."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and value.layout == torch.strided and value.numel():
            yield value  # the common case, first
            return
        items: Any = (value,)
    elif isinstance(value, (tuple, list)):
        items = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return
    for item in items:
        if (
            isinstance(item, torch.Tensor)
            and (item.is_floating_point() or item.is_complex())
            and item.layout == torch.strided
            and item.numel()
        ):
            yield item


class _StepRecord:
    """What the hooks queued in one step (see :class:`StepLayout`), and the tensors already measured in it."""

    __slots__ = ("calls", "dtypes", "inputs_seen", "ended", "links", "arrived", "measured", "slots", "known", "open")

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.dtypes: list[torch.dtype | None] = []
        self.inputs_seen: list[bool] = []
        self.ended: list[int] = []
        self.links: list[tuple[int, int, int]] = []
        self.arrived: list[int] = []  # filled by close()
        # (slot, smallest, largest) per measurement; one append each, as gradient hooks may run on autograd's
        # device threads; None once the step is closed (a late gradient is not measured)
        self.measured: list[tuple[int, torch.Tensor, torch.Tensor]] | None = []
        self.slots = 0
        # id(tensor) -> (weak reference, its grad_fn then, value slot, gradient slot or -1): a tensor that is one
        # call's output and the next one's input is measured once; an in-place change (new grad_fn) is measured
        self.known: dict[int, tuple[Any, Any, int, int]] = {}
        self.open: list[tuple[torch.nn.Module, int]] = []  # calls started and not ended, innermost last

    def close(self) -> torch.Tensor | None:
        """End the step: its measurements stacked on the device (smallest, largest per slot arrived), or None."""
        measured, self.measured, self.known, self.open = self.measured or [], None, {}, []
        self.arrived = [slot for slot, _, _ in measured]
        if not measured:
            return None
        return torch.stack([value for _, low, high in measured for value in (low, high)])

    def same_layout(self, other: _StepRecord) -> bool:
        return (
            self.arrived == other.arrived
            and self.links == other.links
            and self.ended == other.ended
            and self.calls == other.calls
            and self.dtypes == other.dtypes
            and self.inputs_seen == other.inputs_seen
        )

    def layout(self) -> StepLayout:
        calls = tuple(
            Call(name, type_name, dtype, seen)
            for (name, type_name), dtype, seen in zip(self.calls, self.dtypes, self.inputs_seen)
        )
        return StepLayout(calls, tuple(self.ended), tuple(self.links), tuple(self.arrived))


def _queue(record: _StepRecord, slot: int, tensor: torch.Tensor) -> None:
    """Queue the smallest and largest element of ``tensor`` (both finite exactly when all of it is) as ``slot``."""
    values = tensor.detach()
    if values.is_complex():
        values = torch.view_as_real(values)
    measured = record.measured
    if measured is None:
        return  # the step ended
    low, high = torch.aminmax(values)
    if measured and low.device != measured[0][1].device:  # a model spread over devices
        device = measured[0][1].device
        low, high = low.to(device, non_blocking=True), high.to(device, non_blocking=True)
    measured.append((slot, low, high))


def _on_gradient(reporter: OnceReporter, record: _StepRecord, slot: int, gradient: torch.Tensor) -> None:
    try:
        if gradient.layout == torch.strided and gradient.numel():
            _queue(record, slot, gradient)
    except Exception as error:  # inside autograd: a failure here must not stop the backward pass
        reporter.warn(
            ("gradient-hook", type(error).__name__),
            f"NonFiniteSentinel: measuring a gradient failed ({type(error).__name__}: {error}); such gradients "
            "are not checked. The run goes on",
        )


class NonFiniteSentinel(Callback):
    """Names the module, step, direction (forward/backward) and dtype where NaN or inf first appear in training.

    >>> tracker = Tracker(net, callbacks=[NonFiniteSentinel(action="raise")])           # doctest: +SKIP
    >>> for inputs, labels in loader:                                                  # doctest: +SKIP
    ...     step(inputs, labels)   # raises trackers.NonFiniteError(module='block3.attn', step=1234, ...)

    Each module selected by ``include``/``exclude`` (globs over ``named_modules()`` names, parameter-less
    modules included) gets hooks that queue, on the device, the smallest and largest element of its inputs
    and outputs in the forward and of the gradients at them in the backward: one ``torch.aminmax`` per
    tensor (a tensor passed from one module to the next is measured once), nothing read back. At the end of
    a checking step (every ``every_n_steps`` steps: steps n-1, 2n-1, ...) the values are read back in one
    transfer, the one host sync of that step and none on the others, and the culprit is found (see
    :func:`find_nonfinite`): forward, the first module whose inputs were finite and outputs not; backward,
    the module whose output gradient was finite and whose input gradient was not. With ``every_n_steps > 1``
    each step in between is folded on the device, keeping the values of the window's first non-finite step:
    the step named is the one where it happened, found at the window's end (or when the run ends).

    ``action="warn"`` warns once (a ``LooptrackWarning`` naming the module, step, direction, dtype, the
    largest input magnitude and what to try) and logs the same text under ``nonfinite/forward`` or
    ``nonfinite/backward``, once per module and direction; ``findings`` keeps them. ``action="raise"`` logs
    it too, then raises :class:`trackers.NonFiniteError` into the training loop at the end of the checking
    step, whatever ``strict`` says (a non-finite window the run ended in is only warned about). Only calls
    inside a training step are measured, not validation. The gradients are those at module inputs and
    outputs (activations), not the parameters'; inputs passed by keyword are not seen by module hooks.

    Cost: every step is measured (``every_n_steps`` saves the host sync, not the measuring): per selected
    module call a few small device ops and roughly 60 µs of host time in hooks. On the tutorial CNN on CPU
    that is about +40% of a 1.1 ms step at batch 4 and +15% at batch 64 (``torch.autograd.detect_anomaly``:
    +170% and +50%); narrow ``include`` (e.g. ``["layer4.*", "fc"]``) to pay less.
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
        self._hooks = ModuleHooks(
            include=include, exclude=exclude, forward_pre=self._before_forward, forward=self._after_forward
        )
        self.findings: list[NonFiniteFinding] = []
        self._logged: set[tuple[str, str]] = set()
        self._record: _StepRecord | None = None  # the step being measured; None between steps
        self._window: torch.Tensor | None = None  # the values of the window's first non-finite step, on the device
        self._window_found: torch.Tensor | None = None  # whether a step of the window was non-finite (bool, 0-d)
        self._window_place: torch.Tensor | None = None  # the place of the first such step in the window (0-d)
        self._window_steps: list[tuple[int, _StepRecord]] = []  # each step folded: (step, its layout); per window
        self._saw_calls = False
        self._reporter = OnceReporter()

    @override
    def module_hooks(self) -> Sequence[ModuleHooks]:
        return [self._hooks]

    # ------------------------------------------------------------ the module hooks: device ops only, no sync
    def _before_forward(self, name: str, module: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
        record = self._record
        if record is None:
            return
        call = len(record.calls)
        record.calls.append((name, type(module).__name__))
        record.open.append((module, call))
        dtype = None
        for tensor in _measured(inputs):
            if dtype is None:
                dtype = tensor.dtype
            # before the forward runs: an in-place module (ReLU(inplace=True)) has not changed its input yet
            self._link(record, call, INPUT, tensor)
        record.dtypes.append(dtype)
        record.inputs_seen.append(dtype is not None)

    def _after_forward(self, name: str, module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        record = self._record
        if record is None:
            return
        while record.open:
            opened, call = record.open.pop()
            if opened is module:
                break
        else:
            return  # its start was not seen (the step began inside it)
        first = True
        for tensor in _measured(output):
            if first:
                record.dtypes[call], first = tensor.dtype, False
            self._link(record, call, OUTPUT, tensor, fresh=any(tensor is given for given in inputs))
        record.ended.append(call)

    def _link(self, record: _StepRecord, call: int, kind: int, tensor: torch.Tensor, fresh: bool = False) -> None:
        """Link ``tensor`` to ``call`` as ``kind`` (INPUT or OUTPUT), measuring it and hooking its gradient once."""
        grad_fn = tensor.grad_fn
        known = None if fresh else record.known.get(id(tensor))
        if known is not None and known[0]() is tensor and known[1] is grad_fn:
            value_slot, gradient_slot = known[2], known[3]
        else:
            value_slot, gradient_slot = record.slots, -1
            record.slots += 1
            _queue(record, value_slot, tensor)
            if grad_fn is not None:  # an activation: a hook on a leaf (a parameter) would stay on it for good
                gradient_slot = record.slots
                record.slots += 1
                tensor.register_hook(functools.partial(_on_gradient, self._reporter, record, gradient_slot))
            record.known[id(tensor)] = (weakref.ref(tensor), grad_fn, value_slot, gradient_slot)
        record.links.append((call, kind, value_slot))
        if gradient_slot >= 0:
            record.links.append((call, kind + 2, gradient_slot))  # INPUT_GRADIENT or OUTPUT_GRADIENT

    # ------------------------------------------------------------ the steps
    @override
    @every_step
    def on_train_batch_start(self, state: RunState, batch: BatchRecord) -> None:
        self._record = _StepRecord()

    @override
    @every_step
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        record, self._record = self._record, None
        if record is None:
            return
        checking = self.every.fires(state.step_index)
        self._saw_calls = self._saw_calls or bool(record.calls)
        finding = None
        values = record.close()
        if values is not None:
            if checking and not self._window_steps:  # nothing folded before it: read this step's values
                finding = _find(record, _read_back(values), state.step)
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

    @override
    def on_train_end(self, state: RunState) -> None:
        self._record = None
        if self._window_steps:  # the run ended inside a window: check what it folded
            finding = self._check_window()
            if finding is not None:
                self._report(state, finding, may_raise=False)

    def _fold(self, values: torch.Tensor, record: _StepRecord, step: int) -> None:
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
        values = _read_back(torch.cat([found.to(window.dtype).view(1), place.to(window.dtype).view(1), window[:size]]))
        if not values[0]:
            return None
        step, record = steps[int(values[1])]
        return _find(record, values[2 : 2 + 2 * len(record.arrived)], step)

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


def _find(record: _StepRecord, values: list[float], step: int) -> NonFiniteFinding | None:
    if all(map(math.isfinite, values)):  # the common case, without building the layout
        return None
    return find_nonfinite(record.layout(), values, step)


def _read_back(values: torch.Tensor) -> list[float]:
    """The one transfer to the host of a checking step."""
    return values.to("cpu", copy=True).tolist()
