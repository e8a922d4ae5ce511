"""Shared test helpers: the PyTorch TensorBoard tutorial's loop, a callback recording its hooks, a host-sync counter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from callbacks import EVENTS, Callback
from trackers.tools.demo import tutorial_step

if TYPE_CHECKING:
    from trackers import Tracker
    from trackers.core.state import RunState
    from trackers.tools.demo import SyntheticFashionMNIST

Batch = tuple[torch.Tensor, torch.Tensor]
Step = Callable[[torch.Tensor, torch.Tensor], Any]


class Fault(torch.nn.Module):
    """Passes its input on until told to fail: ``"forward"`` returns log(-|x| - 1), NaN; ``"backward"`` adds
    sqrt(x * 0), zero in the forward, whose gradient is inf * 0 = NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.mode: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "forward":
            return torch.log(-x.abs() - 1)
        if self.mode == "backward":
            return x + torch.sqrt(x * 0)
        return x


class FaultyNet(torch.nn.Module):
    """8 -> 16 -> 3 with a :class:`Fault` after the first layer, then a ReLU (in-place if asked)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fault = Fault()
        self.act = torch.nn.ReLU(inplace=inplace)
        self.fc2 = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fault(self.fc1(x))))


def fashion_batches(data: SyntheticFashionMNIST, n: int, batch_size: int, start: int = 0) -> list[Batch]:
    """``n`` consecutive ``(images, labels)`` batches of ``data`` from index ``start``."""
    return [
        (
            data.data[start + i * batch_size : start + (i + 1) * batch_size],
            data.targets[start + i * batch_size : start + (i + 1) * batch_size],
        )
        for i in range(n)
    ]


def _accumulating_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer | None, accumulate: int) -> Step:
    """A step backpropagating ``loss / accumulate``; a given optimizer steps and zeroes every ``accumulate`` calls."""
    calls = 0

    def step(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        loss = F.cross_entropy(net(inputs), labels)
        (loss / accumulate).backward()
        calls += 1
        if optimizer is not None and calls % accumulate == 0:
            optimizer.step()
            optimizer.zero_grad()
        return loss

    return step


def tutorial_eval_step(net: torch.nn.Module, outputs: bool = False) -> Step:
    """A validation step without gradients returning ``{"loss": ...}`` (or ``{"outputs": logits}``)."""

    def evaluate(inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            logits = net(inputs)
            return {"outputs": logits} if outputs else {"loss": F.cross_entropy(logits, labels)}

    return evaluate


def train_tutorial(
    tracker: Tracker | None,
    net: torch.nn.Module,
    batches: Sequence[Batch],
    *,
    optimizer: torch.optim.Optimizer | None,
    epochs: int | None = None,
    val: Sequence[Batch] | None = None,
    val_outputs: bool = False,
    accumulate: int = 1,
    step_outside: bool = False,
) -> list[torch.Tensor]:
    """Run the tutorial's loop (tracked if ``tracker``) over ``batches``: each epoch then ``val``; the losses, in order.

    ``epochs=None`` is one pass without ``tracker.epochs``; ``val=None`` opens no validation pass;
    ``accumulate=k`` backpropagates ``loss / k`` and steps every k calls, inside the step or, with
    ``step_outside``, in the loop after it.
    """
    if accumulate == 1:
        step = tutorial_step(net, optimizer)
    else:
        step = _accumulating_step(net, None if step_outside else optimizer, accumulate)
    evaluate = tutorial_eval_step(net, val_outputs)
    if tracker is not None:
        step, evaluate = tracker.train_step(step), tracker.eval_step(evaluate)
    if val is not None and tracker is None:
        raise ValueError("train_tutorial: a validation pass needs a tracker")
    passes = range(1) if epochs is None else range(epochs) if tracker is None else tracker.epochs(epochs)
    losses = []
    for _ in passes:
        for index, (inputs, labels) in enumerate(batches):
            losses.append(step(inputs, labels))
            if step_outside and optimizer is not None and index % accumulate == accumulate - 1:
                optimizer.step()
                optimizer.zero_grad()
        if val is not None:
            with tracker.validation():
                for inputs, labels in val:
                    evaluate(inputs, labels)
    return losses


def _record(name: str) -> Callable[..., None]:
    def hook(self: RecordingCallback, state: RunState, *args: Any) -> None:
        self.calls.append((name, state.step))

    hook.__name__ = name
    return hook


class RecordingCallback(Callback):
    """Records every hook it receives as ``(name, state.step)``, in order, in ``calls``.

    All hooks but ``on_before_optimizer_step`` and ``on_after_optimizer_step``: a callback wanting those makes
    the tracker watch the optimizer's steps, which would change the run under test.
    """

    HOOKS = tuple(event for event in EVENTS if event not in ("on_before_optimizer_step", "on_after_optimizer_step"))

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []


for _name in RecordingCallback.HOOKS:
    setattr(RecordingCallback, _name, _record(_name))
