"""Where NaN or inf first appeared in one step, from the smallest and largest value of every tensor measured."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

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
    """Where non-finite values first appeared: ``direction`` is ``"forward"`` or ``"backward"`` (``"unknown"``,
    with ``module`` empty, when a step checked whole was non-finite and running it again could not say where:
    ``unplaced`` says why).

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
    unplaced: str | None = None  # why no module is named (direction "unknown"): the step was non-finite as a whole

    def describe(self, owner: str = "NonFiniteSentinel") -> str:
        """The report: what was found where, and what to try.

        >>> finding = NonFiniteFinding("fc", "Linear", 7, "forward", torch.float16, True, input_magnitude=7e4)
        >>> print(finding.describe().split(". Fix")[0])  # doctest: +NORMALIZE_WHITESPACE
        NonFiniteSentinel: NaN/inf first appeared in the forward of module 'fc' (Linear) at step 7: its inputs were
        finite (largest |input| 7e+04) and its float16 output was not
        """
        if self.unplaced is not None:
            return (
                f"{owner}: the gradients of training step {self.step} were NaN/inf, but no module can be named: "
                f"{self.unplaced}. Fix: check the loss and the batch of that step (torch.isfinite(x).all()); "
                "NonFiniteSentinel(every_n_steps=k) measures every module call as it runs instead"
            )
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
