"""The writer thread and its queue: takes records off the training thread and writes them.

The hand-over is a ``collections.deque`` (append and popleft are atomic in
CPython), so the training thread never takes a lock that a signal handler
running on the same thread could be waiting for. The thread polls a few
times a second and is woken at once by :meth:`RecordQueue.flush`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

_POLL_SECONDS = 0.05
_NICENESS = 10
WHEN_FULL = ("block", "drop_oldest")
DEFAULT_MAX_PENDING = 10_000
DEFAULT_MAX_PENDING_BYTES = 256 * 1024 * 1024


def _lower_priority() -> None:
    """Let the training thread's compute threads win the CPU: the writer thread works in their gaps.

    On Linux ``setpriority`` with a thread id nices just that thread.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICENESS)
    except (AttributeError, OSError):  # other platforms, or not permitted
        pass


class _Barrier:
    """Put in the queue by ``flush``/``close``; set once everything before it is written."""

    __slots__ = ("done", "stop", "close_backend")

    def __init__(self, stop: bool = False, close_backend: bool = True) -> None:
        self.done = threading.Event()
        self.stop = stop
        self.close_backend = close_backend


def check_options(
    name: str, flush_secs: float, max_pending: int, when_full: str, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
) -> None:
    """Raise at once, naming ``name``, when a queue option is out of range."""
    if flush_secs <= 0:
        raise ValueError(f"{name}: flush_secs must be > 0, got {flush_secs!r}")
    if max_pending < 1:
        raise ValueError(f"{name}: max_pending must be >= 1, got {max_pending!r}")
    if max_pending_bytes < 1:
        raise ValueError(f"{name}: max_pending_bytes must be >= 1, got {max_pending_bytes!r}")
    if when_full not in WHEN_FULL:
        raise ValueError(f"{name}: when_full must be one of {', '.join(WHEN_FULL)}, got {when_full!r}")


class RecordQueue:
    """A queue drained by one daemon thread, bounded in records (``max_pending``) and in the bytes of host
    memory they hold (``max_pending_bytes``; one record larger than that still goes through, alone).

    ``handle(record)`` writes one record, ``flush()`` makes what was written
    durable, ``close()`` releases the backend; all three run on the thread.
    Errors they raise go to ``on_error(error, record_or_None)``; the thread
    itself never dies of them.
    """

    def __init__(
        self,
        handle: Callable[[Any], None],
        flush: Callable[[], None],
        close: Callable[[], None],
        on_error: Callable[[BaseException, Any], None],
        *,
        name: str,
        flush_secs: float = 2.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        when_full: str = "block",
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        on_drop: Callable[[Any], None] | None = None,
    ) -> None:
        check_options(name, flush_secs, max_pending, when_full, max_pending_bytes)
        self._on_drop = on_drop  # called (on the putting thread) with each record dropped unwritten
        self.when_full = when_full
        self.dropped = 0
        self.dropped_bytes = 0
        self.waits = 0  # times the training thread waited for room (when_full="block")
        self.waited_seconds = 0.0
        self._handle = handle
        self._flush = flush
        self._close = close
        self._on_error = on_error
        self._flush_secs = flush_secs
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        # bytes held by waiting records: added on the putting thread, removed on the writer thread, each
        # counter written by one thread only, so no lock (a signal handler may log on the training thread)
        self._bytes_in = 0
        self._bytes_out = 0
        self._pending: deque[Any] = deque()
        self._wake = threading.Event()
        self._closed = False
        self.written = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- training thread -------------------------------------------------
    def put(self, record: Any, nbytes: int = 0) -> bool:
        """Hand over a record holding ``nbytes`` of host memory. When the queue is full (``max_pending``
        records or ``max_pending_bytes``), ``when_full="block"`` waits for room and ``"drop_oldest"`` drops
        the oldest waiting records; returns False when any was dropped."""
        kept_all = True
        if self._full(nbytes):
            if self.when_full == "block":
                self._wait_for_room(nbytes)
            else:
                while self._full(nbytes) and self._drop_oldest():
                    kept_all = False
        self._bytes_in += nbytes
        self._pending.append((record, nbytes))
        return kept_all

    def _full(self, nbytes: int) -> bool:
        pending = len(self._pending)
        if pending >= self._max_pending:
            return True
        return pending > 0 and self.pending_bytes + nbytes > self._max_pending_bytes

    def _drop_oldest(self) -> bool:
        """Drop the oldest waiting record; False when there is none to drop."""
        try:
            oldest = self._pending.popleft()
        except IndexError:  # the writer thread just emptied it
            return False
        if isinstance(oldest, _Barrier):  # never drop a flush: someone waits for it
            self._pending.appendleft(oldest)
            return False
        self.dropped += 1
        self.dropped_bytes += oldest[1]
        self._bytes_in -= oldest[1]
        if self._on_drop is not None:
            self._on_drop(oldest[0])
        return True

    def flush(self, timeout: float | None = None, *, wake: bool = True) -> bool:
        """Return once everything put before this call is written and flushed.

        Returns False if ``timeout`` passed first or the thread is gone.
        ``wake=False`` is for signal handlers: it only polls.
        """
        return self._barrier(_Barrier(), timeout, wake)

    def close(self, timeout: float | None = None, *, close_backend: bool = True) -> bool:
        """Write everything, flush, close the sinks (unless ``close_backend=False``), stop the thread; idempotent."""
        if self._closed:
            return True
        self._closed = True
        done = self._barrier(_Barrier(stop=True, close_backend=close_backend), timeout, True)
        if done:
            self._thread.join(timeout)
        return done

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Host memory held by the records waiting (or being written)."""
        return self._bytes_in - self._bytes_out

    @property
    def max_pending(self) -> int:
        return self._max_pending

    @property
    def max_pending_bytes(self) -> int:
        return self._max_pending_bytes

    @property
    def flush_secs(self) -> float:
        return self._flush_secs

    def _barrier(self, barrier: _Barrier, timeout: float | None, wake: bool) -> bool:
        if not self._thread.is_alive():
            return False
        self._pending.append(barrier)
        if wake:
            self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not barrier.done.wait(0.1):
            if not self._thread.is_alive():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def _wait_for_room(self, nbytes: int) -> None:
        self._wake.set()
        self.waits += 1
        start = time.perf_counter()
        while self._full(nbytes) and self._thread.is_alive():
            time.sleep(0.001)
        self.waited_seconds += time.perf_counter() - start

    # --- writer thread ---------------------------------------------------
    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as error:  # reported, never fatal to the thread
            self._on_error(error, args[0] if args else None)

    def _run(self) -> None:
        _lower_priority()
        pending = self._pending
        next_flush = time.monotonic() + self._flush_secs
        dirty = False
        while True:
            while pending:
                item = pending.popleft()
                if isinstance(item, _Barrier):
                    self._call(self._flush)
                    dirty = False
                    if item.stop:
                        if item.close_backend:
                            self._call(self._close)
                        item.done.set()
                        return
                    item.done.set()
                else:
                    record, nbytes = item
                    self._call(self._handle, record)
                    self._bytes_out += nbytes  # the record's memory is free (or back in the pool) now
                    self.written += 1
                    dirty = True
            now = time.monotonic()
            if now >= next_flush:
                if dirty:
                    self._call(self._flush)
                    dirty = False
                next_flush = now + self._flush_secs
            self._wake.wait(min(_POLL_SECONDS, max(next_flush - now, 0.0)))
            self._wake.clear()
