"""Reusable host buffers for copies handed to the writer thread.

Copying 47 MB of parameters into freshly allocated memory costs ~80 ms here,
most of it the kernel faulting in and zeroing new pages; copying into a buffer
that was used before costs ~4 ms. The pool keeps the returned buffers of each
(shape, dtype), as many as were in use at once (resnet18 has 8 tensors of
64x64x3x3), for the next logging step, up to a total size.
"""

from __future__ import annotations

import threading

import torch

_MAX_POOLED_BYTES = 1 << 30


class BufferPool:
    """``copy(t)`` gives a CPU copy of ``t`` in a reused buffer; ``give_back(buffer)`` returns it."""

    def __init__(self, max_bytes: int = _MAX_POOLED_BYTES) -> None:
        self._free: dict[tuple[tuple[int, ...], torch.dtype], list[torch.Tensor]] = {}
        self._bytes = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def copy(self, tensor: torch.Tensor) -> torch.Tensor:
        key = (tuple(tensor.shape), tensor.dtype)
        with self._lock:
            free = self._free.get(key)
            buffer = free.pop() if free else None
            if buffer is not None:
                self._bytes -= buffer.nbytes
        if buffer is None:
            buffer = torch.empty(key[0], dtype=tensor.dtype)
        return buffer.copy_(tensor.detach())

    def give_back(self, buffer: torch.Tensor) -> None:
        key = (tuple(buffer.shape), buffer.dtype)
        with self._lock:
            if self._bytes + buffer.nbytes <= self._max_bytes:
                self._free.setdefault(key, []).append(buffer)
                self._bytes += buffer.nbytes

    @property
    def pooled_bytes(self) -> int:
        return self._bytes


POOL = BufferPool()
