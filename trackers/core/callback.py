"""The base class of every callback: one no-op method per event, and the cadence dispatch applies.

Override only the hooks you need; the tracker never calls a hook a callback
does not override. Hooks get the run's state and, for batch hooks, the
batch's record — never a trainer object. A callback that acts every N steps
sets ``self.every``; dispatch then calls its step hooks only on those steps::

    class PrintLoss(Callback):
        def __init__(self, every_n_steps: int = 100) -> None:
            self.every = Every(every_n_steps, owner="PrintLoss")

        def on_train_batch_end(self, state, batch):          # steps 99, 199, ... only
            state.writer.scalar("debug/loss", batch.loss, state.step)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from trackers.core.module_hooks import ModuleHooks
from trackers.core.schedule import Schedule

if TYPE_CHECKING:
    from trackers.core.state import BatchRecord, RunState

Hook = TypeVar("Hook", bound=Callable[..., Any])

EVENTS = (
    "on_train_start",
    "on_train_epoch_start",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_optimizer_step",
    "on_after_optimizer_step",
    "on_validation_start",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_validation_end",
    "on_test_start",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_test_end",
    "on_train_epoch_end",
    "on_train_end",
    "on_exception",
)
STEP_EVENTS = ("on_train_batch_start", "on_train_batch_end", "on_before_optimizer_step", "on_after_optimizer_step")
"""The hooks a callback's ``every`` applies to."""


def every_step(hook: Hook) -> Hook:
    """Mark a step hook to be called on every step whatever the callback's ``every`` (e.g. to accumulate).

    >>> class Mean(Callback):
    ...     def __init__(self):
    ...         self.every = Every(10)
    ...     @every_step
    ...     def on_train_batch_end(self, state, batch): ...
    """
    hook.__looptrack_every_step__ = True  # type: ignore[attr-defined]
    return hook


class Callback:
    """Subclass and override the hooks you need."""

    every: Schedule | None = None
    """When the step hooks run: ``Every(n)`` (steps n-1, 2n-1, ...), ``FirstStep()``, or None for every step."""

    reads_outputs: bool = True
    """Whether the batch hooks may read ``batch.outputs``: set it to False when they never do, and the Tracker
    keeps no forward hook on the model for this callback (a hooked model takes ``nn.Module``'s slower call path)."""

    @property
    def name(self) -> str:
        """How messages name this callback."""
        return type(self).__name__

    def module_hooks(self) -> Sequence[ModuleHooks]:
        """Hooks this callback wants on the model's modules, chosen by name; none by default.

        Asked once, when the Tracker is made with the model (or when the run starts): the Tracker registers them
        before the first step and removes them at close.

        >>> def module_hooks(self):                                                 # doctest: +SKIP
        ...     return [ModuleHooks(include=["features.*"], forward=self._record)]
        """
        return ()

    def on_train_start(self, state: RunState) -> None:
        """Called when the run starts."""

    def on_train_epoch_start(self, state: RunState) -> None:
        """Called when a training epoch starts."""

    def on_train_batch_start(self, state: RunState, batch: BatchRecord) -> None:
        """Called before a training step runs; ``batch`` has inputs and targets."""

    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        """Called when a training step (one optimizer step) ends; ``batch`` also has outputs and loss.

        With gradient accumulation ``batch`` is the step's last micro-batch
        and ``batch.loss`` the mean loss of its ``batch.micro_batches``.
        """

    def on_before_optimizer_step(self, state: RunState, optimizer: Any) -> None:
        """Called when ``optimizer.step()`` of the model's optimizer is called, before it runs.

        In a plain loop, ignite and transformers the step's gradients exist now. Under Lightning the step's
        forward and backward run inside ``optimizer.step(closure)``, after this call: the gradients the step
        uses are read in :meth:`on_after_optimizer_step`.
        """

    def on_after_optimizer_step(self, state: RunState, optimizer: Any) -> None:
        """Called when ``optimizer.step()`` of the model's optimizer has run, before the loop can zero the gradients:
        the gradients this step used (in every loop, Lightning's included) and the weights after it."""

    def on_validation_start(self, state: RunState) -> None:
        """Called when a validation pass starts."""

    def on_validation_batch_start(self, state: RunState, batch: BatchRecord) -> None:
        """Called before a validation step runs."""

    def on_validation_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        """Called when a validation step ends."""

    def on_validation_end(self, state: RunState) -> None:
        """Called when a validation pass ends; ``state.pass_loss`` is the framework's loss for it, if any."""

    def on_test_start(self, state: RunState) -> None:
        """Called when a test (or predict) pass starts; ``state.stage`` says which."""

    def on_test_batch_start(self, state: RunState, batch: BatchRecord) -> None:
        """Called before a test step runs."""

    def on_test_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        """Called when a test step ends."""

    def on_test_end(self, state: RunState) -> None:
        """Called when a test pass ends; ``state.pass_loss`` is the framework's loss for it, if any."""

    def on_train_epoch_end(self, state: RunState) -> None:
        """Called when a training epoch ends."""

    def on_train_end(self, state: RunState) -> None:
        """Called once when the run ends (normally or by an exception)."""

    def on_exception(self, state: RunState, exception: BaseException) -> None:
        """Called when the training loop raised; ``on_train_end`` follows."""

    def __repr__(self) -> str:
        return f"{self.name}()"
