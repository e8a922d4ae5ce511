"""The loss every N steps, without a host sync on the steps in between."""

from __future__ import annotations

from typing import Any

import torch

from callbacks.base import Callback
from trackers import distributed
from trackers.report import OnceReporter
from trackers.schedule import Every
from trackers.state import BatchRecord, RunState


class _MeanOnDevice:
    """A running sum kept where the values live; reading it is the only sync."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.count = 0
        self.first_step = 0

    def add(self, value: torch.Tensor | float, step: int) -> None:
        if self.count == 0:
            self.first_step = step
            if isinstance(value, torch.Tensor):
                self.total = value.detach().to(torch.float32, copy=True).reshape(())
                self.count = 1
                return
            self.total = 0.0
        if isinstance(value, torch.Tensor):
            value = value.detach().reshape(())
            if isinstance(self.total, torch.Tensor) and self.total.device == value.device:
                self.total.add_(value)
            else:
                self.total = value.to(torch.float32) + self.total
        else:
            self.total = self.total + float(value)
        self.count += 1

    def take(self) -> torch.Tensor | float:
        """The mean so far (a new tensor, or a float), and start again."""
        mean = self.total / self.count
        self.count = 0
        return mean


class LossLogger(Callback):
    """Logs the mean training loss over the last ``every_n_steps`` steps.

    >>> tracker = Tracker(net, callbacks=[LossLogger(every_n_steps=1000)],    # doctest: +SKIP
    ...                   writer="runs/fashion_mnist_experiment_1")

    The loss is summed on its own device; only the logging steps (0-based
    steps ``N-1, 2N-1, ...``, the tutorial's ``i % 1000 == 999``) hand a
    value to the writer, and even they do not wait for the device: the
    writer thread reads it. A NaN or infinite loss is logged as it is, with
    one warning naming the step. Validation losses (``eval_step`` calls)
    are averaged over each validation pass and logged as ``val_tag`` at the
    current training step; ``val_tag=None`` turns that off.

    In a distributed job, ``reduce="mean"`` averages the logged value over
    the ranks: one all-reduce per logged value, none in between.
    """

    def __init__(self, every_n_steps: int = 50, tag: str = "train/loss", val_tag: str | None = "val/loss",
                 reduce: str | None = None) -> None:
        self.every = Every(every_n_steps, owner="LossLogger")
        if reduce not in (None, "mean"):
            raise ValueError(f"LossLogger: reduce must be None or 'mean', got {reduce!r}")
        self.reduce = reduce
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"LossLogger: tag must be a non-empty string, got {tag!r}")
        if val_tag is not None and (not isinstance(val_tag, str) or not val_tag):
            raise ValueError(f"LossLogger: val_tag must be a non-empty string or None, got {val_tag!r}")
        self.tag = tag
        self.val_tag = val_tag
        self._train = _MeanOnDevice()
        self._val = _MeanOnDevice()
        self._reporter = OnceReporter()

    @property
    def every_n_steps(self) -> int:
        return self.every.n

    def on_train_start(self, state: RunState) -> None:
        self._train = _MeanOnDevice()

    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        loss = self._usable(batch.loss, state, "train_step")
        if loss is not None:
            self._train.add(loss, state.step)
        if self.every.fires(state.step) and self._train.count:
            first = self._train.first_step
            state.writer.scalar(self.tag, self._reduced(self._train.take()), state.step,
                                source=f"LossLogger, mean of steps {first}-{state.step}")

    def on_validation_start(self, state: RunState) -> None:
        self._val = _MeanOnDevice()

    def on_validation_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        if self.val_tag is not None:
            loss = self._usable(batch.loss, state, "eval_step", quiet_if_missing=True)
            if loss is not None:
                self._val.add(loss, state.validation_batch_idx)

    def on_validation_end(self, state: RunState) -> None:
        if self.val_tag is not None and self._val.count:
            state.writer.scalar(self.val_tag, self._reduced(self._val.take()), max(state.step, 0),
                                source="LossLogger, validation mean")

    def _reduced(self, mean: torch.Tensor | float) -> torch.Tensor | float:
        if self.reduce != "mean" or distributed.world_size() == 1:
            return mean
        if not isinstance(mean, torch.Tensor):
            mean = torch.tensor(float(mean))
        return distributed.mean_across_ranks(mean)

    def _usable(self, loss: Any, state: RunState, where: str, quiet_if_missing: bool = False) -> Any:
        if loss is None:
            if not quiet_if_missing:
                self._reporter.warn(
                    ("missing", where),
                    f"LossLogger: the {where} at step {state.step} gave no loss; return the loss tensor "
                    "(or {'loss': loss, ...}) from the decorated function",
                )
            return None
        if isinstance(loss, torch.Tensor) and loss.numel() != 1:
            self._reporter.warn(
                ("shape", where),
                f"LossLogger: the {where} loss has shape {tuple(loss.shape)}; a scalar is needed "
                "(reduce it, e.g. criterion with reduction='mean'); such losses are skipped",
            )
            return None
        if not isinstance(loss, (torch.Tensor, int, float)) or isinstance(loss, bool):
            self._reporter.warn(
                ("type", where),
                f"LossLogger: the {where} loss is a {type(loss).__name__}; return a tensor or a number",
            )
            return None
        return loss

    def __repr__(self) -> str:
        reduce = f", reduce={self.reduce!r}" if self.reduce else ""
        return f"LossLogger(every_n_steps={self.every.n}, tag={self.tag!r}{reduce})"
