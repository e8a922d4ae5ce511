"""Callbacks and a writer selected in a config file (YAML or TOML) or a dict, checked before anything runs.

.. code-block:: yaml

    writer: {backend: tensorboard, log_dir: runs/fashion_mnist_experiment_1}
    strict: false
    callbacks:
      - loss: {every_n_steps: 1000}
      - parameter_histograms: {every_n_steps: 500}
      - pr_curves: {classes: [T-shirt/top, Trouser, ...]}
      - graph            # no arguments

Every name is looked up in the registry (:mod:`trackers.registry`) and every
argument checked against the constructor's signature and type hints, so a
typo fails at once with the entry, the key and what was expected.

Config files are read by :mod:`trackers.core.config_file` (bounded: size,
UTF-8, YAML alias bombs); its :class:`ConfigError`, :func:`load_config` and
limits (``MAX_FILE_BYTES``, ``MAX_NODES``, ``MAX_DEPTH``, ``MAX_MESSAGE``,
``MAX_SHOWN``) are importable from here too. Every :class:`ConfigError`
message is short, whatever the input.

Dotted import paths in a config are refused unless the caller passes
``allow_imports=True``. Even then a path must name a :class:`Callback`
subclass (a :class:`~trackers.writers.sink.Sink` subclass for ``writer:
{backend: ...}``), checked before anything is called or instantiated. Resolving
the path imports its module, which runs that module's top-level code: never
load a config from an untrusted source with ``allow_imports=True``.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from trackers import registry
from trackers.core.callback import Callback

# ConfigError, load_config and the limits are re-exported (``X as X``): ``from trackers.core.config import ...`` works
from trackers.core.config_file import MAX_DEPTH as MAX_DEPTH
from trackers.core.config_file import MAX_FILE_BYTES as MAX_FILE_BYTES
from trackers.core.config_file import MAX_MESSAGE as MAX_MESSAGE
from trackers.core.config_file import MAX_NODES as MAX_NODES
from trackers.core.config_file import MAX_SHOWN as MAX_SHOWN
from trackers.core.config_file import ConfigError as ConfigError
from trackers.core.config_file import clip, show
from trackers.core.config_file import load_config as load_config
from trackers.writers.front import Writer
from trackers.writers.sink import Sink

FRONT_OPTIONS = ("flush_secs", "max_pending", "max_pending_bytes", "when_full")
TOP_LEVEL_KEYS = ("writer", "callbacks", "strict")

IMPORTABLE_BASES: dict[str, tuple[type, str]] = {
    registry.CALLBACK_GROUP: (Callback, "callbacks.Callback"),
    registry.SINK_GROUP: (Sink, "trackers.Sink"),
}
"""What an import path in a config may name, per registry group: a subclass of this class (and its public name)."""


def _label(name: Any) -> str:
    """An entry's name as messages show it in ``callbacks[0] (name)``: the string itself, cut short."""
    return clip(name, MAX_SHOWN) if isinstance(name, str) else show(name)


def _suggest(name: Any, known: Sequence[str]) -> str:
    """``registry.did_you_mean`` for string names (YAML/TOML keys may also be numbers or dates)."""
    return registry.did_you_mean(name, known) if isinstance(name, str) and len(name) <= MAX_SHOWN else ""


def _describe(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("collections.abc.", "")


def _matches(value: Any, annotation: Any) -> bool:
    """A best-effort check of a config value against a type hint (what YAML/TOML can express)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (str, bool):
        return isinstance(value, annotation)
    if origin in (list, tuple, Sequence, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(annotation)
        return not args or args[0] is Ellipsis or all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping) or annotation in (dict,):
        return isinstance(value, Mapping)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if callable(annotation) and not isinstance(annotation, type) or origin is not None:
        return True  # callables and exotic hints: the constructor checks them
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def check_arguments(cls: type, arguments: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError if ``arguments`` don't fit ``cls``'s constructor (unknown, missing or mistyped keys)."""
    constructor: Any = cls
    init = constructor.__init__
    signature = inspect.signature(init)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # unresolvable annotations: check names only
        hints = {}
    parameters = {
        n: p for n, p in signature.parameters.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    for key, value in arguments.items():
        if key not in parameters:
            if takes_any:
                continue
            accepted = clip(", ".join(parameters), MAX_SHOWN * 2) or "no arguments"
            raise ConfigError(
                f"{where}: unknown key {show(key)}{_suggest(key, list(parameters))} ({cls.__name__} takes {accepted})"
            )
        annotation = hints.get(key, parameters[key].annotation)
        if not _matches(value, annotation):
            raise ConfigError(
                f"{where}: {key!r} must be {clip(_describe(annotation), MAX_SHOWN)}, got {show(value)} "
                f"({type(value).__name__})"
            )
    for name, parameter in parameters.items():
        if parameter.default is inspect.Parameter.empty and name not in arguments and name not in ("model",):
            annotation = hints.get(name, parameter.annotation)
            raise ConfigError(f"{where}: missing required key {name!r} ({clip(_describe(annotation), MAX_SHOWN)})")


def _resolve(group: str, name: Any, where: str, allow_imports: bool) -> type:
    """The class ``name`` selects in ``group``: a registered name, or (with ``allow_imports``) a checked import path."""
    kind = registry.KINDS[group]
    if not isinstance(name, str):
        raise ConfigError(f"{where}: a {kind} name must be a string, got {show(name)}")
    cls = registry.lookup(group, name)
    if cls is not None:
        return cls
    if "." in name or ":" in name:
        if not allow_imports:
            raise ConfigError(
                f"{where}: {show(name)} looks like an import path; looptrack does not import code named in a "
                "config unless you pass allow_imports=True to Tracker.from_config (or register it by name)"
            )
        return _import_class(group, name, where)
    known = registry.known_names(group)
    raise ConfigError(
        f"{where}: unknown {kind} {show(name)}{_suggest(name, known)} "
        f"(known: {clip(', '.join(known), MAX_MESSAGE // 2)})"
    )


def _import_class(group: str, path: str, where: str) -> type:
    """The class at import path ``path``, refused unless it subclasses ``IMPORTABLE_BASES[group]``.

    The check runs before anything found is called or instantiated, so ``os.system`` or
    ``builtins.eval`` is refused, not run. Importing the module itself runs its top-level code.
    """
    if group not in IMPORTABLE_BASES:
        raise ConfigError(f"{where}: a {registry.KINDS[group]} can't be named by import path; register it by name")
    base, public_name = IMPORTABLE_BASES[group]
    try:
        found = registry.import_object(path)
    except Exception as error:  # ImportError, AttributeError, and whatever the module's top level raises
        raise ConfigError(
            f"{where}: can't import {show(path)}: {clip(f'{type(error).__name__}: {error}', MAX_SHOWN * 2)}"
        ) from error
    if not (isinstance(found, type) and issubclass(found, base)):
        if isinstance(found, type):
            what = f"the class {clip(found.__qualname__, MAX_SHOWN)}, not a {base.__name__} subclass"
        else:
            what = f"a {type(found).__name__}, not a class"
        raise ConfigError(
            f"{where}: {show(path)} is {what}; with allow_imports=True an import path must name a "
            f"{public_name} subclass{' (a sink class)' if base is Sink else ''}; nothing was called"
        )
    return found


def _entries(callbacks: Any) -> list[tuple[Any, dict[str, Any]]]:
    if callbacks is None:
        return []
    if not isinstance(callbacks, list):
        raise ConfigError(
            f"'callbacks' must be a list of entries like '- loss: {{every_n_steps: 50}}', got "
            f"{type(callbacks).__name__}"
        )
    entries: list[tuple[Any, dict[str, Any]]] = []
    for index, entry in enumerate(callbacks):
        where = f"callbacks[{index}]"
        if isinstance(entry, str):
            entries.append((entry, {}))
        elif isinstance(entry, Mapping) and len(entry) == 1:
            ((name, arguments),) = entry.items()
            if arguments is None:
                arguments = {}
            if not isinstance(arguments, Mapping):
                raise ConfigError(
                    f"{where} ({_label(name)}): arguments must be a mapping like {{every_n_steps: 50}}, "
                    f"got {show(arguments)}"
                )
            entries.append((name, dict(arguments)))
        else:
            raise ConfigError(
                f"{where}: each entry is a name or a one-key mapping {{name: {{arguments}}}}, got {show(entry)}"
            )
    return entries


def build(config: Mapping[str, Any], *, allow_imports: bool = False) -> tuple[list[Any] | None, Any, bool]:
    """``(callbacks, writer, strict)`` from a loaded config; everything is checked before anything is built.

    No ``callbacks`` key means the default set (``None``); no ``writer`` key, the default writer.
    With ``allow_imports``, an import path must name a Callback (writer: a Sink) subclass; see the module docstring.
    """
    unknown = [key for key in config if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(
            f"unknown top-level key {show(unknown[0])}{_suggest(unknown[0], TOP_LEVEL_KEYS)} "
            f"(known: {', '.join(TOP_LEVEL_KEYS)})"
        )
    strict = config.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"'strict' must be true or false, got {show(strict)}")
    planned = []
    for index, (name, arguments) in enumerate(_entries(config.get("callbacks"))):
        where = f"callbacks[{index}] ({_label(name)})"
        cls = _resolve(registry.CALLBACK_GROUP, name, where, allow_imports)
        check_arguments(cls, arguments, where)
        planned.append((cls, arguments, where))
    writer_plan = None
    writer_config = config.get("writer")
    if writer_config is not None:
        if isinstance(writer_config, str):
            writer_config = {"backend": writer_config}
        if not isinstance(writer_config, Mapping):
            raise ConfigError(
                f"'writer' must be a mapping like {{backend: tensorboard, log_dir: runs/x}}, got {show(writer_config)}"
            )
        writer_arguments = dict(writer_config)
        backend = writer_arguments.pop("backend", "tensorboard")
        front_options = {key: writer_arguments.pop(key) for key in FRONT_OPTIONS if key in writer_arguments}
        where = f"writer ({_label(backend)})"
        sink_cls = _resolve(registry.SINK_GROUP, backend, where, allow_imports)
        check_arguments(sink_cls, writer_arguments, where)
        writer_plan = (where, sink_cls, writer_arguments, front_options)
    callbacks = []
    for cls, arguments, where in planned:
        try:
            callbacks.append(cls(**arguments))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: {clip(str(error), MAX_MESSAGE // 2)}") from error
    writer = None
    if writer_plan:
        where, sink_cls, sink_arguments, front_options = writer_plan
        try:
            writer = Writer(sink_cls(**sink_arguments), **front_options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: {clip(str(error), MAX_MESSAGE // 2)}") from error
    return (callbacks if "callbacks" in config else None), writer, strict
