"""A grid of a batch's input images (the tutorial's ``add_image(make_grid(images))``)."""

from __future__ import annotations

import torch
from typing_extensions import override

from callbacks.base import Callback
from callbacks.images import TUTORIAL_UNNORMALIZE, Unnormalize, check_unnormalize, image_problem, pictures
from trackers.core.schedule import Every, FirstStep
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter


class ImageGrid(Callback):
    """The inputs of the first training batch as one image grid, or of every N-th batch.

    >>> tracker = Tracker(net, callbacks=[ImageGrid(tag="four_fashion_mnist_images", n=4)])   # doctest: +SKIP

    The grid is built with ``torchvision.utils.make_grid`` on the inputs'
    device at the logging step; ``unnormalize`` as in
    :class:`~callbacks.prediction_figure.PredictionFigure`. Inputs are
    float images, or ``uint8`` pixels (0-255) shown as they are: the default
    ``unnormalize`` is for normalised floats and leaves ``uint8`` alone.
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        tag: str = "images",
        n: int | None = None,
        nrow: int = 8,
        unnormalize: Unnormalize = TUTORIAL_UNNORMALIZE,
    ) -> None:
        self.every = FirstStep() if every_n_steps is None else Every(every_n_steps, owner="ImageGrid")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"ImageGrid: n must be a positive integer or None (the whole batch), got {n!r}")
        self.tag = tag
        self.n = n
        self.nrow = nrow
        self.unnormalize = check_unnormalize(unnormalize, "ImageGrid")
        self.disabled = False
        self._reporter = OnceReporter()

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        if self.disabled:
            return
        problem = image_problem(batch.inputs)
        if problem:
            self.disabled = True
            self._reporter.warn("disabled", f"ImageGrid: {problem}; it turns itself off for this run")
            return
        if batch.inputs.shape[0] == 0:
            self._reporter.warn("empty", f"ImageGrid: the batch at step {state.step} is empty; no grid then")
            return
        from torchvision.utils import make_grid

        with torch.no_grad():
            images = pictures(batch.inputs[: self.n], self.unnormalize, "ImageGrid", self._reporter)
            grid = make_grid(images, nrow=self.nrow)
        state.writer.image(self.tag, grid, state.step)
