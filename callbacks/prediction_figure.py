"""The tutorial's ``plot_classes_preds``: a few images with predicted class, probability and true label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from callbacks.base import Callback
from callbacks.images import Unnormalize, as_nchw, check_unnormalize, image_problem, unnormalized
from trackers.report import OnceReporter
from trackers.schedule import Every
from trackers.state import BatchRecord, RunState
from trackers.writers.records import materialize, snapshot


def render_predictions(images: np.ndarray, predictions: Sequence[int], confidences: Sequence[float],
                       targets: Sequence[int], classes: Sequence[str]):
    """A matplotlib Figure (object API, no pyplot): one panel per image, titled green when right, red when wrong."""
    from matplotlib.figure import Figure

    count = len(images)
    figure = Figure(figsize=(3 * count, 3.6))
    for i in range(count):
        axes = figure.add_subplot(1, count, i + 1, xticks=[], yticks=[])
        image = images[i]
        if image.shape[0] == 1:
            axes.imshow(image[0], cmap="Greys", vmin=0, vmax=1)
        else:
            axes.imshow(np.transpose(image, (1, 2, 0)))
        right = predictions[i] == targets[i]
        axes.set_title(f"{classes[predictions[i]]}, {confidences[i] * 100:.1f}%\n(label: {classes[targets[i]]})",
                       color="green" if right else "red")
    figure.tight_layout()
    return figure


class PredictionFigure(Callback):
    """Every N steps, ``n`` images of the batch with the predicted class, its probability and the true label.

    >>> tracker = Tracker(net, callbacks=[PredictionFigure(classes=classes, every_n_steps=1000)],   # doctest: +SKIP
    ...                   writer="runs/fashion_mnist_experiment_1")

    At a logging step the first ``n`` inputs, targets and the outputs the
    forward hook captured are sliced and reduced to (prediction, probability)
    on their device; the figure is drawn on the writer thread with
    matplotlib's object API (no pyplot). ``unnormalize=(mean, std)`` undoes
    the inputs' normalisation (the tutorial's ``img / 2 + 0.5`` is the
    default ``(0.5, 0.5)``); 1-channel images are drawn in greys, 3-channel
    in colour. Inputs that are not images disable the callback with one
    warning.
    """

    def __init__(self, classes: Sequence[str], every_n_steps: int = 1000, n: int = 4,
                 tag: str = "predictions vs. actuals", unnormalize: Unnormalize = (0.5, 0.5)) -> None:
        if isinstance(classes, str) or not classes or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"PredictionFigure: classes must be a non-empty list of class names, got {classes!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"PredictionFigure: n must be a positive integer (images per figure), got {n!r}")
        self.classes = list(classes)
        self.every = Every(every_n_steps, owner="PredictionFigure")
        self.n = n
        self.tag = tag
        self.unnormalize = check_unnormalize(unnormalize, "PredictionFigure")
        self.disabled = False
        self._reporter = OnceReporter()

    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        if self.disabled or not self.every.fires(state.step):
            return
        problem = self._problem(batch)
        if problem:
            self.disabled = True
            self._reporter.warn("disabled", f"PredictionFigure: {problem}; it turns itself off for this run")
            return
        if batch.inputs.shape[0] == 0:
            self._reporter.warn("empty", f"PredictionFigure: the batch at step {state.step} is empty; no figure then")
            return
        k = min(self.n, batch.inputs.shape[0])
        with torch.no_grad():
            images = unnormalized(as_nchw(batch.inputs[:k].detach()), self.unnormalize)
            confidence, prediction = torch.softmax(batch.outputs[:k].detach().float(), dim=1).max(dim=1)
        frozen = [snapshot(t) for t in (images, prediction, confidence, batch.targets[:k].detach().reshape(-1))]
        classes = self.classes

        def draw():
            images_, predictions, confidences, targets = (materialize(t) for t in frozen)
            outside = [t for t in targets.tolist() if not 0 <= t < len(classes)]
            if outside:
                raise ValueError(f"PredictionFigure: target {outside[0]} is outside the {len(classes)} classes")
            return render_predictions(images_.numpy(), predictions.tolist(), confidences.tolist(),
                                      targets.tolist(), classes)

        state.writer.figure(self.tag, draw, state.step)

    def _problem(self, batch: BatchRecord) -> str | None:
        problem = image_problem(batch.inputs)
        if problem:
            return problem + " (PredictionFigure draws images; give it image batches)"
        outputs, targets = batch.outputs, batch.targets
        if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2:
            return "no [batch, classes] outputs were captured (does the model's forward run in the step?)"
        if not outputs.is_floating_point():
            return f"the outputs are {outputs.dtype}; it needs class scores (logits or probabilities), not labels"
        if outputs.shape[1] != len(self.classes):
            return f"the outputs have {outputs.shape[1]} scores but classes has {len(self.classes)} names"
        if not isinstance(targets, torch.Tensor) or targets.numel() != outputs.shape[0]:
            return "no targets matching the batch: call train_step(inputs, targets) or return {'targets': ...}"
        return None

    def __repr__(self) -> str:
        return f"PredictionFigure(classes=[{len(self.classes)} names], every_n_steps={self.every.n}, n={self.n})"
