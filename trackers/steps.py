"""How a decorated step's arguments and return value become a batch record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

INPUT_KEYS = ("inputs", "input", "x", "images", "image", "input_ids", "pixel_values", "features")
TARGET_KEYS = ("targets", "target", "labels", "label", "y")


def _first(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


def split_arguments(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(inputs, targets)`` from a step's arguments.

    Accepted shapes: ``step(inputs, targets)``; ``step(batch)`` with a
    ``(inputs, targets)`` tuple/list or a dict with input/target keys
    (``inputs``/``x``/``images``/``input_ids``..., ``targets``/``labels``/``y``...);
    ``step(inputs)``; the same as keyword arguments. Anything else gives
    ``(None, None)`` and the step's return value must carry what is needed.
    """
    if kwargs:
        inputs = _first(kwargs, INPUT_KEYS)
        targets = _first(kwargs, TARGET_KEYS)
        if inputs is None and "batch" in kwargs:
            return split_arguments((kwargs["batch"],), {})
        if inputs is not None or targets is not None:
            if inputs is None and args:
                inputs = args[0]
            return inputs, targets
    if len(args) >= 2:
        return args[0], args[1]
    if len(args) == 1:
        batch = args[0]
        if isinstance(batch, Mapping):
            return _first(batch, INPUT_KEYS), _first(batch, TARGET_KEYS)
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return batch[0], batch[1]
        if isinstance(batch, (tuple, list)) and len(batch) == 1:
            return batch[0], None
        return batch, None
    return None, None


def split_result(result: Any) -> tuple[Any, Any, Any, bool]:
    """``(loss, outputs, targets, understood)`` from a step's return value.

    A tensor or number is the loss; a mapping may carry ``loss``,
    ``outputs`` (or ``logits``) and ``targets`` (or ``labels``); an object
    with a ``loss`` attribute (a transformers ``ModelOutput``) gives its loss
    and logits; ``None`` carries nothing.
    """
    if result is None:
        return None, None, None, True
    if isinstance(result, (torch.Tensor, int, float)) and not isinstance(result, bool):
        return result, None, None, True
    if isinstance(result, Mapping):
        outputs = result.get("outputs", result.get("logits"))
        return result.get("loss"), outputs, _first(result, TARGET_KEYS), True
    if hasattr(result, "loss"):
        return result.loss, getattr(result, "logits", None), None, True
    return None, None, None, False
