"""Callbacks and writers by registered short name, for config files.

Built-ins are listed as ``module:Class`` and imported only when used.
Third-party packages add theirs through entry points::

    # pyproject.toml of a plug-in package
    [project.entry-points."looptrack.callbacks"]
    confusion_matrix = "my_package.callbacks:ConfusionMatrix"

    [project.entry-points."looptrack.writers"]
    wandb = "my_package.writers:WandbWriter"

or at run time with :func:`register_callback` / :func:`register_writer`.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from typing import Any

CALLBACK_GROUP = "looptrack.callbacks"
WRITER_GROUP = "looptrack.writers"

_BUILTIN_CALLBACKS = {
    "loss": "callbacks.loss:LossLogger",
    "parameter_histograms": "callbacks.histograms:ParameterHistograms",
    "pr_curves": "callbacks.pr_curves:PRCurves",
    "prediction_figure": "callbacks.prediction_figure:PredictionFigure",
    "graph": "callbacks.graph:GraphTrace",
    "image_grid": "callbacks.image_grid:ImageGrid",
    "embedding": "callbacks.embedding:Embedding",
    "text": "callbacks.text:TextLogger",
    "hparams": "callbacks.hparams:HParams",
    "learning_rate": "callbacks.learning_rate:LearningRate",
}
_BUILTIN_WRITERS = {
    "tensorboard": "trackers.writers.tensorboard:TensorBoardWriter",
    "memory": "trackers.writers.memory:MemoryWriter",
    "jsonl": "trackers.writers.jsonl:JsonlWriter",
    "csv": "trackers.writers.csv_writer:CsvWriter",
    "mlflow": "trackers.writers.mlflow_writer:MlflowWriter",
}
_registered: dict[str, dict[str, Any]] = {CALLBACK_GROUP: {}, WRITER_GROUP: {}}


def register_callback(name: str, cls: type) -> None:
    """Make ``cls`` selectable as ``name`` in config files."""
    _register(CALLBACK_GROUP, name, cls)


def register_writer(name: str, cls: type) -> None:
    """Make the writer class ``cls`` selectable as ``backend: name`` in config files."""
    _register(WRITER_GROUP, name, cls)


def _register(group: str, name: str, cls: type) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a registered name must be an identifier like 'my_callback', got {name!r}")
    if not isinstance(cls, type):
        raise TypeError(f"register {name!r}: expected a class, got {cls!r}")
    _registered[group][name] = cls


def _sources(group: str) -> dict[str, Any]:
    builtins = _BUILTIN_CALLBACKS if group == CALLBACK_GROUP else _BUILTIN_WRITERS
    found: dict[str, Any] = {}
    for entry in entry_points(group=group):
        found[entry.name] = entry
    found.update({name: target for name, target in builtins.items() if _importable(target)})
    found.update(_registered[group])
    return found


def _importable(target: str) -> bool:
    module = target.split(":")[0]
    return importlib.util.find_spec(module) is not None


def known_names(group: str) -> list[str]:
    return sorted(_sources(group))


def lookup(group: str, name: str) -> type | None:
    """The class registered as ``name`` in ``group``, imported now; None when unknown."""
    source = _sources(group).get(name)
    if source is None:
        return None
    if isinstance(source, type):
        return source
    if isinstance(source, str):
        return import_object(source)
    return source.load()  # an entry point


def import_object(path: str) -> Any:
    """``package.module:Name`` or ``package.module.Name`` imported."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)
