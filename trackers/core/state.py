"""What a callback hook receives: the run's state and, for batch hooks, the batch's record.

Neither carries a trainer object, so a callback works unchanged under every
way in (decorator, Lightning, ignite, transformers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from trackers.core.capture import ForwardCapture
    from trackers.writers.front import Writer

STAGES = ("train", "validation", "test", "predict")


@dataclass
class RunState:
    """The run as the callbacks see it.

    One step is one optimizer step. ``step`` is where the current (inside
    batch hooks) or last training step lands on the x axis: the framework's
    own counter under a framework (Lightning's logged step, ignite's
    ``state.iteration``, transformers' ``global_step``), a 0-based count in a
    plain loop. ``step_index`` is the 0-based count of the run's steps, which
    every-N schedules use, so ``every_n_steps=50`` acts on the 50th, 100th...
    step whatever the axis. ``stage`` is ``"train"``, or the kind of the open
    evaluation pass (``"validation"``, ``"test"``, ``"predict"``); ``loop``
    names the way in (``"decorator"``, ``"lightning"``, ``"ignite"``,
    ``"transformers"``) so messages can speak its terms. ``optimizers`` are
    the optimizers of the model: the framework's, or those seen stepping.
    ``pass_loss`` is the loss the framework itself computed for the pass
    that is ending (Lightning's logged ``val_loss``, ignite's ``Loss``
    metric, transformers' ``eval_loss``), else None.
    """

    model: torch.nn.Module | None
    writer: Writer
    step: int = -1
    step_index: int = -1
    epoch: int = 0
    batch_idx: int = -1
    validation_batch_idx: int = -1
    validating: bool = False
    stage: str = "train"
    loop: str = "decorator"
    capture: ForwardCapture | None = None
    optimizers: list[Any] = field(default_factory=list)
    pass_loss: Any = None

    @property
    def first_inputs(self) -> tuple[Any, ...] | None:
        """Positional arguments of the model's first forward call (detached), or None."""
        return self.capture.first_args if self.capture is not None else None

    @property
    def first_kwargs(self) -> dict[str, Any] | None:
        """Keyword arguments of the model's first forward call (detached), or None."""
        return self.capture.first_kwargs if self.capture is not None else None


@dataclass
class BatchRecord:
    """One batch: what went in, what the model said, and the loss.

    Tensors are the training loop's own (detached where looptrack took them
    from a forward hook); a callback that keeps one past the hook must copy it.
    ``outputs`` is the model's class scores (the ``logits`` of a structured
    output, see ``Tracker(outputs=...)``); ``raw_outputs`` what the forward
    returned. With gradient accumulation a training record is the step's
    last micro-batch and ``loss`` the mean over its ``micro_batches``.
    """

    inputs: Any = None
    targets: Any = None
    outputs: Any = None
    loss: Any = None
    batch_idx: int = 0
    stage: str = "train"  # or "validation", "test", "predict"
    raw_outputs: Any = None
    micro_batches: int = 1

    @property
    def size(self) -> int | None:
        """Samples in the batch: the first dimension of the targets, else of the outputs, else of the inputs."""
        for value in (self.targets, self.outputs, self.inputs):
            shape = getattr(value, "shape", None)
            if shape is not None and len(shape) >= 1:
                return int(shape[0])
        return None
