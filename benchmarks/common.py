"""Shared bits of the benchmark scripts: machine line, interleaved rounds, medians, tutorial step, sync counter."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"machine: {platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, python {platform.python_version()}"
    )


def interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each variant's median over :func:`paired_rounds`."""
    return {name: statistics.median(values) for name, values in paired_rounds(variants, rounds).items()}


def paired_rounds(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Every variant's result in every round (order reversed every other round), for per-round ratios
    that cancel the machine's slow drifts."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            results[name].append(variants[name]())
    return results


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
