"""The tutorial's ``plot_classes_preds``: a few images with predicted class, probability and true label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from typing_extensions import override

from callbacks.base import Callback
from callbacks.images import TUTORIAL_UNNORMALIZE, Unnormalize, check_unnormalize, image_problem, pictures
from trackers.core import hints
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter

RENDERERS = ("pillow", "matplotlib")
PANEL_PIXELS = 224  # images are scaled up (nearest neighbour) to about this size
_COLOURS = {"green": (0, 128, 0), "red": (255, 0, 0)}


def panel_titles(
    predictions: Sequence[int], confidences: Sequence[float], targets: Sequence[int], classes: Sequence[str]
) -> list[tuple[str, str]]:
    """The tutorial's title of each panel and its colour: ``("Bag, 87.5%\\n(label: Bag)", "green")``."""
    return [
        (f"{classes[p]}, {c * 100:.1f}%\n(label: {classes[t]})", "green" if p == t else "red")
        for p, c, t in zip(predictions, confidences, targets)
    ]


def _pixels(image: np.ndarray) -> np.ndarray:
    """CHW in [0, 1] -> HWC uint8 as matplotlib shows it: 1 channel in 'Greys' (1 is black), 3 in colour."""
    image = np.clip(image, 0.0, 1.0)
    if image.shape[0] == 1:
        return np.repeat(((1.0 - image[0]) * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    return (np.transpose(image, (1, 2, 0)) * 255).round().astype(np.uint8)


def draw_predictions(
    images: np.ndarray,
    predictions: Sequence[int],
    confidences: Sequence[float],
    targets: Sequence[int],
    classes: Sequence[str],
):
    """The same panels as :func:`render_predictions`, drawn with Pillow: a ``PIL.Image`` in a few milliseconds.

    >>> draw_predictions(np.zeros((2, 1, 28, 28)), [0, 1], [0.9, 0.4], [0, 0], ["shirt", "bag"]).size
    (496, 286)
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=15)
    titles = panel_titles(predictions, confidences, targets, classes)
    height, width = images.shape[2:]
    scale = max(1, PANEL_PIXELS // max(height, width))
    line_height = int(getattr(font, "size", 11) * 1.3)  # a Pillow without FreeType gives its fixed bitmap font
    title_height = 2 * line_height + 8
    panel_width = (
        max([width * scale] + [int(font.getlength(line)) for text, _ in titles for line in text.split("\n")]) + 16
    )
    canvas = Image.new("RGB", (panel_width * len(images) + 16, title_height + height * scale + 16), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (image, (text, colour)) in enumerate(zip(images, titles)):
        left = 8 + i * panel_width
        for row, line in enumerate(text.split("\n")):
            draw.text(
                (left + panel_width // 2, 8 + row * line_height), line, fill=_COLOURS[colour], font=font, anchor="ma"
            )
        panel = Image.fromarray(_pixels(image)).resize((width * scale, height * scale), Image.Resampling.NEAREST)
        canvas.paste(panel, (left + (panel_width - width * scale) // 2, title_height))
    return canvas


def render_predictions(
    images: np.ndarray,
    predictions: Sequence[int],
    confidences: Sequence[float],
    targets: Sequence[int],
    classes: Sequence[str],
):
    """A matplotlib Figure (object API, no pyplot): one panel per image, titled green when right, red when wrong."""
    from matplotlib.figure import Figure

    count = len(images)
    figure = Figure(figsize=(3 * count, 3.6))
    for i, (text, colour) in enumerate(panel_titles(predictions, confidences, targets, classes)):
        axes = figure.add_subplot(1, count, i + 1, xticks=[], yticks=[])
        image = images[i]
        if image.shape[0] == 1:
            axes.imshow(image[0], cmap="Greys", vmin=0, vmax=1)
        else:
            axes.imshow(np.transpose(image, (1, 2, 0)))
        axes.set_title(text, color=colour)
    figure.tight_layout()
    return figure


def class_indices(targets: Sequence[float | int | bool], count: int) -> list[int]:
    """Targets read back on the writer thread as class indices, or a ValueError naming the first bad one.

    >>> class_indices([2, 1.0, True], 3)
    [2, 1, 1]
    """
    labels = []
    for target in targets:
        if isinstance(target, float) and not target.is_integer():
            raise ValueError(
                f"PredictionFigure: target {target} is not a class index; give integer class indices "
                f"0..{count - 1} (or one-hot rows)"
            )
        label = int(target)
        if not 0 <= label < count:
            raise ValueError(f"PredictionFigure: target {label} is outside the {count} classes")
        labels.append(label)
    return labels


def _one_hot(targets: torch.Tensor, rows: int, classes: int) -> bool:
    """Whether ``targets`` has the shape of one-hot rows ``[rows, classes]`` (shape only: no host sync)."""
    return classes > 1 and tuple(targets.shape) == (rows, classes)


class PredictionFigure(Callback):
    """Every N steps, ``n`` images of the batch with the predicted class, its probability and the true label.

    >>> tracker = Tracker(net, callbacks=[PredictionFigure(classes=classes, every_n_steps=1000)],   # doctest: +SKIP
    ...                   writer="runs/fashion_mnist_experiment_1")

    At a logging step the first ``n`` inputs, targets and the outputs the
    forward hook captured are sliced and reduced to (prediction, probability)
    on their device; the figure is drawn on the writer thread with Pillow
    in a few milliseconds (``renderer="matplotlib"`` draws the tutorial's
    matplotlib figure instead: ~60 ms of Python that competes with training
    for the GIL). ``unnormalize=(mean, std)`` undoes the inputs'
    normalisation (the tutorial's ``img / 2 + 0.5`` is the default
    ``(0.5, 0.5)``); ``uint8`` inputs are raw pixels (0-255) and are drawn
    as they are, the default leaves them alone. 1-channel images are drawn
    in greys, 3-channel in colour. Targets are class indices (integers, or
    floats holding whole numbers) or one-hot rows ``[batch, classes]``
    (their largest entry is the label). Inputs that are not images disable
    the callback with one warning.
    """

    every: Every

    def __init__(
        self,
        classes: Sequence[str],
        every_n_steps: int = 1000,
        n: int = 4,
        tag: str = "predictions vs. actuals",
        unnormalize: Unnormalize = TUTORIAL_UNNORMALIZE,
        renderer: str = "pillow",
    ) -> None:
        if isinstance(classes, str) or not classes or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"PredictionFigure: classes must be a non-empty list of class names, got {classes!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"PredictionFigure: n must be a positive integer (images per figure), got {n!r}")
        if renderer not in RENDERERS:
            raise ValueError(f"PredictionFigure: renderer must be one of {RENDERERS}, got {renderer!r}")
        self.classes = list(classes)
        self.renderer = renderer
        self.every = Every(every_n_steps, owner="PredictionFigure")
        self.n = n
        self.tag = tag
        self.unnormalize = check_unnormalize(unnormalize, "PredictionFigure")
        self.disabled = False
        self._reporter = OnceReporter()

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        if self.disabled:
            return
        problem = self._problem(batch, state)
        if problem:
            self.disabled = True
            self._reporter.warn("disabled", f"PredictionFigure: {problem}; it turns itself off for this run")
            return
        if batch.inputs.shape[0] == 0:
            self._reporter.warn("empty", f"PredictionFigure: the batch at step {state.step} is empty; no figure then")
            return
        k = min(self.n, batch.inputs.shape[0])
        with torch.no_grad():
            images = pictures(batch.inputs[:k], self.unnormalize, "PredictionFigure", self._reporter)
            confidence, prediction = torch.softmax(batch.outputs[:k].detach().float(), dim=1).max(dim=1)
            targets = batch.targets[:k].detach()
            one_hot = _one_hot(targets, k, len(self.classes))
            targets = targets.float().argmax(dim=1) if one_hot else targets.reshape(-1)
        classes = self.classes
        render = draw_predictions if self.renderer == "pillow" else render_predictions

        def draw(
            images_: torch.Tensor, predictions: torch.Tensor, confidences: torch.Tensor, targets_: torch.Tensor
        ) -> object:
            labels = class_indices(targets_.tolist(), len(classes))
            return render(images_.numpy(), predictions.tolist(), confidences.tolist(), labels, classes)

        drawing = state.writer.later(draw, images, prediction, confidence, targets)
        state.writer.figure(self.tag, drawing, state.step)

    def _problem(self, batch: BatchRecord, state: RunState) -> str | None:
        problem = image_problem(batch.inputs)
        if problem:
            return problem + " (PredictionFigure draws images; give it image batches)"
        outputs, targets = batch.outputs, batch.targets
        if not isinstance(outputs, torch.Tensor) and batch.raw_outputs is not None:
            return hints.no_scores_in(batch.raw_outputs)
        if not isinstance(outputs, torch.Tensor):
            return f"no model outputs reached the step; {hints.missing_outputs_fix(state.loop)}"
        if outputs.ndim != 2:
            return f"the outputs have shape {tuple(outputs.shape)}; [batch, classes] scores are needed"
        if not outputs.is_floating_point():
            return f"the outputs are {outputs.dtype}; it needs class scores (logits or probabilities), not labels"
        if outputs.shape[1] != len(self.classes):
            return f"the outputs have {outputs.shape[1]} scores but classes has {len(self.classes)} names"
        if not isinstance(targets, torch.Tensor):
            return f"no targets matching the batch; {hints.missing_targets_fix(state.loop)}"
        if targets.numel() != outputs.shape[0] and not _one_hot(targets, outputs.shape[0], outputs.shape[1]):
            return (
                f"the targets have shape {tuple(targets.shape)} for {outputs.shape[0]} images; give one class index "
                f"per image ([batch]) or one-hot rows ([batch, {outputs.shape[1]}])"
            )
        return None

    def __repr__(self) -> str:
        return (
            f"PredictionFigure(classes=[{len(self.classes)} names], every_n_steps={self.every.n}, n={self.n}, "
            f"renderer={self.renderer!r})"
        )
