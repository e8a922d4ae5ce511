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

Config files are bounded: a file over :data:`MAX_FILE_BYTES` is refused, and
so is a YAML document whose aliases expand to more than :data:`MAX_NODES`
values or nest deeper than :data:`MAX_DEPTH` (an "alias bomb"), before it is
turned into Python objects. Every :class:`ConfigError` message is short
(values in it are cut with :mod:`reprlib`, the whole message at
:data:`MAX_MESSAGE` characters), whatever the input.

Dotted import paths in a config are refused unless the caller passes
``allow_imports=True``. Even then a path must name a :class:`Callback`
subclass (a :class:`~trackers.writers.sink.Sink` subclass for ``writer:
{backend: ...}``), checked before anything is called or instantiated. Resolving
the path imports its module, which runs that module's top-level code: never
load a config from an untrusted source with ``allow_imports=True``.
"""

from __future__ import annotations

import inspect
import os
import reprlib
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trackers import registry
from trackers.core.callback import Callback
from trackers.writers.front import Writer
from trackers.writers.sink import Sink

FRONT_OPTIONS = ("flush_secs", "max_pending", "max_pending_bytes", "when_full")
TOP_LEVEL_KEYS = ("writer", "callbacks", "strict")

MAX_FILE_BYTES = 1024 * 1024
"""A config file larger than this (1 MiB) is refused unread."""
MAX_NODES = 100_000
"""A YAML document whose values, with every alias expanded, number more than this is refused."""
MAX_DEPTH = 100
"""A YAML document nested deeper than this (aliases expanded) is refused."""
MAX_MESSAGE = 1000
"""No ConfigError message is longer than this many characters."""
MAX_SHOWN = 120
"""A config value (or name) quoted in a message is cut to this many characters."""

IMPORTABLE_BASES: dict[str, tuple[type, str]] = {
    registry.CALLBACK_GROUP: (Callback, "callbacks.Callback"),
    registry.SINK_GROUP: (Sink, "trackers.Sink"),
}
"""What an import path in a config may name, per registry group: a subclass of this class (and its public name)."""

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxstring = 60
_SHORT_REPR.maxother = 60
_SHORT_REPR.maxlong = 40
for _attribute in ("maxlist", "maxtuple", "maxset", "maxfrozenset", "maxdict", "maxdeque", "maxarray"):
    setattr(_SHORT_REPR, _attribute, 6)


def _clip(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters ending in ``...`` when it is longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    """``repr(value)`` cut short (at most :data:`MAX_SHOWN` characters), for quoting config values in messages."""
    try:
        text = _SHORT_REPR.repr(value)
    except Exception:  # a repr that fails (or an int too long to print): name the type only
        text = f"<{type(value).__name__}>"
    return _clip(text, MAX_SHOWN)


def _label(name: Any) -> str:
    """An entry's name as messages show it in ``callbacks[0] (name)``: the string itself, cut short."""
    return _clip(name, MAX_SHOWN) if isinstance(name, str) else _show(name)


def _suggest(name: Any, known: Sequence[str]) -> str:
    """``registry.did_you_mean`` for string names (YAML/TOML keys may also be numbers or dates)."""
    return registry.did_you_mean(name, known) if isinstance(name, str) and len(name) <= MAX_SHOWN else ""


class ConfigError(ValueError):
    """The config can't be used; the message names the entry, the key and the fix (and is at most 1000 characters)."""

    def __init__(self, message: str) -> None:
        super().__init__(_clip(str(message), MAX_MESSAGE))


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """The config as a dict: ``source`` is a ``.yaml``/``.yml``/``.toml`` path or a mapping.

    Files over :data:`MAX_FILE_BYTES` and YAML alias bombs are refused with a :class:`ConfigError`.
    """
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    where = f"config file {_show(str(path))}"
    suffix = path.suffix.lower()
    text = _read_text(path, where)
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(f"{where}: use a .yaml, .yml or .toml file")
    try:
        data = _parse_yaml(text, where) if suffix in (".yaml", ".yml") else _parse_toml(text)
    except ConfigError:
        raise
    except Exception as error:  # RecursionError and MemoryError included
        raise ConfigError(f"{where} can't be parsed: {_clip(str(error), MAX_MESSAGE // 2)}") from error
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must hold a mapping at the top, got {type(data).__name__}")
    return dict(data)


def _read_text(path: Path, where: str) -> str:
    """The file's text; ConfigError when it is missing, larger than :data:`MAX_FILE_BYTES` or not UTF-8."""
    try:
        if not path.is_file():
            raise ConfigError(f"{where} not found")
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{where} can't be read: {_clip(str(error), MAX_SHOWN)}") from error
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{where} is larger than {MAX_FILE_BYTES:,} bytes (1 MiB); a config file is refused past that size"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where} is not UTF-8 text (byte {error.start})") from error


def _parse_toml(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def _parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` that refuses, before building any object, a document too large once aliases expand."""
    import yaml

    class BoundedSafeLoader(yaml.SafeLoader):
        composed = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.composed += 1  # each value and each alias use: never more than the expanded size
            if self.composed > MAX_NODES:
                raise ConfigError(_too_many_values(where))
            return super().compose_node(parent, index)

        def get_single_node(self) -> Any:
            node = super().get_single_node()
            if node is not None:
                _check_expanded_size(node, where)
            return node

    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _check_expanded_size(root: Any, where: str) -> None:
    """Raise ConfigError if the composed YAML ``root`` expands past :data:`MAX_NODES` values or :data:`MAX_DEPTH`.

    An alias (``*a``) counts as a full copy of what its anchor (``&a``) holds, as it would be
    once printed or walked; each distinct node is measured once, so this takes time linear in the file.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(f"{where}: refused: an alias refers to a value that contains it (a recursive structure)")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: refused: values are nested deeper than {MAX_DEPTH} levels")
        open_nodes.add(key)
        total = 1
        for child in _children(node):
            total += size(child, depth + 1)
            if total > MAX_NODES:
                raise ConfigError(_too_many_values(where))
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _too_many_values(where: str) -> str:
    return (
        f"{where}: refused: with its aliases (*name) expanded it holds more than {MAX_NODES:,} values "
        "(a YAML alias bomb?); a config needs far fewer: write the values out or use fewer aliases"
    )


def _children(node: Any) -> list[Any]:
    """The nodes inside a composed YAML node: a sequence's items, a mapping's keys and values, none for a scalar."""
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


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
            accepted = _clip(", ".join(parameters), MAX_SHOWN * 2) or "no arguments"
            raise ConfigError(
                f"{where}: unknown key {_show(key)}{_suggest(key, list(parameters))} ({cls.__name__} takes {accepted})"
            )
        annotation = hints.get(key, parameters[key].annotation)
        if not _matches(value, annotation):
            raise ConfigError(
                f"{where}: {key!r} must be {_clip(_describe(annotation), MAX_SHOWN)}, got {_show(value)} "
                f"({type(value).__name__})"
            )
    for name, parameter in parameters.items():
        if parameter.default is inspect.Parameter.empty and name not in arguments and name not in ("model",):
            annotation = hints.get(name, parameter.annotation)
            raise ConfigError(f"{where}: missing required key {name!r} ({_clip(_describe(annotation), MAX_SHOWN)})")


def _resolve(group: str, name: Any, where: str, allow_imports: bool) -> type:
    """The class ``name`` selects in ``group``: a registered name, or (with ``allow_imports``) a checked import path."""
    kind = registry.KINDS[group]
    if not isinstance(name, str):
        raise ConfigError(f"{where}: a {kind} name must be a string, got {_show(name)}")
    cls = registry.lookup(group, name)
    if cls is not None:
        return cls
    if "." in name or ":" in name:
        if not allow_imports:
            raise ConfigError(
                f"{where}: {_show(name)} looks like an import path; looptrack does not import code named in a "
                "config unless you pass allow_imports=True to Tracker.from_config (or register it by name)"
            )
        return _import_class(group, name, where)
    known = registry.known_names(group)
    raise ConfigError(
        f"{where}: unknown {kind} {_show(name)}{_suggest(name, known)} "
        f"(known: {_clip(', '.join(known), MAX_MESSAGE // 2)})"
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
            f"{where}: can't import {_show(path)}: {_clip(f'{type(error).__name__}: {error}', MAX_SHOWN * 2)}"
        ) from error
    if not (isinstance(found, type) and issubclass(found, base)):
        if isinstance(found, type):
            what = f"the class {_clip(found.__qualname__, MAX_SHOWN)}, not a {base.__name__} subclass"
        else:
            what = f"a {type(found).__name__}, not a class"
        raise ConfigError(
            f"{where}: {_show(path)} is {what}; with allow_imports=True an import path must name a "
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
                    f"got {_show(arguments)}"
                )
            entries.append((name, dict(arguments)))
        else:
            raise ConfigError(
                f"{where}: each entry is a name or a one-key mapping {{name: {{arguments}}}}, got {_show(entry)}"
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
            f"unknown top-level key {_show(unknown[0])}{_suggest(unknown[0], TOP_LEVEL_KEYS)} "
            f"(known: {', '.join(TOP_LEVEL_KEYS)})"
        )
    strict = config.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"'strict' must be true or false, got {_show(strict)}")
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
                f"'writer' must be a mapping like {{backend: tensorboard, log_dir: runs/x}}, got {_show(writer_config)}"
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
            raise ConfigError(f"{where}: {_clip(str(error), MAX_MESSAGE // 2)}") from error
    writer = None
    if writer_plan:
        where, sink_cls, sink_arguments, front_options = writer_plan
        try:
            writer = Writer(sink_cls(**sink_arguments), **front_options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: {_clip(str(error), MAX_MESSAGE // 2)}") from error
    return (callbacks if "callbacks" in config else None), writer, strict
