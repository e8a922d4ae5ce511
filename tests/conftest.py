"""Shared test helpers: a tiny model and loop, and TensorBoard's own reader."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# --doctest-modules imports every .py here: a script that runs on import is only started by its test
collect_ignore = ["lightning_ddp_script.py"]

ROOT = Path(__file__).resolve().parents[1]


def load_run(log_dir: str | os.PathLike[str]) -> EventAccumulator:
    """Read a run directory back with TensorBoard's EventAccumulator, keeping every event."""
    accumulator = EventAccumulator(
        str(log_dir),
        size_guidance={
            "scalars": 0,
            "histograms": 0,
            "images": 0,
            "tensors": 0,
            "compressedHistograms": 0,
            "audio": 0,
        },
    )
    accumulator.Reload()
    return accumulator


def scalar_series(log_dir: str | os.PathLike[str], tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in load_run(log_dir).Scalars(tag)]


class TinyNet(torch.nn.Module):
    def __init__(self, n_in: int = 8, n_classes: int = 3) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(n_in, 16)
        self.fc2 = torch.nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def make_batches(n: int, batch_size: int = 8, n_in: int = 8, n_classes: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch_size, n_in, generator=generator),
            torch.randint(0, n_classes, (batch_size,), generator=generator),
        )
        for _ in range(n)
    ]


@pytest.fixture
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes that import the checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable
