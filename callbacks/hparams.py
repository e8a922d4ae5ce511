"""Hyper-parameters and the metrics they led to, at the end of the run (TensorBoard's HParams tab)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from typing_extensions import override

from callbacks.base import Callback
from trackers.core.state import RunState
from trackers.errors import OnceReporter

_VALUE_TYPES = (int, float, str, bool)


class HParams(Callback):
    """Writes ``hparams`` with final metrics when the run ends.

    >>> HParams({"lr": 0.01, "batch_size": 32, "optimizer": "sgd"},                   # doctest: +SKIP
    ...         metrics=["val/loss", "train/loss"])

    ``metrics`` names scalar tags logged during the run (their last value is
    used: the writer remembers it, no read-back), or maps metric names to
    functions ``(state) -> value`` evaluated at the end.
    """

    reads_outputs = False

    def __init__(
        self,
        hparams: Mapping[str, Any],
        metrics: Sequence[str] | Mapping[str, Callable[[RunState], Any]] = ("val/loss", "train/loss"),
    ) -> None:
        if not isinstance(hparams, Mapping) or not hparams:
            raise ValueError(f"HParams: hparams must be a non-empty mapping like {{'lr': 0.01}}, got {hparams!r}")
        bad = {k: v for k, v in hparams.items() if not isinstance(v, _VALUE_TYPES)}
        if bad:
            raise ValueError(f"HParams: values must be numbers, strings or booleans; {bad!r} are not")
        self.hparams = dict(hparams)
        self.metrics = metrics
        self._reporter = OnceReporter()

    @override
    def on_train_end(self, state: RunState) -> None:
        values: dict[str, Any] = {}
        if isinstance(self.metrics, Mapping):
            for name, fn in self.metrics.items():
                values[name] = fn(state)
            state.writer.hparams(self.hparams, values, step=max(state.step, 0))
            return
        missing = []
        for tag in self.metrics:
            last = state.writer.last_scalar(tag)
            if last is None:
                missing.append(tag)
            else:
                values[tag] = last
        if missing:
            self._reporter.warn(
                "missing",
                f"HParams: no scalar {', '.join(map(repr, missing))} was logged in this "
                "run; those metrics are left out",
            )
        state.writer.hparams(self.hparams, values, step=max(state.step, 0), metrics_logged=True)
