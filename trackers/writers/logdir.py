"""Where a run goes: SummaryWriter's default name, a fresh directory instead of mixing two runs in one, and an
early, clear error when it can't go there."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from trackers.errors import LooptrackWarning

IfExists = Literal["new", "append"]
IF_EXISTS: tuple[IfExists, ...] = ("new", "append")


class LogDirError(OSError):
    """The log directory can't be created or written; the message names the path and the fix."""


def default_log_dir(comment: str = "", root: str = "runs") -> str:
    """``runs/<Mon DD_HH-MM-SS>_<host><comment>``, SummaryWriter's convention."""
    stamp = datetime.now().strftime("%b%d_%H-%M-%S")
    return os.path.join(root, f"{stamp}_{socket.gethostname()}{comment}")


def ensure_writable_dir(path: str | os.PathLike[str]) -> str:
    """Create ``path`` if needed and prove a file can be written in it; return it as a string."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".looptrack-probe-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise LogDirError(
            f"cannot write the log dir {path!r}: {reason}. "
            f"Pass a directory you can write, e.g. Tracker(model, writer='runs/my_experiment')"
        ) from error
    return path


def holds_events(log_dir: str) -> bool:
    """Whether ``log_dir`` directly holds TensorBoard event files, i.e. is a run TensorBoard would show."""
    try:
        return any(name.startswith("events.out.tfevents.") for name in os.listdir(log_dir))
    except OSError:  # missing, or not a directory
        return False


def free_run_dir(log_dir: str | os.PathLike[str], holds_run: Callable[[str], bool]) -> str:
    """``log_dir`` if it holds no run, else the first of ``<log_dir>_2``, ``<log_dir>_3``, ... that holds none.

    >>> free_run_dir("runs/exp1", lambda d: d in ("runs/exp1", "runs/exp1_2"))
    'runs/exp1_3'
    """
    log_dir = os.fspath(log_dir)
    if not holds_run(log_dir):
        return log_dir
    stem = os.path.normpath(log_dir)
    n = 2
    while holds_run(candidate := f"{stem}_{n}"):
        n += 1
    return candidate


def run_dir(
    log_dir: str | os.PathLike[str],
    holds_run: Callable[[str], bool],
    *,
    if_exists: IfExists,
    add_anyway: str,
    resume: str = "",
) -> str:
    """The writable directory a new run goes to: ``log_dir``, or with ``if_exists="new"`` (the default of every
    backend) a fresh one beside it when ``log_dir`` already holds a run, said once as a :class:`LooptrackWarning`.

    ``add_anyway`` is the call that appends to the old run instead, ``resume`` (if the backend can) the one
    that continues it; the warning names both and points at the user's line.
    """
    if if_exists not in IF_EXISTS:
        raise ValueError(f"if_exists must be one of {', '.join(map(repr, IF_EXISTS))}, got {if_exists!r}")
    log_dir = os.fspath(log_dir)
    chosen = log_dir if if_exists == "append" else free_run_dir(log_dir, holds_run)
    if chosen != log_dir:
        continue_it = f"to continue it from step T instead, pass {resume}; " if resume else ""
        warnings.warn(
            f"looptrack: {log_dir!r} already holds a run, so this run is written to {chosen!r} (two runs in one "
            f"directory would mix their curves); {continue_it}to add to it anyway, pass {add_anyway}",
            LooptrackWarning,
            stacklevel=_stacklevel_outside_looptrack(),
        )
    return ensure_writable_dir(chosen)


def _stacklevel_outside_looptrack() -> int:
    """``warnings.warn``'s ``stacklevel`` (for a call in our caller) of the first frame outside ``trackers``."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def file_in_log_dir(
    path: str | os.PathLike[str] | None,
    log_dir: str | os.PathLike[str] | None,
    default_name: str,
    owner: str,
    if_exists: IfExists = "new",
) -> tuple[str, str]:
    """``(file path, its writable directory)`` for file backends given ``path=`` or ``log_dir=``.

    Neither given: ``runs/<datetime>_<host>/<default_name>``, as TensorBoard's default. A directory whose file of
    that name already has something in it holds a run: see :func:`run_dir`.
    """
    if path is not None:
        path = os.fspath(path)
    else:
        path = os.path.join(os.fspath(log_dir) if log_dir is not None else default_log_dir(), default_name)
    directory, name = os.path.split(os.path.abspath(path))

    def holds_run(candidate: str) -> bool:
        file = os.path.join(candidate, name)
        return os.path.isfile(file) and os.path.getsize(file) > 0

    argument = f"log_dir={directory!r}" if name == default_name else f"{os.path.join(directory, name)!r}"
    chosen = run_dir(directory, holds_run, if_exists=if_exists, add_anyway=f"{owner}({argument}, if_exists='append')")
    return (path if chosen == directory else os.path.join(chosen, name)), chosen


def view_command(log_dir: str | os.PathLike[str]) -> str:
    """The ``tensorboard`` command to show a run: its ``runs/`` folder (to compare runs) when it is in one.

    >>> view_command("runs/fashion_mnist_experiment_1")
    'tensorboard --logdir runs'
    >>> view_command("/tmp/demo_run")
    'tensorboard --logdir /tmp/demo_run'
    """
    log_dir = os.fspath(log_dir)
    parent = os.path.dirname(os.path.normpath(log_dir))
    return f"tensorboard --logdir {parent if os.path.basename(parent) == 'runs' else log_dir}"
