"""The end of the process: nothing logged is lost at exit or on SIGTERM/SIGINT.

Live trackers and writers are remembered (weakly). At interpreter exit every
tracker still open is closed (its end-of-run callbacks run) and every writer
flushed and closed. On SIGTERM or SIGINT the writers are flushed first; then
the signal does what it would have done: SIGINT raises ``KeyboardInterrupt``
as usual (the ``with tracker:`` block then closes the run), a signal whose
action was the default closes open trackers and re-delivers itself so the
process still dies by it.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import weakref
from typing import Any

_writers: weakref.WeakSet[Any] = weakref.WeakSet()
_trackers: weakref.WeakSet[Any] = weakref.WeakSet()
_previous_handlers: dict[int, Any] = {}
_installed = False
_lock = threading.Lock()
_SIGNAL_FLUSH_TIMEOUT = 10.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def register_writer(writer: Any) -> None:
    _writers.add(writer)
    _install()


def unregister_writer(writer: Any) -> None:
    _writers.discard(writer)


def register_tracker(tracker: Any) -> None:
    _trackers.add(tracker)
    _install()


def unregister_tracker(tracker: Any) -> None:
    _trackers.discard(tracker)


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    atexit.register(_close_everything)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    for signum in HANDLED_SIGNALS:
        try:
            _previous_handlers[signum] = signal.signal(signum, _on_signal)
        except (ValueError, OSError):  # embedded interpreters, unusual platforms
            pass


def _close_everything() -> None:
    for tracker in list(_trackers):
        try:
            tracker.close()
        except Exception:  # at exit there is no one left to raise to
            pass
    for writer in list(_writers):
        try:
            writer.close(timeout=_SIGNAL_FLUSH_TIMEOUT)
        except Exception:
            pass


def _flush_writers() -> None:
    for writer in list(_writers):
        writer.drain(_SIGNAL_FLUSH_TIMEOUT)


def _on_signal(signum: int, frame: Any) -> None:
    _flush_writers()
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # The default action ends the process: end the runs first, then die by the signal.
    _close_everything()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
