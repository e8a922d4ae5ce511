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
    """Keeps the model's first call's inputs and, while asked to, its latest outputs (detached, not copied).

    >>> capture = ForwardCapture(torch.nn.Linear(3, 2))
    >>> capture.watch_first_call(); capture.watch_outputs(True)
    >>> _ = capture.model(torch.ones(4, 3))
    >>> capture.outputs.shape, capture.outputs.requires_grad, capture.first_args[0].shape
    (torch.Size([4, 2]), False, torch.Size([4, 3]))
    >>> capture.remove()

    A forward hook makes every call of the model take ``nn.Module``'s slower
    path, so hooks are on the model only while needed: the one keeping the
    first call's inputs from ``watch_first_call()`` (the run's start) until
    that call, the one keeping the outputs while ``watch_outputs(True)`` (the
    Tracker asks for the batches whose callbacks may read them). A model
    that refuses forward hooks (a TorchScript module) is watched without
    them: ``hooked`` is False and ``outputs``/``first_args`` stay None.
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
        self.hooked = takes_forward_hooks(model)
        self._first_call: RemovableHandle | None = None
        self._outputs_hook: RemovableHandle | None = None

    def watch_first_call(self) -> None:
        """Keep the inputs of the model's next call, if no call was kept yet (the hook then takes itself off)."""
        if self.hooked and self.first_args is None and self._first_call is None:
            self._first_call = self.model.register_forward_pre_hook(self._before_first_forward, with_kwargs=True)

    def watch_outputs(self, watch: bool) -> None:
        """Keep the outputs of the model's calls from now on (``True``), or stop and take the hook off."""
        if watch == (self._outputs_hook is not None) or not self.hooked:
            return
        if watch:
            self._outputs_hook = self.model.register_forward_hook(self._after_forward)
        else:
            self._remove_outputs_hook()

    def _before_first_forward(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.first_args = detach_tree(args)
        self.first_kwargs = detach_tree(kwargs)
        if self._first_call is not None:  # its work is done: later calls go the fast way again
            self._first_call.remove()
            self._first_call = None

    def _after_forward(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, torch.Tensor):
            if output.ndim == 0 and self.outputs is not None:
                # a scalar after this batch's real outputs: Lightning's DDP calls the module once more
                # with forward redirected to training_step, which returns the loss
                return
            self.outputs = output.detach()
        else:
            self.outputs = detach_tree(output)

    def _remove_outputs_hook(self) -> None:
        if self._outputs_hook is not None:
            self._outputs_hook.remove()
            self._outputs_hook = None

    def remove(self) -> None:
        """Take looptrack's hooks off the model."""
        if self._first_call is not None:
            self._first_call.remove()
            self._first_call = None
        self._remove_outputs_hook()
