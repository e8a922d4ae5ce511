"""Forward hooks that fill in what the loop does not hand over: the outputs and the first input."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.hooks import RemovableHandle


def detach_tree(value: Any) -> Any:
    """``value`` with every tensor in it detached (views, not copies)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(detach_tree(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(detach_tree(v) for v in value)
    if isinstance(value, dict):
        return {k: detach_tree(v) for k, v in value.items()}
    return value


def takes_forward_hooks(model: torch.nn.Module) -> bool:
    """Whether Python forward hooks can be put on ``model``: a TorchScript module (``torch.jit.script`` or
    ``torch.jit.trace``) refuses them.

    >>> takes_forward_hooks(torch.nn.Linear(3, 2))
    True
    """
    return not isinstance(model, torch.jit.ScriptModule)


def meta_tensors(model: torch.nn.Module) -> list[str]:
    """The names of ``model``'s parameters and buffers on the ``meta`` device: shapes without values.

    >>> with torch.device("meta"):
    ...     meta_tensors(torch.nn.Linear(3, 2))
    ['weight', 'bias']
    """
    named = [*model.named_parameters(), *model.named_buffers()]
    return [name for name, tensor in named if tensor.is_meta]


class ForwardCapture:
    """Keeps the model's latest outputs (detached, not copied) and its first call's inputs.

    >>> capture = ForwardCapture(torch.nn.Linear(3, 2))
    >>> _ = capture.model(torch.ones(4, 3))
    >>> capture.outputs.shape, capture.outputs.requires_grad
    (torch.Size([4, 2]), False)
    >>> capture.remove()

    A model that refuses forward hooks (a TorchScript module) is watched
    without them: ``hooked`` is False and ``outputs``/``first_args`` stay None.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                f"Tracker(model=...) takes a torch.nn.Module, got {type(model).__name__}; "
                "pass your network (or model=None to track without forward hooks)"
            )
        self.model = model
        self.outputs: Any = None
        self.first_args: tuple[Any, ...] | None = None
        self.first_kwargs: dict[str, Any] | None = None
        self.last_args: tuple[Any, ...] = ()
        self.last_kwargs: dict[str, Any] = {}
        self.hooked = takes_forward_hooks(model)
        self._handles: list[RemovableHandle] = []
        if self.hooked:
            self._handles = [
                model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
                model.register_forward_hook(self._after_forward),
            ]

    def _before_forward(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.last_args, self.last_kwargs = args, kwargs  # references only, for loop adapters
        if self.first_args is None:
            self.first_args = detach_tree(args)
            self.first_kwargs = detach_tree(kwargs)

    def _after_forward(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, torch.Tensor):
            if output.ndim == 0 and self.outputs is not None:
                # a scalar after this batch's real outputs: Lightning's DDP calls the module once more
                # with forward redirected to training_step, which returns the loss
                return
            self.outputs = output.detach()
        else:
            self.outputs = detach_tree(output)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
