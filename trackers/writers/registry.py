"""Writers by name: ``writer="tensorboard"``, ``"memory"``, a log dir, or an instance."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from trackers.writers.base import Writer

_BACKENDS: dict[str, Callable[..., Writer]] = {}


def register_writer_backend(name: str, factory: Callable[..., Writer]) -> None:
    """Make ``factory`` selectable as ``writer=name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a writer backend needs a non-empty string name, got {name!r}")
    _BACKENDS[name] = factory


def writer_backends() -> list[str]:
    return sorted(_BACKENDS)


def resolve_writer(spec: Writer | str | os.PathLike[str] | None, **options: Any) -> Writer:
    """Turn what the user passed as ``writer=`` into a :class:`Writer`.

    ``None``: TensorBoard in ``runs/<datetime>_<host>``; a registered name
    (``"tensorboard"``, ``"memory"``): that backend with its defaults; any
    other string or path: TensorBoard in that directory; a ``Writer``: used
    as given; a list of any of these: all of them (:class:`MultiWriter`). ``rank_zero=False`` (a non-zero distributed rank) gives a
    :class:`~trackers.writers.null.NullWriter` for anything but an instance.
    """
    if isinstance(spec, Writer):
        return spec
    if isinstance(spec, (list, tuple)):
        from trackers.writers.multi import MultiWriter

        if not options.get("rank_zero", True):
            for given in spec:
                if isinstance(given, Writer):
                    given.close()
            return resolve_writer(None, **options)
        return MultiWriter([resolve_writer(item, **options) for item in spec])
    if not options.pop("rank_zero", True):
        from trackers.writers.null import NullWriter

        return NullWriter()
    if spec is None:
        return _BACKENDS["tensorboard"](**options)
    if isinstance(spec, str) and spec in _BACKENDS:
        return _BACKENDS[spec](**options)
    if isinstance(spec, (str, os.PathLike)):
        return _BACKENDS["tensorboard"](spec, **options)
    names = ", ".join(writer_backends())
    raise TypeError(
        f"writer must be a Writer, a backend name ({names}) or a log dir path; "
        f"got {spec!r} of type {type(spec).__name__}"
    )


def _register_builtins() -> None:
    from trackers.writers.csv_writer import CsvWriter
    from trackers.writers.jsonl import JsonlWriter
    from trackers.writers.memory import MemoryWriter
    from trackers.writers.tensorboard import TensorBoardWriter

    register_writer_backend("tensorboard", TensorBoardWriter)
    register_writer_backend("memory", MemoryWriter)
    register_writer_backend("jsonl", JsonlWriter)
    register_writer_backend("csv", CsvWriter)
    register_writer_backend("mlflow", _mlflow_writer)


def _mlflow_writer(*args: Any, **kwargs: Any) -> Writer:
    from trackers.writers.mlflow_writer import MlflowWriter  # imports mlflow only when asked for

    return MlflowWriter(*args, **kwargs)


_register_builtins()
