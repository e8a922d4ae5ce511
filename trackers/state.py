"""What a callback hook receives: the run's state and, for batch hooks, the batch's record.

Neither carries a trainer object, so a callback works unchanged under every
way in (decorator, Lightning, ignite, transformers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from trackers.capture import ForwardCapture
    from trackers.writers.base import Writer


@dataclass
class RunState:
    """The run as the callbacks see it.

    ``step`` is the 0-based index of the current (inside batch hooks) or last
    training step, counted across epochs; ``steps_done`` is how many training
    steps have completed. ``validating`` is true inside a validation pass.
    """

    model: torch.nn.Module | None
    writer: Writer
    step: int = -1
    epoch: int = 0
    batch_idx: int = -1
    validation_batch_idx: int = -1
    validating: bool = False
    strict: bool = False
    capture: ForwardCapture | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steps_done(self) -> int:
        return self.step + 1

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
    """

    inputs: Any = None
    targets: Any = None
    outputs: Any = None
    loss: Any = None
    batch_idx: int = 0
    stage: str = "train"  # or "validation"
