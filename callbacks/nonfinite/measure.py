"""Measuring module calls as they run: the smallest and largest element of every selected module's inputs and
outputs in the forward and of the gradients at them in the backward, one ``torch.aminmax`` per tensor, queued on
the device and read back in one transfer.

>>> from trackers.core.module_hooks import ModuleHookSet
>>> measure = CallMeasure()
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
>>> hooks = ModuleHookSet()
>>> _ = hooks.register(net, [("demo", measure.module_hooks(["*"], []))])
>>> record = measure.start()
>>> net(torch.ones(4, 3)).sum().backward(); hooks.remove()
>>> values = measure.stop()
>>> [call.name for call in record.layout().calls], len(read_back(values)) == 2 * len(record.arrived)
(['0', '1'], True)
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from callbacks.nonfinite.finding import (
    INPUT,
    OUTPUT,
    Call,
    NonFiniteFinding,
    StepLayout,
    find_nonfinite,
)
from trackers.core.module_hooks import ModuleHooks, type_name
from trackers.errors import OnceReporter


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


class StepRecord:
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

    def same_layout(self, other: StepRecord) -> bool:
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


def _queue(record: StepRecord, slot: int, tensor: torch.Tensor) -> None:
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


def _on_gradient(reporter: OnceReporter, record: StepRecord, slot: int, gradient: torch.Tensor) -> None:
    try:
        if gradient.layout == torch.strided and gradient.numel():
            _queue(record, slot, gradient)
    except Exception as error:  # inside autograd: a failure here must not stop the backward pass
        reporter.warn(
            ("gradient-hook", type(error).__name__),
            f"NonFiniteSentinel: measuring a gradient failed ({type(error).__name__}: {error}); such gradients "
            "are not checked. The run goes on",
        )


class CallMeasure:
    """The module hooks that measure calls into the :class:`StepRecord` between :meth:`start` and :meth:`stop`."""

    def __init__(self, reporter: OnceReporter | None = None) -> None:
        self.record: StepRecord | None = None  # the step being measured; None between steps
        self._reporter = reporter if reporter is not None else OnceReporter()

    def module_hooks(self, include: Sequence[str], exclude: Sequence[str]) -> ModuleHooks:
        """The hooks to register on the modules to measure."""
        return ModuleHooks(
            include=include, exclude=exclude, forward_pre=self.before_forward, forward=self.after_forward
        )

    def start(self) -> StepRecord:
        """Measure the calls from now on into a new record."""
        self.record = StepRecord()
        return self.record

    def stop(self) -> torch.Tensor | None:
        """Stop measuring: the values measured, on the device (see :meth:`StepRecord.close`), or None."""
        record, self.record = self.record, None
        return record.close() if record is not None else None

    def before_forward(self, name: str, module: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
        record = self.record
        if record is None:
            return
        call = len(record.calls)
        record.calls.append((name, type_name(module)))
        record.open.append((module, call))
        dtype = None
        for tensor in _measured(inputs):
            if dtype is None:
                dtype = tensor.dtype
            # before the forward runs: an in-place module (ReLU(inplace=True)) has not changed its input yet
            self._link(record, call, INPUT, tensor)
        record.dtypes.append(dtype)
        record.inputs_seen.append(dtype is not None)

    def after_forward(self, name: str, module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        record = self.record
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

    def _link(self, record: StepRecord, call: int, kind: int, tensor: torch.Tensor, fresh: bool = False) -> None:
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


def find_in(record: StepRecord, values: list[float], step: int) -> NonFiniteFinding | None:
    """Where ``record``'s step (whose values were read back as ``values``) first went non-finite, or None."""
    if all(map(math.isfinite, values)):  # the common case, without building the layout
        return None
    return find_nonfinite(record.layout(), values, step)


def read_back(values: torch.Tensor) -> list[float]:
    """The one transfer to the host of a checking step."""
    return values.to("cpu", copy=True).tolist()
