"""Shared image handling of the picture callbacks: checking a batch holds images, bringing them to [0, 1].

Images are float batches (in [0, 1], or normalised with a mean and std) or
``uint8`` batches of raw pixels (0-255), as ``SummaryWriter.add_image``
takes them. What each kind becomes before it is drawn:

- floats go through ``unnormalize``: the default ``(0.5, 0.5)`` undoes the
  tutorial's ``Normalize((0.5,), (0.5,))``; ``None`` shows them as they are;
- ``uint8`` pixels are divided by 255 and are *not* unnormalised by the
  default: raw pixels were never normalised. An ``unnormalize=(mean, std)``
  the user gave is applied to them after the division (with a warning, as
  that is rarely meant); a function gets the batch as it came, ``uint8``
  included, and may return ``uint8`` or floats in [0, 1].

Everything runs on the images' device, without a host sync.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from trackers.errors import OnceReporter

Unnormalize = tuple[float | Sequence[float], float | Sequence[float]] | Callable[[torch.Tensor], torch.Tensor] | None

IMAGE_KINDS = "[N, C, H, W] or [N, H, W] floats, or uint8 pixels (0-255)"


class TutorialUnnormalize(tuple[float, float]):
    """The default ``unnormalize``: the tutorial's ``(0.5, 0.5)``, marked as not chosen by the user.

    It is a plain ``(0.5, 0.5)`` everywhere; only ``uint8`` images tell it
    apart from one the user passed (raw pixels are not unnormalised by it).
    """


TUTORIAL_UNNORMALIZE = TutorialUnnormalize((0.5, 0.5))


def image_problem(inputs: Any) -> str | None:
    """Why ``inputs`` is not a batch of images, or None.

    >>> image_problem(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)) is None
    True
    >>> image_problem(torch.zeros(2, 8, dtype=torch.long)).split(";")[0]
    "the batch's inputs have shape (2, 8) and dtype torch.int64"
    """
    if not isinstance(inputs, torch.Tensor):
        return f"the batch's inputs are a {type(inputs).__name__}, not an image tensor"
    if inputs.ndim not in (3, 4) or not (inputs.is_floating_point() or inputs.dtype == torch.uint8):
        return f"the batch's inputs have shape {tuple(inputs.shape)} and dtype {inputs.dtype}; images are {IMAGE_KINDS}"
    if inputs.ndim == 4 and inputs.shape[1] not in (1, 3):
        return f"the batch's inputs have {inputs.shape[1]} channels; images have 1 or 3"
    return None


def as_nchw(images: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` as ``[N, 1, H, W]``; ``[N, C, H, W]`` as it is."""
    return images.unsqueeze(1) if images.ndim == 3 else images


def check_unnormalize(value: Unnormalize, owner: str) -> Unnormalize:
    """``value`` checked: ``(mean, std)``, a function or None; ``owner`` names the callback in the error."""
    if value is None or callable(value) or isinstance(value, TutorialUnnormalize):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (value[0], value[1])
    raise ValueError(
        f"{owner}: unnormalize must be (mean, std), a function or None, got {value!r}; "
        "the tutorial's Normalize((0.5,), (0.5,)) is undone by unnormalize=(0.5, 0.5)"
    )


def _unit(images: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1]: ``uint8`` divided by 255, floats clamped."""
    if images.dtype == torch.uint8:
        return images.float() / 255
    return images.float().clamp(0, 1)


def unnormalized(images: torch.Tensor, how: Unnormalize) -> torch.Tensor:
    """The images as floats in [0, 1], on their device (see the module's docstring for ``uint8``).

    >>> unnormalized(torch.tensor([[[-1.0, 1.0]]]), (0.5, 0.5)).tolist()
    [[[0.0, 1.0]]]
    >>> unnormalized(torch.tensor([[[0, 255]]], dtype=torch.uint8), TUTORIAL_UNNORMALIZE).tolist()
    [[[0.0, 1.0]]]
    """
    if callable(how):
        return _unit(how(images))
    raw_pixels = images.dtype == torch.uint8
    if how is None or (raw_pixels and isinstance(how, TutorialUnnormalize)):
        return _unit(images)
    scaled = images.float() / 255 if raw_pixels else images.float()
    mean, std = (torch.as_tensor(v, dtype=torch.float32, device=images.device).reshape(-1, 1, 1) for v in how)
    return (scaled * std + mean).clamp(0, 1)


def pictures(images: torch.Tensor, how: Unnormalize, owner: str, reporter: OnceReporter) -> torch.Tensor:
    """``[N, C, H, W]`` floats in [0, 1] from a batch :func:`image_problem` accepted, on its device.

    Says once (as ``owner``) when an ``unnormalize=(mean, std)`` the user
    gave is applied to ``uint8`` pixels.
    """
    if images.dtype == torch.uint8 and isinstance(how, tuple) and not isinstance(how, TutorialUnnormalize):
        reporter.warn(
            "uint8-unnormalize",
            f"{owner}: the inputs are uint8 pixels (0-255), so unnormalize={how!r} is applied to them divided by "
            "255 (pixels / 255 * std + mean); pass unnormalize=None to show the pixels as they are",
            stacklevel=4,
        )
    return unnormalized(as_nchw(images.detach()), how)
