"""Reading a config file (YAML or TOML) safely: bounded in size, UTF-8, no YAML alias bombs, short messages.

A file over :data:`MAX_FILE_BYTES` is refused unread, and so is a YAML
document whose aliases expand to more than :data:`MAX_NODES` values or nest
deeper than :data:`MAX_DEPTH` (an "alias bomb"), before it is turned into
Python objects. Every :class:`ConfigError` message is short (values in it
are cut with :mod:`reprlib` by :func:`show`, the whole message at
:data:`MAX_MESSAGE` characters), whatever the input. What the loaded dict
selects is checked and built by :mod:`trackers.core.config`.

>>> import os, tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     path = os.path.join(folder, "run.yaml")
...     with open(path, "w", encoding="utf-8") as file:
...         _ = file.write("{strict: true, callbacks: [graph, {loss: {every_n_steps: 50}}]}")
...     load_config(path)
{'strict': True, 'callbacks': ['graph', {'loss': {'every_n_steps': 50}}]}
>>> load_config("settings.ini")
Traceback (most recent call last):
    ...
trackers.core.config_file.ConfigError: config file 'settings.ini' not found
"""

from __future__ import annotations

import os
import reprlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxstring = 60
_SHORT_REPR.maxother = 60
_SHORT_REPR.maxlong = 40
for _attribute in ("maxlist", "maxtuple", "maxset", "maxfrozenset", "maxdict", "maxdeque", "maxarray"):
    setattr(_SHORT_REPR, _attribute, 6)


def clip(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters ending in ``...`` when it is longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(value: Any) -> str:
    """``repr(value)`` cut short (at most :data:`MAX_SHOWN` characters), for quoting config values in messages."""
    try:
        text = _SHORT_REPR.repr(value)
    except Exception:  # a repr that fails (or an int too long to print): name the type only
        text = f"<{type(value).__name__}>"
    return clip(text, MAX_SHOWN)


class ConfigError(ValueError):
    """The config can't be used; the message names the entry, the key and the fix (and is at most 1000 characters)."""

    def __init__(self, message: str) -> None:
        super().__init__(clip(str(message), MAX_MESSAGE))


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """The config as a dict: ``source`` is a ``.yaml``/``.yml``/``.toml`` path or a mapping.

    Files over :data:`MAX_FILE_BYTES` and YAML alias bombs are refused with a :class:`ConfigError`.
    """
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    where = f"config file {show(str(path))}"
    suffix = path.suffix.lower()
    text = _read_text(path, where)
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(f"{where}: use a .yaml, .yml or .toml file")
    try:
        data = _parse_yaml(text, where) if suffix in (".yaml", ".yml") else _parse_toml(text)
    except ConfigError:
        raise
    except Exception as error:  # RecursionError and MemoryError included
        raise ConfigError(f"{where} can't be parsed: {clip(str(error), MAX_MESSAGE // 2)}") from error
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
        raise ConfigError(f"{where} can't be read: {clip(str(error), MAX_SHOWN)}") from error
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
