"""Points for TensorBoard's projector: the tutorial's ``add_embedding`` of a sample of images."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback
from callbacks.images import Unnormalize, as_nchw, check_unnormalize, image_problem, unnormalized
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter


class _Sample:
    """Up to ``n`` rows of features, targets and images, kept on their device."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.features: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.images: list[torch.Tensor] = []
        self.count = 0

    def add(self, features: torch.Tensor, targets: Any, images: torch.Tensor | None) -> None:
        take = min(self.n - self.count, features.shape[0])
        if take <= 0:
            return
        self.features.append(features[:take].detach().flatten(1).float())
        if isinstance(targets, torch.Tensor):
            self.targets.append(targets.reshape(-1)[:take].detach())
        if images is not None:
            self.images.append(images[:take].detach())
        self.count += take


class Embedding(Callback):
    """At the end of the run, up to ``n`` samples in the projector, labelled by class, with their images.

    >>> tracker = Tracker(net, callbacks=[Embedding(n=100, layer="fc2", classes=classes)])   # doctest: +SKIP

    Features are the flattened inputs, or the activations of ``layer`` (a
    module name of the model, captured by a forward hook). Samples come from
    the last validation pass, or from the first training batches when there
    was none; they stay on their device until the end.
    """

    def __init__(
        self,
        n: int = 100,
        layer: str | None = None,
        classes: Sequence[str] | None = None,
        tag: str = "default",
        label_images: bool = True,
        unnormalize: Unnormalize = (0.5, 0.5),
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
        self._train = _Sample(n)
        self._validation = _Sample(n)

    @override
    def on_train_start(self, state: RunState) -> None:
        self._train, self._validation = _Sample(self.n), _Sample(self.n)
        if self.layer is None:
            return
        if state.model is None:
            raise ValueError("Embedding(layer=...) needs the model: Tracker(model, ...)")
        modules = dict(state.model.named_modules())
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
        features = self._activation if self.layer is not None else batch.inputs
        if not isinstance(features, torch.Tensor) or features.ndim < 2:
            self._reporter.warn(
                "features",
                f"Embedding: no {'activations of ' + self.layer if self.layer else 'input'}"
                " tensor [batch, ...] for this batch; it is left out",
            )
            return
        images = None
        if self.label_images and image_problem(batch.inputs) is None:
            images = unnormalized(as_nchw(batch.inputs.detach()), self.unnormalize)
        sample.add(features, batch.targets, images)

    @override
    def on_train_end(self, state: RunState) -> None:
        if self._handle is not None:
            self._handle.remove()
        sample = self._validation if self._validation.count else self._train
        if not sample.count:
            self._reporter.warn("empty", "Embedding: no samples were seen; nothing to project")
            return
        mat = torch.cat(sample.features)
        metadata = None
        if len(sample.targets) == len(sample.features):
            classes = self.classes
            metadata = state.writer.later(
                lambda t: [classes[i] if classes and 0 <= i < len(classes) else str(i) for i in t.tolist()],
                torch.cat(sample.targets),
            )
        label_img = torch.cat(sample.images) if len(sample.images) == len(sample.features) else None
        state.writer.embedding(mat, metadata=metadata, label_img=label_img, step=max(state.step, 0), tag=self.tag)
