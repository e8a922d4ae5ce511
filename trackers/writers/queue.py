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


def check_options(name: str, flush_secs: float, max_pending: int, when_full: str) -> None:
    """Raise at once, naming ``name``, when a queue option is out of range."""
    if flush_secs <= 0:
        raise ValueError(f"{name}: flush_secs must be > 0, got {flush_secs!r}")
    if max_pending < 1:
        raise ValueError(f"{name}: max_pending must be >= 1, got {max_pending!r}")
    if when_full not in WHEN_FULL:
        raise ValueError(f"{name}: when_full must be one of {', '.join(WHEN_FULL)}, got {when_full!r}")


class RecordQueue:
    """A bounded queue drained by one daemon thread.

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
        max_pending: int = 10_000,
        when_full: str = "block",
    ) -> None:
        check_options(name, flush_secs, max_pending, when_full)
        self.when_full = when_full
        self.dropped = 0
        self._handle = handle
        self._flush = flush
        self._close = close
        self._on_error = on_error
        self._flush_secs = flush_secs
        self._max_pending = max_pending
        self._pending: deque[Any] = deque()
        self._wake = threading.Event()
        self._closed = False
        self.written = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- training thread -------------------------------------------------
    def put(self, record: Any) -> bool:
        """Hand a record over. When ``max_pending`` records wait, ``when_full="block"`` waits for room
        and ``"drop_oldest"`` drops the oldest waiting record; returns False when one was dropped."""
        kept_all = True
        if len(self._pending) >= self._max_pending:
            if self.when_full == "block":
                self._wait_for_room()
            else:
                kept_all = self._drop_oldest()
        self._pending.append(record)
        return kept_all

    def _drop_oldest(self) -> bool:
        try:
            oldest = self._pending.popleft()
        except IndexError:  # the writer thread just emptied it
            return True
        if isinstance(oldest, _Barrier):  # never drop a flush: someone waits for it
            self._pending.appendleft(oldest)
            return True
        self.dropped += 1
        return False

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
    def max_pending(self) -> int:
        return self._max_pending

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

    def _wait_for_room(self) -> None:
        self._wake.set()
        while len(self._pending) >= self._max_pending and self._thread.is_alive():
            time.sleep(0.001)

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
                    self._call(self._handle, item)
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
