"""Shared image handling of the picture callbacks: checking a batch holds images, undoing normalisation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

Unnormalize = tuple[float | Sequence[float], float | Sequence[float]] | Callable[[torch.Tensor], torch.Tensor] | None


def image_problem(inputs: Any) -> str | None:
    """Why ``inputs`` is not a batch of images (``[N, C, H, W]`` or ``[N, H, W]`` floats), or None."""
    if not isinstance(inputs, torch.Tensor):
        return f"the batch's inputs are a {type(inputs).__name__}, not an image tensor"
    if inputs.ndim not in (3, 4) or not inputs.is_floating_point():
        return (
            f"the batch's inputs have shape {tuple(inputs.shape)} and dtype {inputs.dtype}; images are "
            "[N, C, H, W] or [N, H, W] floats"
        )
    if inputs.ndim == 4 and inputs.shape[1] not in (1, 3):
        return f"the batch's inputs have {inputs.shape[1]} channels; images have 1 or 3"
    return None


def as_nchw(images: torch.Tensor) -> torch.Tensor:
    return images.unsqueeze(1) if images.ndim == 3 else images


def check_unnormalize(value: Unnormalize, owner: str) -> Unnormalize:
    if value is None or callable(value):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (value[0], value[1])
    raise ValueError(
        f"{owner}: unnormalize must be (mean, std), a function or None, got {value!r}; "
        "the tutorial's Normalize((0.5,), (0.5,)) is undone by unnormalize=(0.5, 0.5)"
    )


def unnormalized(images: torch.Tensor, how: Unnormalize) -> torch.Tensor:
    """``images * std + mean`` (per channel when sequences), clamped to [0, 1]; on the images' device."""
    if how is None:
        return images.float().clamp(0, 1)
    if callable(how):
        return how(images).float().clamp(0, 1)
    mean, std = (torch.as_tensor(v, dtype=torch.float32, device=images.device).reshape(-1, 1, 1) for v in how)
    return (images.float() * std + mean).clamp(0, 1)
