"""One name -> class registry for callbacks, sinks and loop adapters: configs, ``writer=``, ``attach`` and the CLI.

Built-ins are listed as ``module:Class`` and imported only when used.
Third-party packages add theirs through entry points::

    # pyproject.toml of a plug-in package
    [project.entry-points."looptrack.callbacks"]
    confusion_matrix = "my_package.callbacks:ConfusionMatrix"

    [project.entry-points."looptrack.sinks"]
    wandb = "my_package.sinks:WandbSink"

or at run time with :func:`register_callback` / :func:`register_sink`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

CALLBACK_GROUP = "looptrack.callbacks"
SINK_GROUP = "looptrack.sinks"
ADAPTER_GROUP = "looptrack.adapters"
KINDS = {CALLBACK_GROUP: "callback", SINK_GROUP: "sink", ADAPTER_GROUP: "loop adapter"}

_BUILTINS: dict[str, dict[str, str]] = {
    CALLBACK_GROUP: {
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
        "gradient_stats": "callbacks.gradient_stats:GradientStats",
        "nonfinite_sentinel": "callbacks.nonfinite:NonFiniteSentinel",
        "activation_stats": "callbacks.activation_stats:ActivationStats",
    },
    SINK_GROUP: {
        "tensorboard": "trackers.writers.sinks.tensorboard:TensorBoardSink",
        "memory": "trackers.writers.sinks.memory:MemorySink",
        "jsonl": "trackers.writers.sinks.jsonl:JsonlSink",
        "csv": "trackers.writers.sinks.csv:CsvSink",
        "mlflow": "trackers.writers.sinks.mlflow:MlflowSink",
    },
    ADAPTER_GROUP: {  # modules with DESCRIPTION, recognizes(loop) and attach(tracker, loop, **options)
        "lightning": "trackers.adapters.lightning",
        "ignite": "trackers.adapters.ignite",
        "transformers": "trackers.adapters.transformers",
    },
}
_registered: dict[str, dict[str, Any]] = {CALLBACK_GROUP: {}, SINK_GROUP: {}, ADAPTER_GROUP: {}}


class UnknownName(LookupError):
    """A name that is registered in neither the built-ins, the entry points nor at run time."""


def register_callback(name: str, cls: type) -> None:
    """Make the callback class ``cls`` selectable as ``name`` in config files."""
    _register(CALLBACK_GROUP, name, cls)


def register_sink(name: str, cls: type) -> None:
    """Make the sink class ``cls`` selectable as ``Tracker(writer=name)`` and ``writer: {sink: name}`` in configs.

    >>> class PrintSink(Sink):                                      # doctest: +SKIP
    ...     def write_scalar(self, record): print(record.tag, record.value)
    >>> register_sink("print", PrintSink)                           # doctest: +SKIP
    """
    _register(SINK_GROUP, name, cls)


def _register(group: str, name: str, cls: type) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a registered name must be an identifier like 'my_callback', got {name!r}")
    if not isinstance(cls, type):
        raise TypeError(f"register {name!r}: expected a class, got {cls!r}")
    _registered[group][name] = cls


def _sources(group: str) -> dict[str, Any]:
    found: dict[str, Any] = {entry.name: entry for entry in entry_points(group=group)}
    found.update({name: target for name, target in _BUILTINS[group].items() if _importable(target)})
    found.update(_registered[group])
    return found


def register_adapter(name: str, adapter: Any) -> None:
    """Make ``adapter`` (an object or module with ``DESCRIPTION``, ``recognizes(loop)`` and
    ``attach(tracker, loop, **options)``) one that ``Tracker.attach`` tries."""
    if not all(hasattr(adapter, attribute) for attribute in ("DESCRIPTION", "recognizes", "attach")):
        raise TypeError(
            f"register_adapter {name!r}: an adapter needs DESCRIPTION, recognizes(loop) and "
            f"attach(tracker, loop, **options); got {adapter!r}"
        )
    _registered[ADAPTER_GROUP][name] = adapter


def _importable(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


def known_names(group: str) -> list[str]:
    """Every name of ``group`` (:data:`CALLBACK_GROUP` or :data:`SINK_GROUP`), sorted."""
    return sorted(_sources(group))


def lookup(group: str, name: str) -> Any:
    """The class (for adapters, the module) registered as ``name`` in ``group``, imported now; None when unknown."""
    source = _sources(group).get(name)
    if source is None:
        return None
    if isinstance(source, str):
        return import_object(source) if ":" in source else importlib.import_module(source)
    if isinstance(source, EntryPoint):
        return source.load()
    return source  # registered at run time


def get(group: str, name: str) -> Any:
    """The class registered as ``name``; :class:`UnknownName` saying what was meant and what is known otherwise."""
    cls = lookup(group, name)
    if cls is None:
        known = known_names(group)
        raise UnknownName(f"unknown {KINDS[group]} {name!r}{did_you_mean(name, known)} (known: {', '.join(known)})")
    return cls


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def import_object(path: str) -> Any:
    """``package.module:Name`` or ``package.module.Name`` imported."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)
