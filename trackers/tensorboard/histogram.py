"""TensorBoard's default ('tensorflow') histogram, computed in torch on the values' own device.

``SummaryWriter.add_histogram`` bins values with numpy over 1549 geometric
edges (0, ±1e-12·1.1^k up to 1e20). Here the bucket of each value comes from
the closed form (log, floor) with a one-step fix-up against the very same
edge table, then one ``bincount``; the result is the same counts, min, max,
num, sum and sum of squares, so the same picture in TensorBoard.

>>> counts, stats = bucket_counts(torch.tensor([0.0, 0.5, -2.0, float("nan")]))
>>> int(counts.sum()), stats.tolist()[2], stats.tolist()[5]   # counted, num, non-finite
(3, 3.0, 1.0)
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _tensorflow_positive_edges() -> list[float]:
    # The same loop as SummaryWriter.__init__, so the same floating-point edges.
    edges, v = [], 1e-12
    while v < 1e20:
        edges.append(v)
        v *= 1.1
    return edges


_POSITIVE = _tensorflow_positive_edges()
N_POSITIVE = len(_POSITIVE)  # 774
TENSORFLOW_EDGES = np.array([-v for v in reversed(_POSITIVE)] + [0.0] + _POSITIVE, dtype=np.float64)
N_BINS = len(TENSORFLOW_EDGES) - 1  # 1548
_ZERO_BIN = N_POSITIVE  # [0, 1e-12)
_LOG_FIRST = math.log(_POSITIVE[0])
_INV_LOG_STEP = 1.0 / math.log(1.1)

_edge_cache: dict[tuple, torch.Tensor] = {}


def _positive_edges(device: torch.device) -> torch.Tensor:
    dtype = torch.float32 if device.type == "mps" else torch.float64
    key = (device, dtype)
    if key not in _edge_cache:
        # one sentinel past the end so that "the next edge" always exists
        _edge_cache[key] = torch.tensor(_POSITIVE + [math.inf], dtype=dtype, device=device)
    return _edge_cache[key]


def count_slots(slots: torch.Tensor, size: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``bincount(slots, weights, minlength=size)`` for slots known to be in ``[0, size)``, without a host sync.

    CUDA's ``bincount`` reads the largest slot back to size its output (a
    sync); a ``scatter_add_`` into ``size`` zeros does not.

    >>> count_slots(torch.tensor([0, 2, 2]), 4).tolist()
    [1, 0, 2, 0]
    """
    slots = slots.reshape(-1)
    if slots.device.type == "cpu":
        return torch.bincount(slots, weights, minlength=size)
    if weights is None:
        weights = torch.ones((), dtype=torch.long, device=slots.device).expand(slots.shape)
    return torch.zeros(size, dtype=weights.dtype, device=slots.device).scatter_add_(0, slots, weights.reshape(-1))


def bucket_counts(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(counts[1548], stats[6])`` for ``values``, computed in torch on their own device.

    ``stats`` holds min, max, num, sum, sum of squares (over the finite
    values) and the number of non-finite values left out. Values beyond
    ±1e20 fall outside TensorBoard's edges: like numpy, they are not
    counted in a bucket but are in the stats.

    On an accelerator the buckets come from the closed form without a host
    sync (call it on the training thread: it only queues kernels). On the
    CPU looptrack runs this on the writer thread, where numpy's
    single-threaded histogram over the same edges is both faster than the
    closed form's many passes and keeps off the training thread's OpenMP
    threads.
    """
    if values.device.type == "cpu":
        return _bucket_counts_cpu(values)
    return _bucket_counts_closed_form(values)


def _numpy_values(values: torch.Tensor) -> np.ndarray:
    """The values as a flat float32/float64 numpy array, converted in numpy (no torch op on this thread)."""
    flat = values.detach().reshape(-1)
    if flat.dtype == torch.bfloat16:  # numpy has no bfloat16: its bits are the top half of a float32's
        return (flat.view(torch.int16).numpy().astype(np.int32) << 16).view(np.float32)
    v = flat.numpy()
    return v if v.dtype in (np.float32, np.float64) else v.astype(np.float32 if v.dtype == np.float16 else np.float64)


def _bucket_counts_cpu(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # numpy, single-threaded: torch ops here would start a second OpenMP team on a writer thread and
    # spin against the training thread's (measured: 2x slower steps on 2 cores). float32 stays float32
    # (every float32 is exactly a float64, so the buckets are SummaryWriter's; sorting it is 1.7x faster).
    v = _numpy_values(values)
    finite = np.isfinite(v)
    if not finite.all():
        v = v[finite]
    counts = np.histogram(v, bins=TENSORFLOW_EDGES)[0]  # exactly SummaryWriter's own binning
    low, high = (float(v.min()), float(v.max())) if v.size else (math.inf, -math.inf)
    # np.square().sum(), not v.dot(v): dot goes to BLAS, whose own thread pool spins against torch's
    stats = np.array(
        [low, high, v.size, v.sum(dtype=np.float64), np.square(v, dtype=np.float64).sum(), values.numel() - v.size],
        dtype=np.float64,
    )
    return torch.from_numpy(counts.astype(np.int64)), torch.from_numpy(stats)


def _bucket_counts_closed_form(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v = values.detach().reshape(-1)
    if not v.is_floating_point():
        v = v.double()
    elif v.dtype in (torch.float16, torch.bfloat16):
        v = v.float()  # exact
    edges = _positive_edges(v.device)
    finite = torch.isfinite(v)
    a = v.abs().nan_to_num_(0.0, 0.0, 0.0)
    # closed form, then one step of fix-up against the exact edges: edges[j] <= a < edges[j+1]
    guess = a.clamp(min=_POSITIVE[0]).log_().sub_(_LOG_FIRST).mul_(_INV_LOG_STEP).floor_()
    guess = guess.clamp_(0, N_POSITIVE - 1).long()
    j = guess - (a < edges.index_select(0, guess)).long()
    j += a >= edges.index_select(0, guess.add_(1))  # j: -1 .. N_POSITIVE-1
    on_edge = a == edges.index_select(0, j.clamp(min=0))
    on_edge &= j >= 0
    last = N_POSITIVE - 1
    # v >= 0: [0, e0) -> zero bin; [e_j, e_j+1) -> zero bin + 1 + j; the last edge closes the last bin
    positive_bin = torch.where(j < 0, _ZERO_BIN, j + (_ZERO_BIN + 1))
    positive_bin[(j == last) & on_edge] = N_BINS - 1
    # v < 0: bins are [-e_j+1, -e_j), i.e. right-closed in |v|
    j -= on_edge.long()
    negative_bin = torch.where(j < 0, _ZERO_BIN - 1, (_ZERO_BIN - 2) - j)
    bins = torch.where(v >= 0, positive_bin, negative_bin)
    bins[~finite | (bins < 0) | (bins >= N_BINS)] = N_BINS  # not counted
    counts = count_slots(bins, N_BINS + 1)[:N_BINS]
    stats_dtype = edges.dtype
    finite_v = torch.where(finite, v, 0).to(stats_dtype)
    num = finite.sum().to(stats_dtype)
    empty = v.numel() == 0
    stats = torch.stack(
        [
            finite_v.new_tensor(math.inf) if empty else torch.where(finite, v, math.inf).min().to(stats_dtype),
            finite_v.new_tensor(-math.inf) if empty else torch.where(finite, v, -math.inf).max().to(stats_dtype),
            num,
            finite_v.sum(),
            finite_v.square().sum(),
            v.numel() - num,
        ]
    )
    return counts, stats


def merge_buckets(counts: np.ndarray, edges: np.ndarray, max_bins: int | None) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_bins`` buckets, neighbours summed in groups, exactly as ``SummaryWriter``'s ``max_bins`` does.

    >>> merge_buckets(np.array([1, 2, 3, 4, 5]), np.arange(6.0), 2)
    (array([3, 7, 5]), array([0., 2., 4., 5.]))
    """
    num_bins = len(counts)
    if max_bins is None or num_bins <= max_bins:
        return counts, edges
    group = num_bins // max_bins
    if num_bins % group:
        counts = np.pad(counts, (0, group - num_bins % group))
    counts = counts.reshape(-1, group).sum(axis=-1)
    merged = np.empty(counts.size + 1, dtype=np.asarray(edges).dtype)
    merged[:-1] = edges[:-1:group]
    merged[-1] = edges[-1]
    return counts, merged


def tensorboard_buckets(counts: np.ndarray, edges: np.ndarray | None = None) -> tuple[list[float], list[float]] | None:
    """Trim counts to their support exactly as ``make_histogram`` does; None when all are empty.

    ``edges`` defaults to TensorBoard's. Returns ``(bucket_limits,
    bucket_counts)`` for ``add_histogram_raw``.
    """
    counts = np.asarray(counts)
    edges = TENSORFLOW_EDGES if edges is None else np.asarray(edges, dtype=np.float64)
    cum_counts = np.cumsum(np.greater(counts, 0))
    if cum_counts[-1] == 0:
        return None
    start, end = np.searchsorted(cum_counts, [0, cum_counts[-1] - 1], side="right")
    start, end = int(start), int(end) + 1
    kept = counts[start - 1 : end] if start > 0 else np.concatenate([[0], counts[:end]])
    limits = edges[start : end + 1]
    return limits.tolist(), kept.astype(np.float64).tolist()
