"""Precision-recall curves in torch, all classes at once, counting exactly like ``add_pr_curve``.

``add_pr_curve`` puts each prediction in bucket ``floor(p * (T - 1))`` and
counts true and false positives per bucket with numpy, one class a call.
:func:`bucket_counts` does the same for every class in one ``bincount`` on
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

MAX_THRESHOLDS = 127  # TensorBoard's limit
_MINIMUM_COUNT = 1e-7


def bucket_counts(probabilities: torch.Tensor, targets: torch.Tensor, num_thresholds: int = 127) -> torch.Tensor:
    """``[C, 2, T]``: per class, true-positive and false-positive counts per threshold bucket.

    ``probabilities`` is ``[N, C]``, ``targets`` ``[N]`` class indices; runs
    on their device without a host sync. Probabilities outside [0, 1] fall
    outside every bucket, as with numpy.
    """
    n, classes = probabilities.shape
    index = torch.floor(probabilities * (num_thresholds - 1)).long()
    valid = (index >= 0) & (index < num_thresholds)
    positive = targets.reshape(-1, 1) == torch.arange(classes, device=targets.device)
    slot = torch.arange(classes, device=index.device) * (2 * num_thresholds) + index
    slot = torch.where(positive, slot, slot + num_thresholds)  # tp buckets first, then fp
    slot = torch.where(valid, slot, classes * 2 * num_thresholds)  # dropped
    counts = torch.bincount(slot.reshape(-1), minlength=classes * 2 * num_thresholds + 1)
    return counts[:-1].reshape(classes, 2, num_thresholds)


def binary_bucket_counts(labels: torch.Tensor, predictions: torch.Tensor, num_thresholds: int = 127) -> torch.Tensor:
    """``[2, T]`` bucket counts for one binary curve (``add_pr_curve``'s labels and predictions)."""
    predictions = predictions.reshape(-1, 1)
    probabilities = torch.cat([predictions, predictions], dim=1)  # column 1 is the positive class
    return bucket_counts(probabilities, labels.reshape(-1).bool().long(), num_thresholds)[1]


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
