"""The learning rate (and momentum) of every optimizer param group, every N steps."""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter


def group_tags(optimizers: list[Any], tag: str) -> list[tuple[str, dict[str, Any]]]:
    """``(tag, param_group)`` per group: ``lr`` for one group, ``lr/<name>`` (its ``name`` key) or ``lr/group<i>``.

    With several optimizers the optimizer's index comes first: ``lr/0/group0``.
    """
    tagged = []
    for o, optimizer in enumerate(optimizers):
        groups = optimizer.param_groups
        for g, group in enumerate(groups):
            parts = [tag]
            if len(optimizers) > 1:
                parts.append(str(o))
            if len(groups) > 1 or "name" in group:
                parts.append(str(group.get("name", f"group{g}")))
            tagged.append(("/".join(parts), group))
    return tagged


def _copied(value: Any) -> Any:
    """A tensor rate copied (on its device, no sync): the optimizer may change it in place."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


class LearningRate(Callback):
    """Logs ``lr`` of every param group, and ``momentum`` where the optimizer has one.

    >>> tracker = Tracker(net, callbacks=[LearningRate(every_n_steps=50)])             # doctest: +SKIP

    ``optimizer=None`` (the default) takes the run's optimizers: the
    framework's (Lightning, transformers create theirs inside
    ``fit()``/``train()``) or, in a plain loop, those seen stepping over the
    model's parameters. Groups are tagged by their ``name`` key where set
    (``lr/head``), else ``lr/group<i>``; one group is just ``lr``. The rate
    logged at a step is the one that step's optimizer update used (read as the
    optimizer is about to step, before a scheduler moves it). A tensor
    learning rate is handed to the writer as it is (no host sync).
    """

    reads_outputs = False

    every: Every

    def __init__(
        self, optimizer: torch.optim.Optimizer | None = None, every_n_steps: int = 50, tag: str = "lr"
    ) -> None:
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"LearningRate: optimizer must be a torch.optim.Optimizer or None (the run's "
                f"optimizers), got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.every = Every(every_n_steps, owner="LearningRate")
        self.tag = tag
        self._reporter = OnceReporter()
        self._taken: list[tuple[str, Any]] | None = None

    @override
    def on_before_optimizer_step(self, state: RunState, optimizer: Any) -> None:
        if self._taken is None:
            self._taken = self._values(state)  # the rates this step uses, before a scheduler moves them

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        taken, self._taken = self._taken, None
        values = taken if taken is not None else self._values(state)
        if not values:
            self._reporter.warn(
                "no-optimizer",
                f"LearningRate: no optimizer was seen by step {state.step} (none "
                "stepped over the model's parameters); pass it: LearningRate(optimizer)",
            )
            return
        for tag, value in values:
            state.writer.scalar(tag, value, state.step)

    def _values(self, state: RunState) -> list[tuple[str, Any]]:
        optimizers = [self.optimizer] if self.optimizer is not None else list(state.optimizers)
        values = []
        for tag, group in group_tags(optimizers, self.tag):
            values.append((tag, _copied(group["lr"])))
            momentum: Any = group.get("momentum", group.get("betas", (None,))[0])
            if momentum is not None:
                values.append(("momentum" + tag[len(self.tag) :], _copied(momentum)))
        return values
