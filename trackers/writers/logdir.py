"""Where a run goes: SummaryWriter's default name, and an early, clear error when it can't go there."""

from __future__ import annotations

import os
import socket
import tempfile
from datetime import datetime


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


def file_in_log_dir(path: str | os.PathLike[str] | None, log_dir: str | os.PathLike[str] | None,
                    default_name: str, owner: str) -> tuple[str, str]:
    """``(file path, its writable directory)`` for file backends given ``path=`` or ``log_dir=``."""
    if path is None and log_dir is None:
        raise ValueError(f"{owner} needs path='runs/x/{default_name}' or log_dir='runs/x'")
    path = os.fspath(path) if path is not None else os.path.join(os.fspath(log_dir), default_name)
    return path, ensure_writable_dir(os.path.dirname(os.path.abspath(path)))


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
