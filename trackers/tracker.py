"""The Tracker: one training run, its callbacks, its writer and the model's forward hooks."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from callbacks.base import Callback
from trackers import distributed, lifecycle
from trackers.capture import ForwardCapture, detach_tree
from trackers.dispatch import CallbackList
from trackers.report import OnceReporter
from trackers.state import BatchRecord, RunState
from trackers.steps import split_arguments, split_result
from trackers.writers.base import Writer
from trackers.writers.registry import resolve_writer

StepFn = TypeVar("StepFn", bound=Callable[..., Any])


def default_callbacks() -> list[Callback]:
    """What ``Tracker(model)`` logs when no callbacks are given: the loss every 50 steps and the model's graph."""
    from callbacks.graph import GraphTrace
    from callbacks.loss import LossLogger

    return [LossLogger(), GraphTrace()]


class Tracker:
    """Watches one training run and logs it through callbacks.

    The plain-loop way in, the tutorial's loop changed as little as possible::

        with Tracker(net, callbacks=[LossLogger(every_n_steps=1000)],
                     writer="runs/fashion_mnist_experiment_1") as tracker:
            @tracker.train_step
            def train_step(inputs, labels):
                optimizer.zero_grad()
                loss = criterion(net(inputs), labels)
                loss.backward()
                optimizer.step()
                return loss
            for epoch in tracker.epochs(2):
                for inputs, labels in trainloader:
                    train_step(inputs, labels)

    ``callbacks=None`` gets :func:`default_callbacks`; ``writer`` is a log
    dir, a backend name (``"tensorboard"``, ``"memory"``) or a
    :class:`~trackers.writers.Writer`; ``None`` means TensorBoard in
    ``runs/<datetime>_<host>``. With ``strict=True`` a failing callback or
    writer raises instead of being reported and skipped. ``resume_step=T``
    continues a run in the same log dir at step T, removing the old events
    at and after T so curves don't double back. In a distributed
    job only rank zero writes; the other ranks run the same callbacks (so
    their collectives line up) into a do-nothing writer.

    Leaving the ``with`` block (or :meth:`close`) ends the run: the
    end-of-run callbacks run, everything is flushed and the writer closed.
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        callbacks: Iterable[Callback] | None = None,
        writer: Writer | str | os.PathLike[str] | None = None,
        *,
        strict: bool = False,
        resume_step: int | None = None,
    ) -> None:
        if resume_step is not None and (isinstance(resume_step, bool) or not isinstance(resume_step, int)
                                        or resume_step < 0):
            raise ValueError(f"Tracker: resume_step must be a non-negative integer, got {resume_step!r}")
        if resume_step is not None and isinstance(writer, Writer):
            raise ValueError("Tracker(resume_step=...) needs writer= as a log dir or backend name; for a writer "
                             "you built, pass purge_step to it (TensorBoardWriter(log_dir, purge_step=T))")
        self.callbacks = CallbackList(default_callbacks() if callbacks is None else callbacks, strict=strict)
        self._capture = ForwardCapture(model) if model is not None else None
        if not distributed.is_rank_zero() and isinstance(writer, Writer):
            writer.close()  # one run per job: only rank zero writes
            writer = None
        options = {} if resume_step is None else {"purge_step": resume_step}
        try:
            self.writer = resolve_writer(writer, rank_zero=distributed.is_rank_zero(), **options)
        except BaseException:
            if self._capture is not None:
                self._capture.remove()  # leave the model without our hooks
            raise
        if strict:
            self.writer.strict = True
        self.strict = strict
        self.state = RunState(model=model, writer=self.writer, strict=strict, capture=self._capture)
        if resume_step is not None:
            self.state.step = resume_step - 1  # the next training step is resume_step
        self._reporter = OnceReporter()
        self._started = False
        self._closed = False
        self._exception_seen = False
        self._validation: str | None = None  # None, "explicit" or "implicit"
        self._epochs_started = False
        lifecycle.register_tracker(self)

    @classmethod
    def from_config(cls, source: str | os.PathLike[str] | Mapping[str, Any], model: torch.nn.Module | None = None,
                    *, allow_imports: bool = False) -> Tracker:
        """A tracker whose callbacks and writer are selected in a YAML/TOML file or a dict.

        >>> tracker = Tracker.from_config("examples/tracking.yaml", net)          # doctest: +SKIP

        Names are looked up in the registry and arguments checked against the
        constructors before anything is built; see :mod:`trackers.config`.
        ``allow_imports=True`` lets the config name classes by import path.
        """
        from trackers.config import build, load_config

        callbacks, writer, strict = build(load_config(source), allow_imports=allow_imports)
        return cls(model, callbacks=callbacks, writer=writer, strict=strict)

    # ------------------------------------------------------------ properties
    @property
    def model(self) -> torch.nn.Module | None:
        return self.state.model

    @property
    def log_dir(self) -> str | None:
        """The run's directory, for writers that have one."""
        return getattr(self.writer, "log_dir", None)

    @property
    def step(self) -> int:
        """0-based index of the current or last training step (-1 before the first)."""
        return self.state.step

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def first_inputs(self) -> tuple[Any, ...] | None:
        """The positional arguments of the model's first forward call (detached), if a model is tracked."""
        return self.state.first_inputs

    # -------------------------------------------------------------- run life
    def start(self) -> Tracker:
        """Start the run (``on_train_start``); the first step or ``with`` does it for you."""
        if not self._started and not self._closed:
            self._started = True
            self.callbacks.call("on_train_start", self.state)
        return self

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            self.close()
            return False
        try:  # the loop's own exception goes on unchanged, whatever ending the run does
            self.fail(exc)
            self.close()
        except Exception as error:
            self._reporter.warn("exit-error", f"ending the run after {type(exc).__name__} failed too: "
                                f"{type(error).__name__}: {error}")
        return False

    def fail(self, exception: BaseException) -> None:
        """Report that the training loop raised (``on_exception``), once."""
        if not self._exception_seen and self._started:
            self._exception_seen = True
            self.callbacks.call("on_exception", self.state, exception)

    def close(self) -> None:
        """End the run: ``on_train_end``, flush, close the writer. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._started:
                self.validation_end()
                self.callbacks.call("on_train_end", self.state)
        finally:
            if self._capture is not None:
                self._capture.remove()
            lifecycle.unregister_tracker(self)
            self.writer.close()

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything logged so far is on disk (or wherever the writer puts it)."""
        self.writer.flush(timeout)

    # ------------------------------------------------------------- ways in
    def train_step(self, fn: StepFn) -> StepFn:
        """Decorate a training step: each call is one step.

        Inputs and targets come from the arguments (``step(inputs, targets)``,
        ``step(batch)`` with a tuple or dict); the return value is the loss,
        or a dict with ``loss``, ``outputs`` and ``targets``. The function's
        return value is passed back unchanged.
        """

        @functools.wraps(fn)
        def tracked_train_step(*args: Any, **kwargs: Any) -> Any:
            return self._run_step(fn, args, kwargs, validation=False)

        return tracked_train_step  # type: ignore[return-value]

    def eval_step(self, fn: StepFn) -> StepFn:
        """Decorate a validation step; calls outside ``with tracker.validation():`` open a pass of their own."""

        @functools.wraps(fn)
        def tracked_eval_step(*args: Any, **kwargs: Any) -> Any:
            return self._run_step(fn, args, kwargs, validation=True)

        return tracked_eval_step  # type: ignore[return-value]

    def attach(self, loop: Any, **options: Any) -> Tracker:
        """Drive this tracker from a training loop object and return the tracker.

        Supported: a Lightning ``Trainer`` (``lightning.pytorch`` or
        ``pytorch_lightning``), an ignite ``Engine`` (``evaluator=`` for
        validation batches), a transformers ``Trainer``::

            tracker = Tracker(model, callbacks=[LossLogger(every_n_steps=50)], writer="runs/lit")
            trainer = lightning.Trainer(max_epochs=2)
            tracker.attach(trainer)
            trainer.fit(model, train_loader, val_loader)   # the run is closed when fit ends
        """
        from trackers.adapters import attach

        attach(self, loop, **options)
        return self

    def epochs(self, n: int, *, start: int = 0) -> Iterator[int]:
        """Yield epoch numbers ``start .. n-1``, firing the epoch start/end events around each."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"Tracker.epochs(n): n must be a non-negative integer, got {n!r}")
        for epoch in range(start, n):
            self.epoch_start(epoch)
            yield epoch
            self.epoch_end()

    @contextmanager
    def validation(self) -> Iterator[Tracker]:
        """Bracket a validation pass: ``on_validation_start`` before, ``on_validation_end`` after."""
        self.validation_start()
        yield self
        if self._validation == "explicit":
            self.validation_end()

    def log(self, tag: str, value: Any, step: int | None = None) -> None:
        """Log one scalar (a number or a one-element tensor on any device) without waiting for the device.

        ``step`` defaults to the current training step.
        """
        if step is None:
            step = max(self.state.step, 0)
        self.writer.scalar(tag, value, step, source="Tracker.log")

    # ------------------------------------------- events (what loop adapters drive)
    def epoch_start(self, epoch: int | None = None) -> None:
        """A training epoch starts (``epoch`` defaults to the next one)."""
        if self._closed:
            return
        self.start()
        state = self.state
        if epoch is not None:
            state.epoch = epoch
        elif self._epochs_started:
            state.epoch += 1
        self._epochs_started = True
        state.batch_idx = -1
        self.callbacks.call("on_train_epoch_start", state)

    def epoch_end(self) -> None:
        """The current training epoch ends (closing a validation pass left open)."""
        if self._closed:
            return
        if self._validation == "implicit":
            self.validation_end()
        self.callbacks.call("on_train_epoch_end", self.state)

    def validation_start(self) -> None:
        """A validation pass starts (ending one still open)."""
        if self._closed:
            return
        self._begin_validation("explicit")

    def validation_end(self) -> None:
        """The validation pass ends."""
        if self._validation is not None:
            self.callbacks.call("on_validation_end", self.state)
            self._validation = None
            self.state.validating = False

    def batch_start(self, inputs: Any = None, targets: Any = None, *, validation: bool = False,
                    step: int | None = None) -> BatchRecord:
        """A batch starts: counts it, fires the batch-start event and returns its record.

        Training batches advance ``state.step`` by one, or set it to ``step``
        when the loop keeps its own counter; validation batches outside a
        pass open one.
        """
        if self._closed:  # e.g. a framework evaluating after its fit ended the run
            self._reporter.warn("event-after-close", "a batch arrived after the run was closed; it is not tracked")
            return BatchRecord(inputs, targets, stage="closed")
        state = self.state
        if validation:
            if self._validation is None:
                self._begin_validation("implicit")
            state.validation_batch_idx += 1
            batch = BatchRecord(inputs, targets, batch_idx=state.validation_batch_idx, stage="validation")
            event = "on_validation_batch_start"
        else:
            self.start()
            if self._validation == "implicit":
                self.validation_end()
            state.step = state.step + 1 if step is None else step
            state.batch_idx += 1
            batch = BatchRecord(inputs, targets, batch_idx=state.batch_idx, stage="train")
            event = "on_train_batch_start"
        if self._capture is not None:
            self._capture.outputs = None
        if self.callbacks.wants(event):
            self.callbacks.call(event, state, batch)
        return batch

    def batch_end(self, batch: BatchRecord, *, loss: Any = None, outputs: Any = None, targets: Any = None) -> None:
        """The batch ends: fills in loss, outputs (from the forward hook if not given) and targets, fires the event."""
        if self._closed or batch.stage == "closed":
            return
        if loss is not None:
            batch.loss = loss
        if outputs is not None:
            batch.outputs = detach_tree(outputs)
        elif batch.outputs is None and self._capture is not None:
            batch.outputs = self._capture.outputs
        if targets is not None:
            batch.targets = targets
        event = "on_validation_batch_end" if batch.stage == "validation" else "on_train_batch_end"
        if self.callbacks.wants(event):
            self.callbacks.call(event, self.state, batch)

    # ---------------------------------------------------------------- private
    def _begin_validation(self, kind: str) -> None:
        self.start()
        if self._validation is not None:
            self.validation_end()
        self._validation = kind
        self.state.validating = True
        self.state.validation_batch_idx = -1
        self.callbacks.call("on_validation_start", self.state)

    def _run_step(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
                  validation: bool) -> Any:
        if self._closed:
            self._reporter.warn("step-after-close", f"{fn.__name__} called after the tracker was closed; "
                                "the step runs but is not tracked")
            return fn(*args, **kwargs)
        batch = self.batch_start(*split_arguments(args, kwargs), validation=validation)
        result = fn(*args, **kwargs)
        loss, outputs, targets, understood = split_result(result)
        if not understood:
            self._reporter.warn(
                ("result", fn.__name__),
                f"{fn.__name__} returned a {type(result).__name__}; return the loss tensor or a dict "
                "like {'loss': loss, 'outputs': logits} so callbacks can see them",
            )
        self.batch_end(batch, loss=loss, outputs=outputs, targets=targets)
        return result

    def __repr__(self) -> str:
        names = ", ".join(cb.name for cb in self.callbacks.callbacks)
        return f"Tracker(model={type(self.model).__name__ if self.model is not None else None}, callbacks=[{names}], writer={self.writer.describe()})"
