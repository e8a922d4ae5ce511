"""Points for TensorBoard's projector: the tutorial's ``add_embedding`` of a sample of images."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback
from callbacks.images import TUTORIAL_UNNORMALIZE, Unnormalize, as_nchw, check_unnormalize, image_problem, pictures
from trackers.core.module_hooks import unwrap
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter
from trackers.tensorboard import projector

MAX_INPUT_FEATURES = 4096
"""The most features a point gets from the raw inputs (3x36x36 images fit; 3x224x224 are averaged down to that)."""

_TSV_BYTES_PER_VALUE = 16  # about what one float takes in tensors.tsv, with its tab


def _megabytes(points: int, features: int) -> str:
    return f"~{max(1, round(points * features * _TSV_BYTES_PER_VALUE / 1e6))} MB"


def reduced_size(channels: int, height: int, width: int, limit: int = MAX_INPUT_FEATURES) -> tuple[int, int]:
    """The largest ``(height, width)`` of the same aspect with ``channels * height * width <= limit``.

    >>> reduced_size(3, 224, 224), reduced_size(1, 28, 28), reduced_size(3, 100, 400)
    ((36, 36), (28, 28), (18, 73))
    """
    if channels * height * width <= limit:
        return height, width
    scale = (limit / (channels * height * width)) ** 0.5
    new_height, new_width = max(1, int(height * scale)), max(1, int(width * scale))
    while channels * new_height * new_width > limit and (new_height > 1 or new_width > 1):
        if new_height >= new_width:
            new_height -= 1
        else:
            new_width -= 1
    return new_height, new_width


def label_name(value: float | int | bool, classes: Sequence[str] | None) -> str:
    """A target as the projector's label: its class name when it is a class index of ``classes``.

    >>> label_name(1.0, ["cat", "dog"]), label_name(7, ["cat", "dog"]), label_name(0.5, None)
    ('dog', '7', '0.5')
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and classes and 0 <= value < len(classes):
        return classes[value]
    return str(int(value) if isinstance(value, bool) else value)


class _Sample:
    """Up to ``n`` rows of features, targets and label images, kept on their device."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.features: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.images: list[torch.Tensor] = []
        self.count = 0

    def room(self, rows: int) -> int:
        """How many of ``rows`` new rows are still wanted."""
        return max(0, min(self.n - self.count, rows))

    def add(self, features: torch.Tensor, targets: torch.Tensor | None, images: torch.Tensor | None) -> None:
        self.features.append(features)
        if targets is not None:
            self.targets.append(targets)
        if images is not None:
            self.images.append(images)
        self.count += features.shape[0]


class Embedding(Callback):
    """At the end of the run, up to ``n`` samples in the projector, labelled by class, with their images.

    >>> tracker = Tracker(net, callbacks=[Embedding(n=100, layer="fc2", classes=classes)])   # doctest: +SKIP

    Features are the flattened inputs, or the activations of ``layer`` (a
    module name of the model, captured by a forward hook). Samples come from
    the last validation pass, or from the first training batches when there
    was none; they stay on their device until the end.

    Inputs may be float images or ``uint8`` pixels (0-255); ``uint8`` becomes
    floats in [0, 1] (the features and the label images alike), and the
    default ``unnormalize`` (for normalised floats) leaves it alone. Without
    ``layer``, raw inputs give at most :data:`MAX_INPUT_FEATURES` features
    a point: larger images (a 3x224x224 image is 150528 features, a ~240 MB
    ``tensors.tsv`` for 100 points) are averaged down to fit, and larger
    non-image inputs are refused; both are said once, with the fix (pass
    ``layer=``, the name of a layer whose output to project). Label images
    of any height and width are centred in the sprite's square cells, scaled
    down on the device when TensorBoard's 8192x8192-pixel sprite would
    otherwise be passed. Targets are class indices (integers, or floats
    holding whole numbers) or one-hot rows, shown as ``classes`` names.
    """

    def __init__(
        self,
        n: int = 100,
        layer: str | None = None,
        classes: Sequence[str] | None = None,
        tag: str = "default",
        label_images: bool = True,
        unnormalize: Unnormalize = TUTORIAL_UNNORMALIZE,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Embedding: n must be a positive integer, got {n!r}")
        self.n = n
        self.layer = layer
        self.classes = list(classes) if classes is not None else None
        self.tag = tag
        self.label_images = label_images
        self.unnormalize = check_unnormalize(unnormalize, "Embedding")
        self._reporter = OnceReporter()
        self._activation: torch.Tensor | None = None
        self._handle = None
        self._refused = False
        self._train = _Sample(n)
        self._validation = _Sample(n)

    @override
    def on_train_start(self, state: RunState) -> None:
        self._train, self._validation = _Sample(self.n), _Sample(self.n)
        if self.layer is None:
            return
        if state.model is None:
            raise ValueError("Embedding(layer=...) needs the model: Tracker(model, ...)")
        modules = dict(unwrap(state.model).named_modules())  # the bare model's names, inside DDP or torch.compile
        if self.layer not in modules:
            close = difflib.get_close_matches(self.layer, list(modules), n=3)
            raise ValueError(
                f"Embedding: the model has no layer {self.layer!r}"
                + (
                    f"; did you mean {', '.join(map(repr, close))}?"
                    if close
                    else f"; its layers are {', '.join(list(modules)[1:8])}..."
                )
            )
        self._handle = modules[self.layer].register_forward_hook(self._keep_activation)

    def _keep_activation(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._activation = output.detach() if isinstance(output, torch.Tensor) else None

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        if self._train.count < self.n:
            self._collect(self._train, batch)

    @override
    def on_validation_start(self, state: RunState) -> None:
        self._validation = _Sample(self.n)

    @override
    def on_validation_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        if self._validation.count < self.n:
            self._collect(self._validation, batch)

    def _collect(self, sample: _Sample, batch: BatchRecord) -> None:
        """Keep the batch's first rows (features, targets, label images) the sample still wants; no host sync."""
        features = self._activation if self.layer is not None else batch.inputs
        if not isinstance(features, torch.Tensor) or features.ndim < 2:
            self._reporter.warn(
                "features",
                f"Embedding: no {'activations of ' + self.layer if self.layer else 'input'}"
                " tensor [batch, ...] for this batch; it is left out",
            )
            return
        take = sample.room(features.shape[0])
        if take == 0:
            return
        is_image = image_problem(batch.inputs) is None
        with torch.no_grad():
            points = self._features(features[:take].detach(), is_image and self.layer is None)
            if points is None:
                return
            targets = self._targets(batch.targets, features.shape[0])
            images = None
            if self.label_images and is_image and batch.inputs.shape[0] >= take:
                images = self._label_images(batch.inputs[:take])
        sample.add(points, None if targets is None else targets[:take].clone(), images)

    def _features(self, features: torch.Tensor, raw_images: bool) -> torch.Tensor | None:
        """``[rows, features]`` floats: a layer's activations flattened, or the inputs (images bounded in size)."""
        per_point = features[0].numel()
        if raw_images:
            pixels = as_nchw(features)
            pixels = pixels.float() / 255 if pixels.dtype == torch.uint8 else pixels.float()
            channels, height, width = pixels.shape[1:]
            size = reduced_size(channels, height, width)
            if size != (height, width):
                self._reporter.warn(
                    "large-images",
                    f"Embedding: the inputs are {channels}x{height}x{width} images, {per_point} features a point "
                    f"({_megabytes(self.n, per_point)} of tensors.tsv for n={self.n} points); they are averaged "
                    f"down to {channels}x{size[0]}x{size[1]} ({channels * size[0] * size[1]} features) for the "
                    "projector. For features that mean more, pass layer= (the name of a layer whose output to "
                    "project, e.g. the one before the classifier), or feed smaller images",
                    stacklevel=5,
                )
                pixels = torch.nn.functional.adaptive_avg_pool2d(pixels, size)
            return pixels.flatten(1).clone()
        if self.layer is None and per_point > MAX_INPUT_FEATURES:
            self._refused = True
            self._reporter.warn(
                "large-inputs",
                f"Embedding: the inputs have {per_point} features a point ({_megabytes(self.n, per_point)} of "
                f"tensors.tsv for n={self.n} points), more than the {MAX_INPUT_FEATURES} it projects from raw "
                "inputs, so no embedding is written from them. Pass layer= (the name of a layer whose output to "
                "project, e.g. the one before the classifier)",
                stacklevel=5,
            )
            return None
        if self.layer is not None and per_point > MAX_INPUT_FEATURES:
            self._reporter.warn(
                "large-layer",
                f"Embedding: the activations of {self.layer!r} have {per_point} features a point "
                f"({_megabytes(self.n, per_point)} of tensors.tsv for n={self.n} points); they are written as "
                "asked. A pooled layer (or a smaller n) gives a smaller file the projector loads faster",
                stacklevel=5,
            )
        points = features.flatten(1)
        return (points.float() / 255 if points.dtype == torch.uint8 else points.float()).clone()

    def _targets(self, targets: Any, rows: int) -> torch.Tensor | None:
        """One label per row: class indices as they are, one-hot rows as their argmax; None (said once) else."""
        if not isinstance(targets, torch.Tensor):
            return None
        targets = targets.detach()
        if targets.ndim == 2 and targets.shape[0] == rows and targets.shape[1] > 1:
            return targets.float().argmax(dim=1)
        if targets.numel() == rows:
            return targets.reshape(-1)
        self._reporter.warn(
            "targets",
            f"Embedding: the targets have shape {tuple(targets.shape)} for {rows} samples, not one label each "
            "(class indices [batch] or one-hot rows [batch, classes]); the points are written without labels",
            stacklevel=5,
        )
        return None

    def _label_images(self, inputs: torch.Tensor) -> torch.Tensor:
        """``uint8`` RGB-or-grey label images, scaled down on the device to the sprite cell they will get."""
        images = pictures(inputs, self.unnormalize, "Embedding", self._reporter)
        height, width = images.shape[2:]
        size = projector.fitted_size(height, width, max(1, projector.sprite_cell(self.n, height, width)))
        if size != (height, width):
            images = torch.nn.functional.interpolate(
                images, size=size, mode="bilinear", antialias=True, align_corners=False
            ).clamp(0, 1)
        return (images * 255).round().to(torch.uint8)

    @override
    def on_train_end(self, state: RunState) -> None:
        if self._handle is not None:
            self._handle.remove()
        sample = self._validation if self._validation.count else self._train
        if not sample.count:
            if not self._refused:
                self._reporter.warn("empty", "Embedding: no samples were seen; nothing to project")
            return
        mat = torch.cat(sample.features)
        metadata = None
        if len(sample.targets) == len(sample.features):
            classes = self.classes
            metadata = state.writer.later(
                lambda t: [label_name(value, classes) for value in t.tolist()], torch.cat(sample.targets)
            )
        label_img = torch.cat(sample.images) if len(sample.images) == len(sample.features) else None
        state.writer.embedding(mat, metadata=metadata, label_img=label_img, step=max(state.step, 0), tag=self.tag)
