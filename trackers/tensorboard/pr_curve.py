"""Precision-recall curves in torch, all classes at once, counting exactly like ``add_pr_curve``.

``add_pr_curve`` puts each prediction in bucket ``floor(p * (T - 1))`` and
counts true and false positives per bucket with numpy, one class a call.
:func:`bucket_counts` does the same for every class in one count on
the tensors' device; :func:`curve_from_buckets` finishes on the host with
TensorBoard's own arithmetic (reverse cumulative sums, precision, recall).

>>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
>>> buckets = bucket_counts(probs, torch.tensor([0, 1, 1]), num_thresholds=3)
>>> curve_from_buckets(buckets[0])[:4, 0].tolist()   # class 0 at threshold 0: tp, fp, tn, fn
[1.0, 2.0, 0.0, 0.0]
"""

from __future__ import annotations

import numpy as np
import torch

from trackers.tensorboard.histogram import count_slots

MAX_THRESHOLDS = 127  # TensorBoard's limit
_MINIMUM_COUNT = 1e-7


def bucket_counts(
    probabilities: torch.Tensor,
    targets: torch.Tensor,
    num_thresholds: int = 127,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[C, 2, T]``: per class, true-positive and false-positive counts per threshold bucket.

    ``probabilities`` is ``[N, C]``, ``targets`` ``[N]`` class indices, ``weights`` (optional) ``[N]`` or
    ``[N, C]`` what each prediction counts for; runs on their device without a host sync. Probabilities
    outside [0, 1] fall outside every bucket, as with numpy.
    """
    n, classes = probabilities.shape
    index = torch.floor(probabilities * (num_thresholds - 1)).long()
    valid = (index >= 0) & (index < num_thresholds)
    positive = targets.reshape(-1, 1) == torch.arange(classes, device=targets.device)
    slot = torch.arange(classes, device=index.device) * (2 * num_thresholds) + index
    slot = torch.where(positive, slot, slot + num_thresholds)  # tp buckets first, then fp
    slot = torch.where(valid, slot, classes * 2 * num_thresholds)  # dropped
    if weights is not None:
        weights = weights.to(_count_dtype(weights.device)).reshape(n, -1).expand(n, classes).reshape(-1)
    counts = count_slots(slot, classes * 2 * num_thresholds + 1, weights)
    return counts[:-1].reshape(classes, 2, num_thresholds)


def binary_bucket_counts(
    labels: torch.Tensor, predictions: torch.Tensor, num_thresholds: int = 127, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``[2, T]`` bucket counts for one binary curve, exactly as ``add_pr_curve`` counts its labels, predictions
    and weights: a prediction adds ``label * weight`` to the true positives of its bucket and
    ``(1 - label) * weight`` to the false positives."""
    dtype = _count_dtype(predictions.device)
    labels = labels.reshape(-1).to(dtype)
    index = torch.floor(predictions.reshape(-1) * (num_thresholds - 1)).long()
    slot = torch.where((index >= 0) & (index < num_thresholds), index, num_thresholds)  # the last slot: dropped
    if weights is None:
        positive, negative = labels, 1.0 - labels
    else:
        weights = weights.reshape(-1).to(dtype)
        positive, negative = labels * weights, (1.0 - labels) * weights
    tp = count_slots(slot, num_thresholds + 1, positive)[:-1]
    fp = count_slots(slot, num_thresholds + 1, negative)[:-1]
    return torch.stack([tp, fp])


def _count_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def curve_from_buckets(buckets: np.ndarray | torch.Tensor) -> np.ndarray:
    """``[6, T]`` (tp, fp, tn, fn, precision, recall) from ``[2, T]`` bucket counts, as TensorBoard computes it."""
    buckets = np.asarray(buckets, dtype=np.float64)
    tp = np.cumsum(buckets[0][::-1])[::-1]
    fp = np.cumsum(buckets[1][::-1])[::-1]
    tn = fp[0] - fp
    fn = tp[0] - tp
    precision = tp / np.maximum(_MINIMUM_COUNT, tp + fp)
    recall = tp / np.maximum(_MINIMUM_COUNT, tp + fn)
    return np.stack((tp, fp, tn, fn, precision, recall))
