"""Finding a pass's loss among the metrics a framework keeps (Lightning's logged values, ignite's, transformers')."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def find_loss(
    metrics: Mapping[str, Any] | None,
    key: str | None = None,
    names: Iterable[str] = (),
    fallback: Callable[[str], bool] | None = None,
) -> Any:
    """``metrics[key]`` when the user named it; else the first of ``names`` present; else the one metric
    ``fallback`` accepts (None when there is none, or several: guessing between them could log the wrong one).

    >>> find_loss({"eval_loss": 0.5, "eval_accuracy": 0.9}, names=("eval_loss",))
    0.5
    >>> find_loss({"val_nll": 0.7}, fallback=lambda name: name.endswith("nll"))
    0.7
    """
    if not metrics:
        return None
    if key is not None:
        return metrics.get(key)
    for name in names:
        if name in metrics:
            return metrics[name]
    if fallback is None:
        return None
    candidates = [name for name in metrics if fallback(name)]
    return metrics[candidates[0]] if len(candidates) == 1 else None
