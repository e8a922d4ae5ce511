"""Tensors on their way to the writer thread: snapshots taken on the training thread without waiting for the
device, work deferred to the writer thread, and the one place a device is read back (:func:`materialize`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trackers.writers.buffers import POOL


@dataclass(frozen=True)
class DeviceSnapshot:
    """A copy of a device tensor on its way to host memory, with the event that says it arrived."""

    tensor: torch.Tensor
    ready: Any = None  # a torch.cuda.Event, or None when the copy is already usable

    def wait(self) -> torch.Tensor:
        if self.ready is not None:
            self.ready.synchronize()
        return self.tensor.cpu()


class HostCopy:
    """A pooled host copy of a CPU tensor or NumPy array, taken at the call; given back once every sink wrote it."""

    __slots__ = ("buffer",)

    def __init__(self, buffer: torch.Tensor | np.ndarray) -> None:
        self.buffer = buffer

    def release(self) -> None:
        """Give the buffer back to the pool (no one may read it afterwards)."""
        POOL.give_back(self.buffer)


class Deferred:
    """A value computed on the writer thread, once (the result is kept).

    Built with :meth:`on_device`: work on CPU tensors is deferred to the
    writer thread (from copies), work on an accelerator is queued at once
    (kernels only, no sync) and just its small result travels.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, pooled: bool = False) -> None:
        self._fn = fn
        self._args = args
        self._done = False
        self._value: Any = None
        self._pooled = pooled  # args are POOL buffers, given back once used
        self._lock = threading.Lock()  # several writers (fan-out) may ask at once
        self.nbytes = sum(nbytes(a) for a in args)  # host memory held until the writer thread computes it

    @classmethod
    def on_device(cls, fn: Callable[..., Any], *args: Any) -> Deferred:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if all(t.device.type == "cpu" for t in tensors):
            return cls(fn, *(POOL.copy(a) if isinstance(a, torch.Tensor) else a for a in args), pooled=True)
        return cls(_identity, _map_tensors(fn(*args), snapshot))

    @classmethod
    def later(cls, fn: Callable[..., Any], *args: Any) -> Deferred:
        """``fn(*args)`` on the writer thread, from snapshots of the tensor arguments taken now."""
        return cls(fn, *(snapshot(a) for a in args))

    def part(self, index: Any) -> Deferred:
        """A deferred ``self()[index]``."""
        part = Deferred(lambda: self()[index])
        part.nbytes = 0  # the memory is counted once, with the whole
        return part

    def __call__(self) -> Any:
        with self._lock:
            return self._compute()

    def release(self) -> None:
        """Never computed after all (its record was dropped): give its pooled copies back."""
        with self._lock:
            if not self._done and self._pooled:
                for arg in self._args:
                    if isinstance(arg, torch.Tensor):
                        POOL.give_back(arg)
                self._args = ()
                self._pooled = False

    def _compute(self) -> Any:
        if not self._done:
            args = [materialize(a) for a in self._args]
            self._value = _map_tensors(self._fn(*args), materialize)
            self._done = True
            if self._pooled:  # give the copies back, but never one the result still is or views
                kept = {t.untyped_storage().data_ptr() for t in _tensors_in(self._value)}
                for arg in self._args:
                    if isinstance(arg, torch.Tensor) and arg.untyped_storage().data_ptr() not in kept:
                        POOL.give_back(arg)
            self._args = ()
        return self._value


def _tensors_in(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors_in(v)]
    return []


def _identity(value: Any) -> Any:
    return value


def _map_tensors(value: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    return fn(value)


# Copies smaller than this are plain clones: pooling only pays where fresh pages cost (large buffers).
POOLED_MIN_BYTES = 64 * 1024


def snapshot(value: Any) -> Any:
    """Freeze ``value`` for the writer thread without waiting for the device.

    CUDA tensors start an asynchronous copy to host memory and record an event;
    CPU tensors and NumPy arrays are copied now (large ones into pooled
    buffers, :class:`HostCopy`), so changing them after the call changes
    nothing logged; anything else is returned as it is.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.nbytes < POOLED_MIN_BYTES:
            return value.copy()
        return HostCopy(POOL.copy_array(value))
    if not isinstance(value, torch.Tensor):
        return value  # numbers, strings, Deferred
    value = value.detach()
    if value.device.type == "cpu":
        if value.numel() * value.element_size() < POOLED_MIN_BYTES or value.is_sparse or value.is_quantized:
            return value.clone()
        return HostCopy(POOL.copy(value))
    if value.device.type == "cuda":
        host = value.to("cpu", non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return DeviceSnapshot(host, event)
    return DeviceSnapshot(value.clone())


def materialize(value: Any) -> Any:
    """The CPU form of a snapshot (runs on the writer thread; may wait for the device)."""
    if isinstance(value, HostCopy):
        return value.buffer
    if isinstance(value, DeviceSnapshot):
        return value.wait()
    if isinstance(value, Deferred):
        return value()
    return value


def nbytes(value: Any) -> int:
    """The host memory a snapshot holds until the writer thread is done with it (0 for small plain values)."""
    if isinstance(value, HostCopy):
        value = value.buffer
    elif isinstance(value, DeviceSnapshot):
        value = value.tensor
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (np.ndarray, Deferred)):
        return int(value.nbytes)
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return 0


def release_unwritten(values: Any) -> None:
    """Give back the pooled copies among ``values`` (a record's fields) that no sink saw: its record was dropped."""
    for value in values:
        items = value if isinstance(value, (list, tuple)) else value.values() if isinstance(value, dict) else [value]
        for item in items:
            if isinstance(item, (HostCopy, Deferred)):
                item.release()


def host_copies(values: Any) -> Iterator[HostCopy]:
    """The :class:`HostCopy` objects among ``values`` (one level into lists, tuples and dicts)."""
    for value in values:
        if isinstance(value, HostCopy):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, HostCopy))
        elif isinstance(value, dict):
            yield from (v for v in value.values() if isinstance(v, HostCopy))


def to_float(value: Any) -> float:
    value = materialize(value)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a scalar needs one value, got a tensor of shape {tuple(value.shape)}")
        return float(value.reshape(()).item())
    return float(value)
