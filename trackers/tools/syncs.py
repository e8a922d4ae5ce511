"""Counting host syncs: a dispatch mode that counts ``aten._local_scalar_dense``, what ``.item()`` and friends run.

>>> with SyncCounter() as counter:
...     _ = torch.ones(2).sum().item()
>>> counter.syncs
1
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class SyncCounter(TorchDispatchMode):
    """Counts host syncs in its block (on CPU too, where they cost nothing but are still counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs += 1
        return func(*args, **(kwargs or {}))
