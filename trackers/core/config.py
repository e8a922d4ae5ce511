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
typo fails at once with the entry, the key and what was expected. Dotted
import paths in a config are refused unless the caller passes
``allow_imports=True``.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trackers import registry
from trackers.writers.front import Writer

FRONT_OPTIONS = ("flush_secs", "max_pending", "when_full")


class ConfigError(ValueError):
    """The config can't be used; the message names the entry, the key and the fix."""


TOP_LEVEL_KEYS = ("writer", "callbacks", "strict")


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """The config as a dict: ``source`` is a ``.yaml``/``.yml``/``.toml`` path or a mapping."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"config file {str(path)!r}: use a .yaml, .yml or .toml file")
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"config file {str(path)!r} can't be parsed: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top, got {type(data).__name__}")
    return dict(data)


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
            accepted = ", ".join(parameters) or "no arguments"
            raise ConfigError(
                f"{where}: unknown key {key!r}{registry.did_you_mean(key, list(parameters))} "
                f"({cls.__name__} takes {accepted})"
            )
        annotation = hints.get(key, parameters[key].annotation)
        if not _matches(value, annotation):
            raise ConfigError(
                f"{where}: {key!r} must be {_describe(annotation)}, got {value!r} ({type(value).__name__})"
            )
    for name, parameter in parameters.items():
        if parameter.default is inspect.Parameter.empty and name not in arguments and name not in ("model",):
            annotation = hints.get(name, parameter.annotation)
            raise ConfigError(f"{where}: missing required key {name!r} ({_describe(annotation)})")


def _resolve(group: str, name: Any, where: str, allow_imports: bool) -> type:
    kind = registry.KINDS[group]
    if not isinstance(name, str):
        raise ConfigError(f"{where}: a {kind} name must be a string, got {name!r}")
    cls = registry.lookup(group, name)
    if cls is not None:
        return cls
    if "." in name or ":" in name:
        if not allow_imports:
            raise ConfigError(
                f"{where}: {name!r} looks like an import path; looptrack does not import code named in a "
                "config unless you pass allow_imports=True to Tracker.from_config (or register it by name)"
            )
        try:
            return registry.import_object(name)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"{where}: can't import {name!r}: {error}") from error
    known = registry.known_names(group)
    raise ConfigError(
        f"{where}: unknown {kind} {name!r}{registry.did_you_mean(name, known)} (known: {', '.join(known)})"
    )


def _entries(callbacks: Any) -> list[tuple[str, dict[str, Any]]]:
    if callbacks is None:
        return []
    if not isinstance(callbacks, list):
        raise ConfigError(
            f"'callbacks' must be a list of entries like '- loss: {{every_n_steps: 50}}', got "
            f"{type(callbacks).__name__}"
        )
    entries: list[tuple[str, dict[str, Any]]] = []
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
                    f"{where} ({name}): arguments must be a mapping like {{every_n_steps: 50}}, got {arguments!r}"
                )
            entries.append((name, dict(arguments)))
        else:
            raise ConfigError(
                f"{where}: each entry is a name or a one-key mapping {{name: {{arguments}}}}, got {entry!r}"
            )
    return entries


def build(config: Mapping[str, Any], *, allow_imports: bool = False) -> tuple[list[Any] | None, Any, bool]:
    """``(callbacks, writer, strict)`` from a loaded config; everything is checked before anything is built.

    No ``callbacks`` key means the default set (``None``); no ``writer`` key, the default writer.
    """
    unknown = [key for key in config if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(
            f"unknown top-level key {unknown[0]!r}{registry.did_you_mean(unknown[0], TOP_LEVEL_KEYS)} "
            f"(known: {', '.join(TOP_LEVEL_KEYS)})"
        )
    strict = config.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"'strict' must be true or false, got {strict!r}")
    planned = []
    for index, (name, arguments) in enumerate(_entries(config.get("callbacks"))):
        where = f"callbacks[{index}] ({name})"
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
                f"'writer' must be a mapping like {{backend: tensorboard, log_dir: runs/x}}, got {writer_config!r}"
            )
        writer_arguments = dict(writer_config)
        backend = writer_arguments.pop("backend", "tensorboard")
        front_options = {key: writer_arguments.pop(key) for key in FRONT_OPTIONS if key in writer_arguments}
        sink_cls = _resolve(registry.SINK_GROUP, backend, f"writer ({backend})", allow_imports)
        check_arguments(sink_cls, writer_arguments, f"writer ({backend})")
        writer_plan = (backend, sink_cls, writer_arguments, front_options)
    callbacks = []
    for cls, arguments, where in planned:
        try:
            callbacks.append(cls(**arguments))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: {error}") from error
    writer = None
    if writer_plan:
        backend, sink_cls, sink_arguments, front_options = writer_plan
        try:
            writer = Writer(sink_cls(**sink_arguments), **front_options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"writer ({backend}): {error}") from error
    return (callbacks if "callbacks" in config else None), writer, strict
