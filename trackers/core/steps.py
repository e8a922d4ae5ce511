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

    A tensor or number is the loss; a mapping may carry ``loss`` (or one
    scalar under a key naming a loss, like ignite's ``"batch loss"``),
    ``outputs`` (or ``logits``, ``y_pred``) and ``targets`` (or ``labels``,
    ``y``); an object with a ``loss`` attribute (a transformers
    ``ModelOutput``) gives its loss and logits; a tuple or list starting
    with a scalar is ``(loss, outputs, targets)``; ``None`` carries nothing.
    """
    if isinstance(result, torch.Tensor):  # the usual step returns its loss
        return result, None, None, True
    if result is None:
        return None, None, None, True
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        return result, None, None, True
    if isinstance(result, Mapping):
        outputs = result.get("outputs", result.get("logits", result.get("y_pred")))
        return _loss_in(result), outputs, _first(result, TARGET_KEYS + ("y",)), True
    if hasattr(result, "loss"):
        return result.loss, getattr(result, "logits", None), None, True
    if isinstance(result, (tuple, list)) and result and is_scalar(result[0]):
        rest = list(result[1:]) + [None, None]
        return result[0], rest[0], rest[1], True  # (loss, outputs, targets), the shape ignite steps often return
    return None, None, None, False


def is_scalar(value: Any) -> bool:
    """A one-element tensor or a (non-bool) number: what a loss must be."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _loss_in(result: Mapping[str, Any]) -> Any:
    """``result["loss"]``, else the only scalar whose key names a loss (``"batch loss"``, ``"train_loss"``)."""
    if "loss" in result:
        return result["loss"]
    named = [
        value for key, value in result.items() if isinstance(key, str) and "loss" in key.lower() and is_scalar(value)
    ]
    return named[0] if len(named) == 1 else None


OutputSelector = Any  # None, a key or attribute name, an index, or a function raw -> tensor


def _first_tensor(values: Any) -> Any:
    for value in values:
        if isinstance(value, torch.Tensor) and value.ndim >= 1:  # a 0-d tensor is a loss, not scores
            return value
    return None


def select_outputs(raw: Any, selector: OutputSelector = None) -> tuple[Any, str | None]:
    """``(scores, problem)``: the class scores in what a forward returned, or why there are none.

    By convention a tensor is used as it is; a dict, a transformers
    ``ModelOutput`` or a namedtuple gives its ``logits``, else its first
    tensor of at least one dimension; a tuple or list its first such tensor.
    ``selector`` overrides that: a key or attribute name, an index, or a
    function of the raw output.

    >>> select_outputs({"loss": torch.tensor(1.0), "logits": torch.zeros(2, 3)})[0].shape
    torch.Size([2, 3])
    >>> print(select_outputs({"hidden": "x"})[1])  # doctest: +NORMALIZE_WHITESPACE
    the forward returned a dict with keys ['hidden'] and none holds a tensor of scores;
    name it with Tracker(..., outputs='<key>')
    """
    if raw is None:
        return None, None
    if selector is not None:
        try:
            if callable(selector):
                chosen = selector(raw)
            elif isinstance(selector, int) and not isinstance(selector, bool):
                chosen = raw[selector]
            elif isinstance(raw, Mapping):
                chosen = raw[selector]
            else:
                chosen = getattr(raw, selector)
        except (KeyError, IndexError, AttributeError, TypeError) as error:
            return None, (
                f"Tracker(outputs={selector!r}) finds nothing in the forward's {_describe(raw)} "
                f"({type(error).__name__}: {error})"
            )
        if not isinstance(chosen, torch.Tensor):
            return None, f"Tracker(outputs={selector!r}) selects a {type(chosen).__name__}, not a tensor"
        return chosen, None
    if isinstance(raw, torch.Tensor):
        return raw, None
    if isinstance(raw, Mapping):
        logits = raw.get("logits")
        chosen = logits if isinstance(logits, torch.Tensor) else _first_tensor(raw.values())
    elif isinstance(getattr(raw, "logits", None), torch.Tensor):
        chosen = raw.logits
    elif isinstance(raw, (tuple, list)):
        chosen = _first_tensor(raw)
    else:
        chosen = None
    if chosen is None:
        return None, (
            f"the forward returned {_describe(raw)} and none holds a tensor of scores; "
            "name it with Tracker(..., outputs='<key>')"
        )
    return chosen, None


def _describe(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return f"a {type(raw).__name__} with keys {list(raw.keys())[:8]}"
    if isinstance(raw, tuple) and hasattr(raw, "_fields"):
        return f"a {type(raw).__name__} with fields {list(raw._fields)[:8]}"
    if isinstance(raw, (tuple, list)):
        return f"a {type(raw).__name__} of {len(raw)} items"
    return f"a {type(raw).__name__}"
