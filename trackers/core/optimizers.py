"""Which optimizers belong to the model, and when they step: torch's global optimizer step hooks.

One step is one optimizer step. The hooks tell the Tracker when the model's
optimizer stepped (so gradient-accumulation micro-batches are not counted
as steps) and give callbacks the moment ``optimizer.step()`` is called: after
backward in a plain loop, ignite and transformers; before it under Lightning,
whose closure runs the forward and backward inside ``step()``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils.hooks import RemovableHandle


class OptimizerWatch:
    """Counts steps of the optimizers that update ``model``'s parameters (any optimizer when ``model`` is None).

    >>> watch = OptimizerWatch(net, first_seen=print)                      # doctest: +SKIP
    >>> optimizer.step(); watch.steps                                      # doctest: +SKIP
    1
    >>> watch.remove()                                                     # doctest: +SKIP

    Checking whether an optimizer is the model's is done once per optimizer;
    ``first_seen(optimizer)`` is called then, ``before_step(optimizer)``
    before each of its steps while ``watch_before_steps(True)`` (from the
    start unless ``before_steps=False``), ``after_step(optimizer)`` after each. Every ``optimizer.step()`` in the
    process calls the hooks registered, so the one before the step is
    registered only while it is watched.
    """

    def __init__(
        self,
        model: torch.nn.Module | None,
        before_step: Callable[[Any], None] | None = None,
        first_seen: Callable[[Any], None] | None = None,
        *,
        before_steps: bool = True,
        after_step: Callable[[Any], None] | None = None,
    ) -> None:
        self._after_step = after_step
        self._model_ref = weakref.ref(model) if model is not None else None
        self._before_step = before_step
        self._first_seen = first_seen
        self._ours: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._last: weakref.ref[Any] | None = None  # the optimizer asked about last, known to be the model's
        self.steps = 0
        self._handles = [register_optimizer_step_post_hook(self._post)]
        self._pre_handle: RemovableHandle | None = None
        self.watch_before_steps(before_steps)

    def watch_before_steps(self, watch: bool) -> None:
        """Call ``before_step`` before the model's optimizer steps from now on (``True``), or stop."""
        if self._before_step is None:
            return
        if watch and self._pre_handle is None:
            self._pre_handle = register_optimizer_step_pre_hook(self._pre)
        elif not watch and self._pre_handle is not None:
            self._pre_handle.remove()
            self._pre_handle = None

    def _is_ours(self, optimizer: Any) -> bool:
        if self._last is not None and self._last() is optimizer:  # the usual case: the same optimizer every step
            return True
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
            if known and self._first_seen is not None:
                self._first_seen(optimizer)
        if known:
            self._last = weakref.ref(optimizer)
        return known

    def _pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._is_ours(optimizer) and self._before_step is not None:
            self._before_step(optimizer)

    def _post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        last = self._last
        if (last is not None and last() is optimizer) or self._is_ours(optimizer):
            self.steps += 1
            if self._after_step is not None:
                self._after_step(optimizer)

    def remove(self) -> None:
        self.watch_before_steps(False)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
