"""The Tracker: one training run, its callbacks, its writer and the model's forward hooks."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from time import perf_counter_ns
from typing import Any, TypeVar

import torch

from trackers import lifecycle, registry
from trackers.core import distributed
from trackers.core.callback import Callback
from trackers.core.capture import ForwardCapture, detach_tree, meta_tensors, takes_forward_hooks
from trackers.core.cost import RunCost, timed_batch, timed_event
from trackers.core.dispatch import CallbackList
from trackers.core.module_hooks import ModuleHookSet, unwrap
from trackers.core.optimizers import OptimizerWatch
from trackers.core.state import BatchRecord, RunState
from trackers.core.steps import OutputSelector, is_scalar, select_outputs, split_arguments, split_result
from trackers.errors import CallbackError, OnceReporter
from trackers.writers.front import Writer
from trackers.writers.resolve import WriterSpec, resolve_writer
from trackers.writers.sink import Sink

StepFn = TypeVar("StepFn", bound=Callable[..., Any])
STEP_ON = ("call", "optimizer")
PASS_EVENTS = {"validation": "validation", "test": "test", "predict": "test"}  # stage -> event family
_MAX_PENDING_WITHOUT_OPTIMIZER = 64


class _MicroBatchLosses:
    """The losses of one step's micro-batches; averaged (on their device, no host sync) only when there are several."""

    def __init__(self) -> None:
        self.losses: list[Any] = []

    @property
    def batches(self) -> int:
        return len(self.losses)

    def add(self, loss: Any) -> None:
        self.losses.append(loss)

    def take(self) -> tuple[Any, int]:
        """The mean loss of the step's micro-batches (the loss itself, as given, for one) and their number."""
        losses, self.losses = self.losses, []
        if len(losses) <= 1:
            return (losses[0] if losses else None), 1
        usable = [
            loss.detach().reshape(()) if isinstance(loss, torch.Tensor) else float(loss)
            for loss in losses
            if is_scalar(loss)
        ]  # LossLogger reports a step with no usable loss
        return (sum(usable) / len(usable) if usable else losses[0]), len(losses)


def _checked_loss_fn(loss_fn: Any, owner: str) -> Callable[[Any, Any], Any] | None:
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"{owner}: loss_fn must be a function (outputs, targets) -> loss, got {loss_fn!r}")
    return loss_fn


DEFAULT_CALLBACKS = ("loss", "graph")


def adapter_for(loop: Any) -> Any:
    """The registered loop adapter that recognises ``loop`` (the core never imports the adapters itself)."""
    adapters = [registry.get(registry.ADAPTER_GROUP, name) for name in registry.known_names(registry.ADAPTER_GROUP)]
    for adapter in adapters:
        if adapter.recognizes(loop):
            return adapter
    raise TypeError(
        f"Tracker.attach: don't know how to follow a {type(loop).__module__}.{type(loop).__name__}. "
        f"It takes {'; '.join(adapter.DESCRIPTION for adapter in adapters)}. For a plain loop, decorate "
        "your step with @tracker.train_step instead"
    )


def default_callbacks() -> list[Callback]:
    """What ``Tracker(model)`` logs when no callbacks are given: the loss every 50 steps and the model's graph.

    Found by their registered names, so the core never imports the callbacks package.
    """
    return [registry.get(registry.CALLBACK_GROUP, name)() for name in DEFAULT_CALLBACKS]


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
    dir (a string with a ``/`` in it, or ``"<sink>:<dir>"``), a sink name
    (``"tensorboard"``, ``"memory"``, ``"jsonl"``, ...), a
    :class:`~trackers.writers.Sink`, a :class:`~trackers.writers.Writer` or
    a list of these; ``None`` means TensorBoard in ``runs/<datetime>_<host>``.
    With ``strict=True`` a failing callback or writer raises instead of
    being reported and skipped. ``resume_step=T``
    continues a run in the same log dir at step T, removing the old events
    at and after T so curves don't double back. In a distributed
    job only rank zero writes; the other ranks run the same callbacks (so
    their collectives line up) into a do-nothing writer.

    One step is one optimizer step. A plain loop's decorated step is one step
    per call; a loop that accumulates gradients over several calls says
    ``step_on="optimizer"`` and a step then ends when the model's optimizer
    steps (counted with torch's optimizer step hooks). ``outputs`` picks the
    class scores out of a structured forward output (a key, an index or a
    function; by default a ``logits`` key or attribute, else the first
    tensor). ``loss_fn(outputs, targets)`` computes a loss for batches that
    come without one (an evaluator returning ``(y_pred, y)``).

    Leaving the ``with`` block (or :meth:`close`) ends the run: the
    end-of-run callbacks run, everything is flushed and the writer closed;
    a run still open at interpreter exit is ended then.

    The Tracker times its own work on the training thread (``tracker.cost``,
    see :mod:`trackers.core.cost`); ``report_cost=True`` logs it at the end of
    the run as ``looptrack/...`` scalars and prints it in one line.
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        callbacks: Iterable[Callback] | None = None,
        writer: WriterSpec = None,
        *,
        strict: bool = False,
        resume_step: int | None = None,
        step_on: str = "call",
        outputs: OutputSelector = None,
        loss_fn: Callable[[Any, Any], Any] | None = None,
        report_cost: bool = False,
    ) -> None:
        if not isinstance(report_cost, bool):
            raise TypeError(f"Tracker: report_cost must be True or False, got {report_cost!r}")
        if resume_step is not None and (
            isinstance(resume_step, bool) or not isinstance(resume_step, int) or resume_step < 0
        ):
            raise ValueError(f"Tracker: resume_step must be a non-negative integer, got {resume_step!r}")
        if resume_step is not None and isinstance(writer, (Writer, Sink)):
            raise ValueError(
                "Tracker(resume_step=...) needs writer= as a log dir or sink name; for a sink "
                "you built, pass purge_step to it (TensorBoardSink(log_dir, purge_step=T))"
            )
        if step_on not in STEP_ON:
            raise ValueError(f"Tracker: step_on must be one of {STEP_ON}, got {step_on!r}")
        self.loss_fn = _checked_loss_fn(loss_fn, "Tracker")
        self.cost = RunCost()
        self.report_cost = report_cost
        self.callbacks = CallbackList(default_callbacks() if callbacks is None else callbacks, strict=strict)
        self._capture = ForwardCapture(model) if model is not None else None
        options = {} if resume_step is None else {"purge_step": resume_step}
        try:  # one run per job: only rank zero writes
            self.writer = resolve_writer(writer, rank_zero=distributed.is_rank_zero(), sink_options=options)
        except BaseException:
            if self._capture is not None:
                self._capture.remove()  # leave the model without our hooks
            raise
        if strict:
            self.writer.strict = True
        self.strict = strict
        self.step_on = step_on
        self.outputs = outputs
        self.state = RunState(model=model, writer=self.writer, capture=self._capture)
        if resume_step is not None:
            self.state.step = self.state.step_index = resume_step - 1  # the next training step is resume_step
        self._reporter = OnceReporter()
        if model is not None:
            self._say_what_the_model_allows(model)
        self._outputs_per_batch = False
        self._choose_outputs_watch()
        self._module_hooks = ModuleHookSet(self._module_hook_failed)
        self._module_hooks_asked = False
        if model is not None:
            self._register_module_hooks(model)
        self._started = False
        self._closed = False
        self._exception_seen = False
        self._pass: str | None = None  # None, "explicit" or "implicit"
        self._epochs_started = False
        self._attached_to: Any = None
        self._step_depth = 0
        # the training step being accumulated: opened by its first micro-batch, ended by the optimizer step
        self._step_open = False
        self._step_opened_at = 0
        self._last_micro_batch: BatchRecord | None = None
        self._micro_losses = _MicroBatchLosses()
        self._calls_with_optimizer_step = 0
        self._calls_without_optimizer_step = 0
        self._steps_at_last_call: int | None = None
        self._accumulation_said = False
        # asked once: the callbacks of a run are fixed when it is made
        self._wants_batch_start = self.callbacks.wants("on_train_batch_start")
        self._wants_batch_end = self.callbacks.wants("on_train_batch_end")
        wants_gradients = self.callbacks.wants("on_before_optimizer_step")
        # a hook before every optimizer step of the process only on the steps where a callback wants it
        self._before_step_per_step = wants_gradients and not self.callbacks.every_step("on_before_optimizer_step")
        self._optimizer_watch = OptimizerWatch(
            model,
            self._before_optimizer_step if wants_gradients else None,
            first_seen=self.add_optimizer,
            before_steps=not self._before_step_per_step,
            after_step=self._after_optimizer_step if self.callbacks.wants("on_after_optimizer_step") else None,
        )
        lifecycle.register_tracker(self)

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        model: torch.nn.Module | None = None,
        *,
        allow_imports: bool = False,
    ) -> Tracker:
        """A tracker whose callbacks and writer are selected in a YAML/TOML file or a dict.

        >>> tracker = Tracker.from_config("examples/tracking.yaml", net)          # doctest: +SKIP

        Names are looked up in the registry and arguments checked against the
        constructors before anything is built; see :mod:`trackers.core.config`.
        ``allow_imports=True`` lets the config name classes by import path
        (``Callback`` subclasses, and ``Sink`` subclasses as the writer's
        backend: anything else is refused before it is called). Resolving a
        path imports its module, running the module's code: never pass
        ``allow_imports=True`` for a config from an untrusted source.
        """
        from trackers.core.config import build, load_config

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
        """Where the current or last training step lands on the x axis (-1 before the first in a plain loop)."""
        return self.state.step

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def first_inputs(self) -> tuple[Any, ...] | None:
        """The positional arguments of the model's first forward call (detached), if a model is tracked."""
        return self.state.first_inputs

    # -------------------------------------------------------------- run life
    @timed_event
    def start(self) -> Tracker:
        """Start the run (``on_train_start``); the first step or ``with`` does it for you."""
        if not self._started and not self._closed:
            self._started = True
            if not self._module_hooks_asked and self.state.model is not None:  # a model a loop adapter found
                self._register_module_hooks(self.state.model)
            if self._capture is not None:
                self._capture.watch_first_call()
            self.callbacks.call("on_train_start", self.state)
        return self

    def __enter__(self) -> Tracker:
        try:
            return self.start()
        except BaseException as error:  # a strict callback failed at the start: __exit__ won't run, end the run here
            self.__exit__(type(error), error, error.__traceback__)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
            return
        try:  # the loop's own exception goes on unchanged, whatever ending the run does
            self.fail(exc)
            self.close()
        except Exception as error:
            self._reporter.warn(
                "exit-error", f"ending the run after {type(exc).__name__} failed too: {type(error).__name__}: {error}"
            )

    @timed_event
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
                self._end_run()
                if self.report_cost:
                    self._report_cost()
        finally:
            self._optimizer_watch.remove()
            self._module_hooks.remove()
            if self._capture is not None:
                self._capture.remove()
            lifecycle.unregister_tracker(self)
            self.writer.close()

    @timed_event
    def _end_run(self) -> None:
        self._settle_step()
        self.validation_end()
        self.callbacks.call("on_train_end", self.state)

    def _report_cost(self) -> None:
        """Log what looptrack cost the training thread as ``looptrack/...`` scalars, and print it in one line."""
        figures, waited = self.cost.figures(), self.writer.waited_seconds
        step = max(self.state.step, 0)
        for tag, value in figures.scalars(waited).items():
            self.writer.scalar(tag, value, step, source="Tracker(report_cost=True)")
        if distributed.is_rank_zero():
            print(figures.line(waited), file=sys.stderr, flush=True)

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything logged so far is on disk (or wherever the writer puts it)."""
        self.writer.flush(timeout)

    # ------------------------------------------------------------- ways in
    def train_step(self, fn: StepFn) -> StepFn:
        """Decorate a training step: each call is one step (one micro-batch with ``step_on="optimizer"``).

        Inputs and targets come from the arguments (``step(inputs, targets)``,
        ``step(batch)`` with a tuple or dict); the return value is the loss,
        or a dict with ``loss``, ``outputs`` and ``targets``. The function's
        return value is passed back unchanged.
        """
        return self._tracked(fn, validation=False)

    def eval_step(self, fn: StepFn) -> StepFn:
        """Decorate a validation step; calls outside ``with tracker.validation():`` open a pass of their own."""
        return self._tracked(fn, validation=True)

    def attach(self, loop: Any, **options: Any) -> Tracker:
        """Drive this tracker from a training loop object and return the tracker.

        Supported: a Lightning ``Trainer`` (``lightning.pytorch`` or
        ``pytorch_lightning``), an ignite ``Engine`` (``evaluator=`` for
        validation batches), a transformers ``Trainer``::

            tracker = Tracker(model, callbacks=[LossLogger(every_n_steps=50)], writer="runs/lit")
            tracker.attach(trainer)
            trainer.fit(model, train_loader, val_loader)
            trainer.test(model, test_loader)               # logged as test/loss
            tracker.close()                                # or `with tracker:`; else at process exit

        Common options: ``loss_fn=criterion`` computes a missing loss from
        outputs and targets; ``val_loss_key=`` names the validation loss the
        framework keeps (Lightning's logged name, ignite's metric name,
        transformers' metrics key); ignite also takes ``evaluator=`` and
        ``output_transform=``. A tracker follows one loop: attaching it twice
        raises.
        """
        if self._attached_to is not None:
            raise ValueError(
                f"Tracker.attach: this tracker already follows a {type(self._attached_to).__name__}; attaching it "
                "again would count every step twice. Attach it once (ignite: attach(trainer, evaluator=evaluator)), "
                "or make a second Tracker for a second loop"
            )
        adapter = adapter_for(loop)
        loss_fn = _checked_loss_fn(options.pop("loss_fn", None), "Tracker.attach")
        if loss_fn is not None:
            self.loss_fn = loss_fn
            self._choose_outputs_watch()
        adapter.attach(self, loop, **options)
        self._attached_to = loop
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
    def validation(self, stage: str = "validation") -> Iterator[Tracker]:
        """Bracket an evaluation pass: ``on_validation_start`` before, ``on_validation_end`` after.

        ``stage="test"`` (or ``"predict"``) brackets a test pass instead: its
        batches fire the ``on_test_*`` hooks and its loss is logged as
        ``test/loss``, not mixed into the validation curve.
        """
        self.validation_start(stage)
        yield self
        if self._pass == "explicit":
            self.validation_end()

    @timed_event
    def log(self, tag: str, value: Any, step: int | None = None) -> None:
        """Log one scalar (a number or a one-element tensor on any device) without waiting for the device.

        ``step`` defaults to the current training step.
        """
        if step is None:
            step = max(self.state.step, 0)
        self.writer.scalar(tag, value, step, source="Tracker.log")

    # ------------------------------------------- events (what loop adapters drive)
    @timed_event
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

    @timed_event
    def epoch_end(self) -> None:
        """The current training epoch ends (closing an evaluation pass left open)."""
        if self._closed:
            return
        self._settle_step()
        if self._pass == "implicit":
            self.validation_end()
        self.callbacks.call("on_train_epoch_end", self.state)

    @timed_event
    def validation_start(self, stage: str = "validation") -> None:
        """An evaluation pass starts (ending one still open): ``"validation"``, ``"test"`` or ``"predict"``."""
        if self._closed:
            return
        if stage not in PASS_EVENTS:
            raise ValueError(f"Tracker.validation_start: stage must be one of {tuple(PASS_EVENTS)}, got {stage!r}")
        self._begin_pass("explicit", stage)

    @timed_event
    def validation_end(self, loss: Any = None) -> None:
        """The evaluation pass ends; ``loss`` is the pass's loss as the framework computed it, if it did."""
        if self._pass is None:
            return
        state = self.state
        state.pass_loss = loss
        event = PASS_EVENTS[state.stage]
        try:
            self.callbacks.call(f"on_{event}_end", state)
        finally:
            self._pass = None
            state.validating = False
            state.stage = "train"
            state.pass_loss = None

    @timed_batch
    def batch_start(
        self, inputs: Any = None, targets: Any = None, *, validation: bool = False, step: int | None = None
    ) -> BatchRecord:
        """A batch starts: counts it, fires the batch-start event and returns its record.

        A training batch opens a step (``state.step`` becomes ``step`` when
        the loop keeps its own counter, else the next 0-based count) unless
        the step it belongs to is still accumulating; evaluation batches
        outside a pass open a validation pass.
        """
        return self._batch_start(inputs, targets, validation, step)

    @timed_batch
    def batch_end(
        self,
        batch: BatchRecord,
        *,
        loss: Any = None,
        outputs: Any = None,
        targets: Any = None,
        step: int | None = None,
        optimizer_step: bool | None = None,
    ) -> None:
        """The batch ends: fills in loss, outputs (from the forward hook if not given) and targets, fires the event.

        A training batch ends its step when ``optimizer_step`` says so (the
        adapter knows), else one call is one step, or with
        ``step_on="optimizer"`` when the model's optimizer stepped; ``step``
        is the step's place on the framework's axis, when known only now.
        """
        self._batch_end(batch, loss, outputs, targets, step, optimizer_step)

    @timed_batch
    def end_step(self, step: int | None = None) -> None:
        """The optimizer step that the open training step was accumulating for happened: end the step.

        For loop adapters whose framework says when it stepped
        (transformers' ``on_step_end``); ``step`` is its place on the axis.
        """
        if self._closed or not self._step_open:
            return
        if step is not None:
            self.state.step = step
        self._end_step()

    # ---------------------------------------------------------------- private
    def _batch_start(self, inputs: Any, targets: Any, validation: bool, step: int | None) -> BatchRecord:
        if self._closed:
            self._reporter.warn(
                "event-after-close",
                "a batch arrived after the run was closed (tracker.close() or "
                "the end of its `with` block); it is not tracked",
            )
            return BatchRecord(inputs, targets, stage="closed")
        state = self.state
        if validation:
            if self._pass is None:
                self._begin_pass("implicit", "validation")
            state.validation_batch_idx += 1
            batch = BatchRecord(inputs, targets, batch_idx=state.validation_batch_idx, stage=state.stage)
            family = PASS_EVENTS[state.stage]
            event, end_event = f"on_{family}_batch_start", f"on_{family}_batch_end"
        else:
            if not self._started:
                self.start()
            if self._pass == "implicit":
                self.validation_end()
            if self._step_open:
                self._settle_step()
            self._check_accumulation()
            state.batch_idx += 1
            batch = BatchRecord(inputs, targets, None, None, state.batch_idx, "train")
            event, end_event = "on_train_batch_start", "on_train_batch_end"
            if self._step_open:
                event = ""  # another micro-batch of the step being accumulated
                if step is not None:
                    state.step = step
            else:
                self._step_open = True
                self._step_opened_at = self._optimizer_watch.steps
                state.step_index += 1
                state.step = state.step_index if step is None else step
                if self._before_step_per_step:
                    self._optimizer_watch.watch_before_steps(
                        self.callbacks.fires("on_before_optimizer_step", state.step_index)
                    )
        capture = self._capture
        if capture is not None:
            capture.outputs = None
            if self._outputs_per_batch:
                capture.watch_outputs(self.callbacks.wants_outputs(end_event, state.step_index))
        if event and (self._wants_batch_start if event == "on_train_batch_start" else self.callbacks.wants(event)):
            self.callbacks.call(event, state, batch)
        return batch

    def _batch_end(
        self,
        batch: BatchRecord,
        loss: Any,
        outputs: Any,
        targets: Any,
        step: int | None,
        optimizer_step: bool | None,
    ) -> None:
        if self._closed or batch.stage == "closed":
            return
        if outputs is None and self.loss_fn is None and (self._capture is None or self._capture.outputs is None):
            if loss is not None:  # nothing to select or compute: the usual training step
                batch.loss = loss
            if targets is not None:
                batch.targets = targets
        else:
            self._fill(batch, loss, outputs, targets)
        if batch.stage != "train":
            event = f"on_{PASS_EVENTS[batch.stage]}_batch_end"
            if self.callbacks.wants(event):
                self.callbacks.call(event, self.state, batch)
            return
        if step is not None:
            self.state.step = step
        if optimizer_step is None and self.step_on == "call":
            optimizer_step = True
        if optimizer_step and not self._micro_losses.losses:  # a step of one batch: its loss as it is
            self._step_open = False
            self._last_micro_batch = None
            self._step_ended(batch)
            return
        self._micro_losses.add(batch.loss)
        self._last_micro_batch = batch
        if optimizer_step is None:
            optimizer_step = self._optimizer_stepped_in_call()
        if optimizer_step:
            self._end_step()

    def _say_what_the_model_allows(self, model: torch.nn.Module) -> None:
        """Warn once, at ``Tracker(model)``, about a model looptrack can only partly watch, and the fix."""
        name = type(model).__name__
        if self._capture is not None and not self._capture.hooked:
            self._reporter.warn(
                "script-module",
                f"Tracker: the model is a TorchScript module ({name}, from torch.jit.script or torch.jit.trace), "
                "which takes no Python forward hooks, so looptrack does not see its forward calls: its outputs "
                "(for PRCurves, PredictionFigure, ...) and its first input (for GraphTrace's graph) are not "
                "captured. The loss and everything the step returns are still logged. To get them back, return "
                "{'loss': loss, 'outputs': logits} from the step and use GraphTrace(example_input=inputs) "
                "(TorchScript is traced with torch.jit), or give Tracker the nn.Module before scripting it",
                stacklevel=4,
            )
        meta = meta_tensors(model)
        if meta:
            examples = ", ".join(meta[:3]) + (", ..." if len(meta) > 3 else "")
            self._reporter.warn(
                "meta-model",
                f"Tracker: {len(meta)} parameter(s)/buffer(s) of the model ({name}: {examples}) are on the meta "
                "device: they have shapes but no values, so nothing computed from them can be logged (the "
                "loss, parameter and gradient histograms, PR curves, images of outputs); the graph and "
                "learning rates still are. Materialise the model before tracking it: "
                "model.to_empty(device='cpu') (or 'cuda'), then load_state_dict(...) or initialise its weights",
                stacklevel=4,
            )

    def _choose_outputs_watch(self) -> None:
        """Keep the model's outputs (a forward hook, which slows every call) for every batch, some, or none.

        Every batch when ``loss_fn`` may need them or a callback that may read
        them gets every training step; else, if any callback may read them,
        the batches whose end reaches such a callback (``_outputs_per_batch``).
        """
        capture = self._capture
        if capture is None:
            return
        if self.loss_fn is not None or self.callbacks.wants_outputs_every_step("on_train_batch_end"):
            self._outputs_per_batch = False
            capture.watch_first_call()  # the model takes the slower call path anyway: both hooks go on now
            capture.watch_outputs(True)
        else:
            self._outputs_per_batch = self.callbacks.may_read_outputs()

    def _register_module_hooks(self, model: torch.nn.Module) -> None:
        """The callbacks' module hooks, once, before the first step; an owner whose patterns select nothing is told."""
        self._module_hooks_asked = True
        requests = self.callbacks.module_hooks()
        if not requests:
            return
        owners = sorted({owner for owner, _ in requests})
        if not takes_forward_hooks(model):
            self._reporter.warn(
                "module-hooks-script",
                f"{', '.join(owners)}: the model is a TorchScript module, which takes no Python module hooks; "
                "they see nothing. Give Tracker the nn.Module before scripting it",
                stacklevel=5,
            )
            return
        for owner, names in self._module_hooks.register(model, requests).items():
            if not names:
                examples = [name for name, _ in unwrap(model).named_modules() if name][:4]
                self._reporter.warn(
                    ("module-hooks-none", owner),
                    f"{owner}: its include/exclude patterns select no module of {type(unwrap(model)).__name__}, "
                    f"so it sees nothing; module names look like {examples} (model.named_modules()), "
                    "patterns are globs such as 'layer1.*'",
                    stacklevel=5,
                )

    def _module_hook_failed(self, owner: str, name: str, error: BaseException) -> None:
        wrapped = CallbackError(owner, f"module hook on {name!r}", self.state.step, error)
        if self.strict:
            raise wrapped from error
        self._reporter.warn(
            ("module-hook", owner),
            f"{wrapped}. The run goes on; later failures of its module hooks are not printed (strict=True raises)",
        )

    def _fill(self, batch: BatchRecord, loss: Any, outputs: Any, targets: Any) -> None:
        if loss is not None:
            batch.loss = loss
        if targets is not None:
            batch.targets = targets
        raw = detach_tree(outputs) if outputs is not None else None
        if raw is None and batch.outputs is None and self._capture is not None:
            raw = self._capture.outputs  # detached by the hook
        if raw is not None:
            batch.raw_outputs = raw
            batch.outputs, problem = select_outputs(raw, self.outputs)
            if problem:
                self._reporter.warn(
                    ("outputs", problem),
                    f"{problem}. Callbacks that need the model's scores (PRCurves, PredictionFigure) skip such batches",
                )
        if (
            batch.loss is None
            and self.loss_fn is not None
            and isinstance(batch.outputs, torch.Tensor)
            and isinstance(batch.targets, torch.Tensor)
        ):
            try:
                with torch.no_grad():
                    batch.loss = self.loss_fn(batch.outputs, batch.targets)
            except Exception as error:
                if self.strict:
                    raise
                self._reporter.warn(
                    "loss_fn",
                    f"loss_fn failed on a {batch.stage} batch: {type(error).__name__}: "
                    f"{error}; such batches have no loss",
                )

    def _optimizer_stepped_in_call(self) -> bool:
        """Whether the training batch that just ended ends its step, for loops that don't say."""
        if self.step_on == "call":
            return True
        stepped = self._optimizer_watch.steps > self._step_opened_at
        if (
            not stepped
            and self._optimizer_watch.steps == 0
            and self._micro_losses.batches >= _MAX_PENDING_WITHOUT_OPTIMIZER
        ):
            self._reporter.warn(
                "no-optimizer",
                f"step_on='optimizer' but {self._micro_losses.batches} training batches passed without a step of a "
                "torch.optim optimizer over the model's parameters; counting each batch as a step from now on",
            )
            self.step_on = "call"
            return True
        return stepped

    def _check_accumulation(self) -> None:
        """With one step per call: say once if the optimizer steps after some calls and not after others."""
        steps = self._optimizer_watch.steps
        last, self._steps_at_last_call = self._steps_at_last_call, steps
        if last is None or self.step_on != "call" or self._accumulation_said:
            return
        if steps > last:
            self._calls_with_optimizer_step += 1
        elif steps:
            self._calls_without_optimizer_step += 1
        if self._calls_with_optimizer_step and self._calls_without_optimizer_step:
            self._accumulation_said = True
            calls = self._calls_with_optimizer_step + self._calls_without_optimizer_step
            self._reporter.warn(
                "accumulation",
                f"{self._calls_without_optimizer_step} of {calls} training steps were followed by no optimizer step: "
                "the loop accumulates gradients. Each call is counted as a step; Tracker(..., step_on='optimizer') "
                "makes one step one optimizer step and logs the mean loss of its micro-batches",
            )

    def _settle_step(self) -> None:
        """End the open step if the model's optimizer stepped since it opened (outside the decorated call)."""
        if (
            self._step_open
            and self._last_micro_batch is not None
            and self._optimizer_watch.steps > self._step_opened_at
        ):
            self._end_step()

    def _end_step(self) -> None:
        batch = self._last_micro_batch
        self._step_open = False
        self._last_micro_batch = None
        if batch is None:
            return
        batch.loss, batch.micro_batches = self._micro_losses.take()
        self._step_ended(batch)

    def _step_ended(self, batch: BatchRecord) -> None:
        self.cost.steps += 1
        if self._wants_batch_end:
            self.callbacks.call("on_train_batch_end", self.state, batch)

    def add_optimizer(self, optimizer: Any) -> None:
        """Make ``optimizer`` one of the run's (``state.optimizers``), once; adapters hand over the framework's."""
        if not any(known is optimizer for known in self.state.optimizers):
            self.state.optimizers.append(optimizer)

    @timed_batch
    def _before_optimizer_step(self, optimizer: Any) -> None:
        if self._step_open and not self._closed:
            self.callbacks.call("on_before_optimizer_step", self.state, optimizer)

    def _after_optimizer_step(self, optimizer: Any) -> None:
        if self._step_open and not self._closed:
            self.callbacks.call("on_after_optimizer_step", self.state, optimizer)

    def _begin_pass(self, kind: str, stage: str) -> None:
        self.start()
        self._settle_step()
        if self._pass is not None:
            self.validation_end()
        self._pass = kind
        self.state.stage = stage
        self.state.validating = True
        self.state.validation_batch_idx = -1
        self.callbacks.call(f"on_{PASS_EVENTS[stage]}_start", self.state)

    def _tracked(self, fn: StepFn, *, validation: bool) -> StepFn:
        """``fn`` as a tracked step: the batch starts before the call and ends after it, timed in ``self.cost``."""
        name = getattr(fn, "__name__", "the step")

        @functools.wraps(fn)
        def tracked_step(*args: Any, **kwargs: Any) -> Any:
            start = perf_counter_ns()
            if self._closed or self._step_depth:
                return self._untracked_call(fn, name, args, kwargs)
            if not self._started:
                self.start()
                start = perf_counter_ns()
            cost = self.cost  # looptrack's own time: before and after the step, not the step itself
            cost.depth = 1
            try:
                batch = self._batch_start(*split_arguments(args, kwargs), validation, None)
                paused = perf_counter_ns()
                cost.depth = 0
                self._step_depth += 1
                try:
                    result = fn(*args, **kwargs)
                finally:
                    self._step_depth -= 1
                resumed = perf_counter_ns()
                cost.depth = 1
                if isinstance(result, torch.Tensor):  # the usual step returns its loss: nothing to take apart
                    self._batch_end(batch, result, None, None, None, None)
                else:
                    self._end_with_result(batch, result, name)
                cost.add_batch(start, paused, resumed, perf_counter_ns(), validation)
            finally:
                cost.depth = 0
            return result

        return tracked_step  # type: ignore[return-value]

    def _end_with_result(self, batch: BatchRecord, result: Any, name: str) -> None:
        """End a decorated step's batch with what ``name`` returned when it is not a tensor (see ``split_result``)."""
        loss, outputs, targets, understood = split_result(result)
        if not understood:
            self._reporter.warn(
                ("result", name),
                f"{name} returned a {type(result).__name__}; return the loss tensor or a dict "
                "like {'loss': loss, 'outputs': logits} so callbacks can see them",
                stacklevel=4,
            )
        self._batch_end(batch, loss, outputs, targets, None, None)

    def _untracked_call(self, fn: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run a decorated step after the run closed, or inside another tracked step: said once, not tracked."""
        if self._closed:
            self._reporter.warn(
                "step-after-close",
                f"{name} called after the tracker was closed; the step runs but is not tracked",
            )
        else:
            self._reporter.warn(
                ("nested", name),
                f"{name} (a tracked step) was called inside another "
                "tracked step; only the outer call is counted. Decorate only the outermost step",
            )
        return fn(*args, **kwargs)

    def __repr__(self) -> str:
        names = ", ".join(cb.name for cb in self.callbacks.callbacks)
        model = type(self.model).__name__ if self.model is not None else None
        return f"Tracker(model={model}, callbacks=[{names}], writer={self.writer.describe()})"
