"""The learning rate (and momentum) of every optimizer param group, every N steps."""

from __future__ import annotations

from typing import Any

import torch

from callbacks.base import Callback
from trackers.schedule import Every
from trackers.state import BatchRecord, RunState


class LearningRate(Callback):
    """Logs ``lr`` (``lr/group<i>`` with several param groups) and ``momentum`` where the optimizer has one.

    >>> tracker = Tracker(net, callbacks=[LearningRate(optimizer, every_n_steps=50)])   # doctest: +SKIP

    A tensor learning rate is handed to the writer as it is (no host sync).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, every_n_steps: int = 50, tag: str = "lr") -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"LearningRate: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.every = Every(every_n_steps, owner="LearningRate")
        self.tag = tag

    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        if not self.every.fires(state.step):
            return
        groups = self.optimizer.param_groups
        for index, group in enumerate(groups):
            suffix = "" if len(groups) == 1 else f"/group{index}"
            state.writer.scalar(f"{self.tag}{suffix}", group["lr"], state.step)
            momentum: Any = group.get("momentum", group.get("betas", (None,))[0])
            if momentum is not None:
                state.writer.scalar(f"momentum{suffix}", momentum, state.step)
