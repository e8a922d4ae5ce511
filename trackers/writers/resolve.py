"""What ``Tracker(writer=...)`` accepts, turned into one :class:`~trackers.writers.front.Writer`.

A sink name (``"tensorboard"``, ``"memory"``, ``"jsonl"``, ``"csv"``, ``"mlflow"`` or one registered), a log
dir (a string with a ``/`` in it, a path object, or ``"<sink>:<dir>"`` such as ``"jsonl:runs/x"``), a Sink, a
Writer, or a list of these (one writer with all their sinks).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

from trackers import registry
from trackers.writers.front import Writer
from trackers.writers.sink import Sink

WriterSpec = Union[Writer, Sink, str, "os.PathLike[str]", None, Sequence[Union[Writer, Sink, str, "os.PathLike[str]"]]]


def resolve_writer(
    spec: WriterSpec, *, rank_zero: bool = True, sink_options: Mapping[str, Any] | None = None, **front_options: Any
) -> Writer:
    """The writer ``spec`` names; ``sink_options`` go to sinks built here from a name or a path.

    ``rank_zero=False`` (a distributed rank that does not write) gives a writer with no sinks and closes any
    writer or sink given as an instance.

    >>> resolve_writer("memory").describe()
    'MemorySink'
    >>> resolve_writer("mlfow")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    trackers.registry.UnknownName: unknown sink 'mlfow'; did you mean 'mlflow'? ... or the form 'tensorboard:mlfow'
    """
    if isinstance(spec, Writer):
        if not rank_zero:
            spec.close()
            return Writer([], **front_options)
        return spec
    items: list[Any] = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise ValueError("writer=[] names no sink; leave writer out for TensorBoard in runs/, or name one")
    if not rank_zero:
        for item in items:
            if isinstance(item, (Writer, Sink)):
                item.close()
        return Writer([], **front_options)
    sinks: list[Sink] = []
    for item in items:
        if isinstance(item, Writer):
            sinks.extend(item.release_sinks())
        else:
            sinks.append(resolve_sink(item, **(sink_options or {})))
    return Writer(sinks, **front_options)


def resolve_sink(spec: Sink | str | os.PathLike[str] | None, **options: Any) -> Sink:
    """One sink from a Sink, a sink name, a log dir or ``None`` (TensorBoard in ``runs/<datetime>_<host>``)."""
    if isinstance(spec, Sink):
        return spec
    if spec is None:
        return _build("tensorboard", options)
    if isinstance(spec, os.PathLike):
        return _build("tensorboard", {"log_dir": os.fspath(spec), **options})
    if not isinstance(spec, str):
        raise TypeError(
            f"writer must be a sink name ({', '.join(registry.known_names(registry.SINK_GROUP))}), a log "
            f"dir, a Sink or a Writer; got {spec!r} of type {type(spec).__name__}"
        )
    name, colon, log_dir = spec.partition(":")
    if colon and name in registry.known_names(registry.SINK_GROUP):
        return _build(name, {"log_dir": log_dir, **options})
    if "/" in spec or os.sep in spec or spec.startswith((".", "~")):
        return _build("tensorboard", {"log_dir": os.path.expanduser(spec), **options})
    try:
        return _build(spec, options)
    except registry.UnknownName as error:
        raise registry.UnknownName(
            f"{error}; a log dir needs a '/' in it ('runs/{spec}', './{spec}') or the form 'tensorboard:{spec}'"
        ) from None


def _build(name: str, options: Mapping[str, Any]) -> Sink:
    sink = registry.get(registry.SINK_GROUP, name)(**options)
    if not isinstance(sink, Sink):
        raise TypeError(f"the sink registered as {name!r} built {sink!r}, which is not a trackers.writers.Sink")
    return sink
