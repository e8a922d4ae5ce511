"""The loss every N steps, without a host sync on the steps in between."""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback, every_step
from trackers.core import distributed, hints
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter


class _MeanOnDevice:
    """A running weighted sum kept where the values live; reading it is the only sync.

    Each tensor is added in place at once (its value as the device computes
    it, in stream order: a loss buffer the loop reuses is read in time).

    >>> window = _MeanOnDevice()
    >>> for step, value in enumerate([torch.tensor(1.0), torch.tensor([2.0]), 6.0]):
    ...     window.add(value, step)
    >>> window.take()
    tensor(3.)
    """

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.count = 0  # how many values were added
        self.weight = 0.0  # their total weight
        self.first_step = 0

    def add(self, value: torch.Tensor | float, step: int, weight: float = 1.0) -> None:
        count = self.count
        if count == 0:
            self.first_step = step
            self.total = 0.0
        self.count = count + 1
        self.weight += weight
        if not isinstance(value, torch.Tensor):
            self.total = self.total + float(value) * weight
            return
        value = value.detach()
        total = self.total
        if weight == 1 and isinstance(total, torch.Tensor) and value.dtype is torch.float32 and value.ndim == 0:
            try:
                total.add_(value)  # the usual step: one in-place add on the loss's device
                return
            except RuntimeError:  # the loss moved to another device: the general way below
                pass
        value = value.reshape(())
        if value.dtype != torch.float32:
            value = value.float()
        term = value * weight if weight != 1 else value
        if isinstance(total, torch.Tensor) and total.device == term.device:
            total.add_(term)
        else:
            self.total = term + total if count else term.clone()

    def take(self) -> torch.Tensor | float:
        """The weighted mean so far (a new tensor, or a float), and start again."""
        mean = self.total / self.weight
        self.count, self.weight = 0, 0.0
        return mean


class LossLogger(Callback):
    """Logs the mean training loss over the last ``every_n_steps`` steps, and each evaluation pass's loss.

    >>> tracker = Tracker(net, callbacks=[LossLogger(every_n_steps=1000)],    # doctest: +SKIP
    ...                   writer="runs/fashion_mnist_experiment_1")

    One step is one optimizer step; the training value is the mean over
    every micro-batch of the window (with gradient accumulation too). The
    loss is summed on its own device; only the logging steps (the
    ``every_n_steps``-th, ``2*every_n_steps``-th... step of the run, the
    tutorial's ``i % 1000 == 999``) hand a value to the writer, and even they
    do not wait for the device: the writer thread reads it. A NaN or
    infinite loss is logged as it is.

    An evaluation pass's loss is logged at the current training step as
    ``val_tag`` (validation) or ``test_tag`` (a test pass; ``predict/loss``
    for predict passes that have one): the loss the framework computed for
    the pass when it did (Lightning's logged ``val_loss``, ignite's ``Loss``
    metric, transformers' ``eval_loss``), else the mean of the batches'
    losses weighted by their number of samples, as the frameworks weigh
    theirs. A pass without any loss is reported once, with the fix for the
    loop in use. ``val_tag=None`` turns evaluation losses off.

    In a distributed job, ``reduce="mean"`` averages the logged value over
    the ranks: one all-reduce per logged value, none in between.
    """

    every: Every
    reads_outputs = False  # only batch.loss: the Tracker need not keep the model's outputs for LossLogger

    def __init__(
        self,
        every_n_steps: int = 50,
        tag: str = "train/loss",
        val_tag: str | None = "val/loss",
        reduce: str | None = None,
        test_tag: str = "test/loss",
    ) -> None:
        self.every = Every(every_n_steps, owner="LossLogger")
        if reduce not in (None, "mean"):
            raise ValueError(f"LossLogger: reduce must be None or 'mean', got {reduce!r}")
        self.reduce = reduce
        for name, value in (("tag", tag), ("test_tag", test_tag)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"LossLogger: {name} must be a non-empty string, got {value!r}")
        if val_tag is not None and (not isinstance(val_tag, str) or not val_tag):
            raise ValueError(f"LossLogger: val_tag must be a non-empty string or None, got {val_tag!r}")
        self.tag = tag
        self.val_tag = val_tag
        self.test_tag = test_tag
        self._train = _MeanOnDevice()
        self._eval = _MeanOnDevice()
        self._eval_batches = 0
        self._reporter = OnceReporter()

    @property
    def every_n_steps(self) -> int:
        return self.every.n

    @override
    def on_train_start(self, state: RunState) -> None:
        self._train = _MeanOnDevice()

    @override
    @every_step  # every step's loss goes into the window's mean; the window is written when self.every fires
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        loss = batch.loss
        if not isinstance(loss, torch.Tensor) or loss.ndim:  # a 0-d tensor, the usual loss, needs no check
            loss = self._usable(loss, state, "train")
        if loss is not None:
            self._train.add(loss, state.step, batch.micro_batches or 1)
        if self.every.fires(state.step_index) and self._train.count:
            first = self._train.first_step
            state.writer.scalar(
                self.tag,
                self._reduced(self._train.take()),
                state.step,
                source=f"LossLogger, mean of steps {first}-{state.step}",
            )

    @override
    def on_validation_start(self, state: RunState) -> None:
        self._eval = _MeanOnDevice()
        self._eval_batches = 0

    @override
    def on_validation_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        self._eval_batches += 1
        if self._tag_for(state.stage) is None:
            return
        loss = self._usable(batch.loss, state, state.stage, quiet_if_missing=True)
        if loss is not None:
            self._eval.add(loss, state.validation_batch_idx, weight=float(batch.size or 1))

    @override
    def on_validation_end(self, state: RunState) -> None:
        tag = self._tag_for(state.stage)
        if tag is None:
            return
        if state.pass_loss is not None:
            value = state.pass_loss
            source = f"LossLogger, the {state.stage} loss {state.loop} computed"
        elif self._eval.count:
            value = self._eval.take()
            source = f"LossLogger, {state.stage} mean weighted by samples"
        else:
            if self._eval_batches and state.stage != "predict":
                self._reporter.warn(
                    ("no-loss", state.stage),
                    f"LossLogger: the {state.stage} pass had {self._eval_batches} batches but no loss, "
                    f"so {tag} is not logged; {hints.missing_loss_fix(state.loop, state.stage)}",
                )
            return
        state.writer.scalar(tag, self._reduced(value), max(state.step, 0), source=source)

    on_test_start = on_validation_start
    on_test_batch_end = on_validation_batch_end
    on_test_end = on_validation_end

    def _tag_for(self, stage: str) -> str | None:
        if self.val_tag is None:
            return None
        return {"validation": self.val_tag, "test": self.test_tag}.get(stage, f"{stage}/loss")

    def _reduced(self, mean: torch.Tensor | float) -> torch.Tensor | float:
        if self.reduce != "mean" or distributed.world_size() == 1:
            return mean
        if not isinstance(mean, torch.Tensor):
            mean = torch.tensor(float(mean))
        return distributed.mean_across_ranks(mean)

    def _usable(self, loss: Any, state: RunState, stage: str, quiet_if_missing: bool = False) -> Any:
        where = "training step" if stage == "train" else f"{stage} batch"
        if loss is None:
            if not quiet_if_missing:
                self._reporter.warn(
                    ("missing", stage),
                    f"LossLogger: the {where} at step {state.step} gave no loss, so {self.tag} is not logged; "
                    f"{hints.missing_loss_fix(state.loop, stage)}",
                )
            return None
        if isinstance(loss, torch.Tensor) and loss.numel() != 1:
            self._reporter.warn(
                ("shape", stage),
                f"LossLogger: the {where} loss has shape {tuple(loss.shape)}; a scalar is needed "
                "(reduce it, e.g. criterion with reduction='mean'); such losses are skipped",
            )
            return None
        if not isinstance(loss, (torch.Tensor, int, float)) or isinstance(loss, bool):
            self._reporter.warn(
                ("type", stage),
                f"LossLogger: the {where} loss is a {type(loss).__name__}; a tensor or a number is needed",
            )
            return None
        return loss

    def __repr__(self) -> str:
        reduce = f", reduce={self.reduce!r}" if self.reduce else ""
        return f"LossLogger(every_n_steps={self.every.n}, tag={self.tag!r}{reduce})"
