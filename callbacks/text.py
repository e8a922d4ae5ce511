"""Text in TensorBoard's Text tab: a fixed note at the start, or a function's text every N steps."""

from __future__ import annotations

from collections.abc import Callable

from typing_extensions import override

from callbacks.base import Callback
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState


class TextLogger(Callback):
    """Logs text (markdown).

    >>> TextLogger("SGD, lr 0.01, tutorial CNN")                           # once, at the start   # doctest: +SKIP
    >>> TextLogger(lambda state: f"epoch {state.epoch}", every_n_steps=500)                    # doctest: +SKIP
    >>> TextLogger()                  # the model's structure (its repr), once at the start    # doctest: +SKIP
    """

    reads_outputs = False

    def __init__(
        self, text: str | Callable[[RunState], str] | None = None, every_n_steps: int | None = None, tag: str = "text"
    ) -> None:
        if text is not None and not isinstance(text, str) and not callable(text):
            raise TypeError(f"TextLogger: text must be a string, a function (state) -> str or None, got {text!r}")
        if callable(text) and every_n_steps is None:
            raise ValueError("TextLogger: a text function needs every_n_steps (how often to call it)")
        self.text = text
        self.every = None if every_n_steps is None else Every(every_n_steps, owner="TextLogger")
        self.tag = tag

    @override
    def on_train_start(self, state: RunState) -> None:
        if isinstance(self.text, str):
            state.writer.text(self.tag, self.text, 0)
        elif self.text is None and state.model is not None:
            state.writer.text(self.tag, "    " + repr(state.model).replace("\n", "\n    "), 0)

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        if callable(self.text):
            state.writer.text(self.tag, str(self.text(state)), state.step)
