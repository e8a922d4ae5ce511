"""One run per distributed job: who is rank zero, and the collectives callbacks need.

Under ``torch.distributed`` (plain DDP, torchrun, Lightning's strategies) every
rank runs the same callbacks, so collectives line up, but only rank zero
writes; the other ranks get a :class:`~trackers.writers.Writer` with no sinks.
Before the process group exists (a Tracker is often built before
``trainer.fit``), the launcher's environment variables tell the rank.
"""

from __future__ import annotations

import os

import torch

_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if initialized() else 1


def is_rank_zero() -> bool:
    """Whether this process should write: rank 0 of the group, or no rank variable saying otherwise."""
    if initialized():
        return torch.distributed.get_rank() == 0
    return all(os.environ.get(name, "0") in ("", "0") for name in _RANK_VARIABLES)


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over all ranks (one all-reduce; ``value`` itself unchanged)."""
    if world_size() == 1:
        return value
    total = value.detach().clone()
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total / world_size()


def sum_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` over all ranks, in place (one all-reduce)."""
    if world_size() > 1:
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
    return value
