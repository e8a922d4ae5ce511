"""Hooks callbacks ask for on the model's modules, chosen by name: registered once, before the first step, and
removed when the run closes.

A callback says what it wants from :meth:`~trackers.core.callback.Callback.module_hooks`; the Tracker
registers it on the model it was given, unwrapped from ``DistributedDataParallel``, FSDP1 and
``torch.compile`` so that names are the ones ``named_modules()`` gives for the bare model. Nothing is added or
removed while training runs: hooks added after ``torch.compile`` traced the model would be ignored, and adding
or removing them forces a recompile.

>>> seen = []
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
>>> hooks = ModuleHookSet()
>>> hooks.register(net, [("Demo", ModuleHooks(include=["1"], forward=lambda name, m, i, o: seen.append(name)))])
{'Demo': ['1']}
>>> _ = net(torch.ones(2, 3)); hooks.remove(); _ = net(torch.ones(2, 3))
>>> seen
['1']
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

ForwardHook = Callable[[str, torch.nn.Module, tuple[Any, ...], Any], None]
"""``(name, module, inputs, output)``, after the module's forward."""
ForwardPreHook = Callable[[str, torch.nn.Module, tuple[Any, ...]], None]
"""``(name, module, inputs)``, before the module's forward."""
BackwardHook = Callable[[str, torch.nn.Module, torch.Tensor], None]
"""``(name, module, grad)``: the gradient of the loss with respect to one tensor the module's forward returned."""


@dataclass(frozen=True)
class ModuleHooks:
    """Hooks on the modules whose ``named_modules()`` names match a glob of ``include`` and none of ``exclude``.

    ``include=["*"]`` is every module but the root (whose name is ``""``; ``include=[""]`` selects it), parameter
    -less ones (ReLU, GELU, Dropout) included; ``["layer1.*"]`` is everything inside ``layer1``;
    ``exclude=["*.dropout"]`` leaves some out. ``backward`` is called with the gradient of each tensor the
    module's forward returned, as it is computed (a hook on the output tensor: unlike
    ``register_full_backward_hook`` it works beside in-place ops such as ``ReLU(inplace=True)``).

    >>> ModuleHooks(include=["features.*"], exclude=["*.2"]).selects("features.1")
    True
    """

    include: Sequence[str] = ("*",)
    exclude: Sequence[str] = ()
    forward: ForwardHook | None = None
    forward_pre: ForwardPreHook | None = None
    backward: BackwardHook | None = None

    def __post_init__(self) -> None:
        for field in ("include", "exclude"):
            value = getattr(self, field)
            if isinstance(value, str) or not all(isinstance(p, str) for p in value):
                raise TypeError(
                    f"ModuleHooks: {field} must be a list of glob patterns like ['layer1.*'], got {value!r}"
                )

    def selects(self, name: str) -> bool:
        """Whether the module named ``name`` gets these hooks."""
        if not name and "" not in self.include:
            return False
        matches = functools.partial(fnmatch.fnmatchcase, name)
        return any(map(matches, self.include)) and not any(map(matches, self.exclude))


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside ``DistributedDataParallel``, FSDP1 (``.module``) and ``torch.compile`` (``._orig_mod``).

    FSDP2's ``fully_shard`` and DeepSpeed-style in-place wrappers keep the model's names (``fully_shard`` swaps
    each sharded module's class for a subclass ``FSDP<Name>``: :func:`type_name` gives ``<Name>``).
    """
    while True:
        if type(model).__name__ == "OptimizedModule":  # torch.compile's wrapper
            inner = model._orig_mod
        elif _wraps_in_module(model):
            inner = model.module
        else:
            return model
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def type_name(module: torch.nn.Module) -> str:
    """The module's class name as the user wrote it: ``Linear`` also for FSDP2's ``FSDPLinear``.

    >>> type_name(torch.nn.Linear(2, 2))
    'Linear'
    """
    cls = type(module)
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch built without distributed
        return cls.__name__
    if isinstance(module, FSDPModule):
        return next(base.__name__ for base in cls.__mro__[1:] if not issubclass(base, FSDPModule))
    return cls.__name__


def _wraps_in_module(model: torch.nn.Module) -> bool:
    from torch.nn.parallel import DistributedDataParallel

    wrappers: tuple[type, ...] = (DistributedDataParallel, torch.nn.DataParallel)
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrappers += (FullyShardedDataParallel,)
    except ImportError:  # torch built without distributed
        pass
    return isinstance(model, wrappers)


HookFailed = Callable[[str, str, BaseException], None]
"""``(owner, module name, error)``: a hook raised; it decides whether to re-raise (strict) or report."""


class ModuleHookSet:
    """The module hooks of one run: :meth:`register` them once, :meth:`remove` them all at the end.

    A hook that raises never stops the forward or backward pass unless ``on_error`` re-raises.
    """

    def __init__(self, on_error: HookFailed | None = None) -> None:
        self._handles: list[RemovableHandle] = []
        self._on_error = on_error

    def register(self, model: torch.nn.Module, requests: Iterable[tuple[str, ModuleHooks]]) -> dict[str, list[str]]:
        """Register each ``(owner, hooks)`` request on the modules it selects; the names selected, per owner."""
        named = list(unwrap(model).named_modules())
        selected: dict[str, list[str]] = {}
        for owner, hooks in requests:
            names = selected.setdefault(owner, [])
            for name, module in named:
                if hooks.selects(name):
                    names.append(name)
                    self._add(owner, name, module, hooks)
        return selected

    def _add(self, owner: str, name: str, module: torch.nn.Module, hooks: ModuleHooks) -> None:
        guard = functools.partial(self._guarded, owner, name)
        if hooks.forward_pre is not None:
            pre = hooks.forward_pre
            self._handles.append(module.register_forward_pre_hook(lambda m, args: guard(pre, m, args)))
        if hooks.forward is not None:
            forward = hooks.forward
            self._handles.append(module.register_forward_hook(lambda m, args, out: guard(forward, m, args, out)))
        if hooks.backward is not None:
            backward = hooks.backward

            def on_output(m: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
                for tensor in _tensors(output):
                    if tensor.grad_fn is not None:  # not a leaf (a parameter returned as it is): hooks would pile up
                        tensor.register_hook(lambda grad, m=m: guard(backward, m, grad))

            self._handles.append(module.register_forward_hook(on_output))

    def _guarded(self, owner: str, name: str, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(name, *args)
        except Exception as error:
            if self._on_error is None:
                raise
            self._on_error(owner, name, error)

    def remove(self) -> None:
        """Remove every hook registered; calling it again does nothing."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __len__(self) -> int:
        return len(self._handles)


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for t in output if isinstance(t, torch.Tensor)]
    if isinstance(output, dict):
        return [t for t in output.values() if isinstance(t, torch.Tensor)]
    return []
