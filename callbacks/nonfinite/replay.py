"""The model's calls in a training step, kept so that a step found non-finite can be run again module by module.

For each outermost call of the watched modules in a training step (the model itself, or the modules a
LightningModule's ``training_step`` calls), :class:`CallCapture` keeps what the call was given (references, not
copies), the random-number state it started with and, as the backward reaches them, the gradients at its
outputs. :func:`replay` runs such a call again on the eager module (unwrapped from DDP and ``torch.compile``):
the same parameters and buffers (as fresh leaves and clones, so the parameters' gradients and the running
statistics do not change), the same random numbers (dropout masks), the same arguments (cloned), then the
backward from the same output gradients. Module hooks registered around it see what the original call computed,
as long as the weights have not been updated since: the sentinel replays at the end of the backward pass.

>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5))
>>> capture = CallCapture(on_gradient=lambda: None); capture.watch([net]); capture.active = True
>>> loss = net(torch.ones(4, 3)).sum(); loss.backward()
>>> kept = capture.calls[0]; capture.remove()
>>> outputs = []
>>> with net.register_forward_hook(lambda m, args, out: outputs.append(out.detach())):
...     replay(kept)
>>> bool(outputs[0].sum() == loss), net[0].weight.grad.abs().sum().item() > 0
(True, True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from trackers.core.module_hooks import unwrap


class ReplayError(RuntimeError):
    """A call that cannot be run again faithfully; the message says why."""


@dataclass
class ModelCall:
    """One outermost call of a watched module in a training step: enough to run it again."""

    module: torch.nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    versions: tuple[int, ...]  # each tensor argument's version counter then: an in-place change since is seen
    cpu_rng: torch.Tensor
    device_rng: tuple[tuple[torch.device, torch.Tensor], ...]
    gradients: dict[int, torch.Tensor] = field(default_factory=dict)  # output index -> the gradient that reached it


class CallCapture:
    """Keeps the outermost calls of the modules it watches while ``active`` (and gradients are on).

    ``on_gradient()`` is called each time a gradient reaches a kept call's output, inside the backward pass.
    """

    def __init__(self, on_gradient: Callable[[], None]) -> None:
        self.calls: list[ModelCall] = []
        self.kept = 0  # calls kept since the count was last reset
        self.active = False
        self.watched: list[torch.nn.Module] = []
        self._on_gradient = on_gradient
        self._open: list[ModelCall | None] = []  # calls started and not ended, innermost last
        self._handles: list[RemovableHandle] = []
        self._accelerators: dict[int, tuple[torch.device, ...]] = {}  # id(module) -> the accelerator it is on

    def watch(self, modules: Iterable[torch.nn.Module]) -> None:
        """Keep the calls of ``modules`` (an outermost call only: not one made inside another watched call)."""
        for module in modules:
            self.watched.append(module)
            first = next(module.parameters(), None)
            on_accelerator = first is not None and first.device.type not in ("cpu", "meta")
            self._accelerators[id(module)] = (first.device,) if first is not None and on_accelerator else ()
            self._handles.append(module.register_forward_pre_hook(self._before, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._after, with_kwargs=True, always_call=True))

    def remove(self) -> None:
        """Take the hooks off and forget the calls."""
        for handle in self._handles:
            handle.remove()
        self._handles, self.watched, self.calls, self._open, self._accelerators = [], [], [], [], {}

    def _before(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        kept = None
        if self.active and not self._open and torch.is_grad_enabled():
            tensors = _tensors_in((args, kwargs))
            devices = {t.device for t in tensors if t.device.type not in ("cpu", "meta")}
            devices.update(self._accelerators.get(id(module), ()))
            kept = ModelCall(
                module=module,
                args=args,
                kwargs=kwargs,
                versions=tuple(tensor._version for tensor in tensors),
                cpu_rng=torch.get_rng_state(),
                device_rng=tuple(
                    (device, torch.get_device_module(device).get_rng_state(device))
                    for device in sorted(devices, key=str)
                ),
            )
            self.calls.append(kept)
            self.kept += 1
        self._open.append(kept)

    def _after(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        kept = self._open.pop() if self._open else None
        if kept is None:
            return
        for index, tensor in enumerate(outputs_of(output)):
            if tensor.grad_fn is not None:
                tensor.register_hook(functools.partial(self._gradient, kept, index))

    def _gradient(self, kept: ModelCall, index: int, gradient: torch.Tensor) -> None:
        kept.gradients[index] = gradient
        self._on_gradient()


def replay(call: ModelCall) -> None:
    """Run ``call`` again, forward then backward from the gradients its outputs got; raises :class:`ReplayError`.

    Nothing of the model changes: parameters go in as fresh leaves (their gradients are thrown away), buffers as
    clones (BatchNorm's running statistics stay), the random-number state is restored afterwards.
    """
    module = unwrap(call.module)
    if any(type(p).__name__ == "DTensor" for p in module.parameters()):
        raise ReplayError(
            "its parameters are sharded (FSDP's fully_shard): running one rank's forward again would wait for the "
            "other ranks forever"
        )
    if call.versions != tuple(tensor._version for tensor in _tensors_in((call.args, call.kwargs))):
        raise ReplayError("its inputs were changed in place after the call, so it cannot be run again as it was")
    state = {name: p.detach().requires_grad_(p.requires_grad) for name, p in module.named_parameters()}
    state.update({name: b.clone() for name, b in module.named_buffers()})
    devices = [device for device, _ in call.device_rng]
    device_type = devices[0].type if devices else "cuda"
    with torch.random.fork_rng(devices=[d.index or 0 for d in devices], device_type=device_type):
        torch.set_rng_state(call.cpu_rng)
        for device, rng in call.device_rng:
            torch.get_device_module(device).set_rng_state(rng, device)
        with torch.enable_grad(), module.register_forward_hook(_gradients_as_before(call), prepend=True):
            output = torch.func.functional_call(module, state, _cloned(call.args), _cloned(call.kwargs))
            seeds = [(t, call.gradients[i]) for i, t in enumerate(outputs_of(output)) if i in call.gradients]
            seeds = [(tensor, gradient) for tensor, gradient in seeds if tensor.grad_fn is not None]
            if seeds:
                torch.autograd.backward([t for t, _ in seeds], [g for _, g in seeds])


def _gradients_as_before(call: ModelCall) -> Callable[[torch.nn.Module, Any, Any], None]:
    """A forward hook (run first) making each replayed output's gradient the one the original output got.

    An output computed from another (a transformers model's ``loss`` from its ``logits``) gets gradient from that
    one as well as its own seed; the hook on each output replaces what arrives with what arrived the first time.
    """

    def as_before(module: torch.nn.Module, args: Any, output: Any) -> None:
        for index, tensor in enumerate(outputs_of(output)):
            if index in call.gradients and tensor.grad_fn is not None:
                tensor.register_hook(lambda _, gradient=call.gradients[index]: gradient)

    return as_before


def outputs_of(output: Any) -> list[torch.Tensor]:
    """The floating tensors a call returned, one level deep (a tensor, a tuple or list, a dict or ModelOutput)."""
    if isinstance(output, torch.Tensor):
        items: Iterable[Any] = (output,)
    elif isinstance(output, (tuple, list)):
        items = output
    elif isinstance(output, dict):
        items = output.values()
    else:
        return []
    return [item for item in items if isinstance(item, torch.Tensor) and item.is_floating_point()]


def _tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in nested tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in _tensors_in(item)]
    if isinstance(value, dict):
        return [tensor for item in value.values() for tensor in _tensors_in(item)]
    return []


def _cloned(value: Any) -> Any:
    """``value`` with its tensors cloned (detached), so a replay changing its inputs in place changes no one's."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_cloned(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_cloned(v) for v in value)
    if isinstance(value, dict):
        cloned = dict(value)  # a dict subclass (a BatchEncoding) keeps its items, as plain dict
        return {key: _cloned(item) for key, item in cloned.items()}
    return value
