"""Which optimizers belong to the model, and when they step: torch's global optimizer step hooks.

One step is one optimizer step. The hooks tell the Tracker when the model's
optimizer stepped (so gradient-accumulation micro-batches are not counted
as steps) and give callbacks the moment gradients exist: after backward,
before the optimizer uses them and before the loop zeroes them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook


class OptimizerWatch:
    """Counts steps of the optimizers that update ``model``'s parameters (any optimizer when ``model`` is None).

    >>> watch = OptimizerWatch(net, before_step=lambda optimizer: None)   # doctest: +SKIP
    >>> optimizer.step(); watch.steps                                      # doctest: +SKIP
    1
    >>> watch.remove()                                                     # doctest: +SKIP

    Checking whether an optimizer is the model's is done once per optimizer.
    """

    def __init__(self, model: torch.nn.Module | None, before_step: Callable[[Any], None]) -> None:
        self._model_ref = weakref.ref(model) if model is not None else None
        self._before_step = before_step
        self._ours: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self.steps = 0
        self._handles = [register_optimizer_step_pre_hook(self._pre), register_optimizer_step_post_hook(self._post)]

    def _is_ours(self, optimizer: Any) -> bool:
        known = self._ours.get(optimizer)
        if known is None:
            model = self._model_ref() if self._model_ref is not None else None
            if self._model_ref is None:
                known = True
            elif model is None:
                known = False
            else:
                ids = {id(p) for p in model.parameters()}
                known = any(id(p) in ids for group in optimizer.param_groups for p in group["params"])
            self._ours[optimizer] = known
        return known

    def _pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._is_ours(optimizer):
            self._before_step(optimizer)

    def _post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._is_ours(optimizer):
            self.steps += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
