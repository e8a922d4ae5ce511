"""Read runs back with TensorBoard's own reader: a summary table, and all scalars as CSV or JSON.

looptrack inspect runs
looptrack inspect runs/fashion_mnist_experiment_1/events.out.tfevents.1712345678.host.42.0
looptrack export runs --format csv -o scalars.csv

What is read is a run directory, a directory of runs, or one event file (its
run is named after the file). JSON output is strict JSON: a NaN or infinite
value is written as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``,
which Python's ``float(v)`` and JavaScript's ``Number(v)`` turn back into the
number.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass

from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from trackers.tools.doctor import files_to_check

_KINDS = {"scalars": "scalar", "histograms": "histogram", "images": "image", "audio": "audio", "tensors": "tensor"}


@dataclass
class TagSummary:
    run: str
    tag: str
    kind: str
    count: int
    first_step: int | None
    last_step: int | None
    last_value: float | None


def _load(log_dir: str | os.PathLike[str]) -> EventMultiplexer:
    guidance = {"scalars": 0, "histograms": 0, "images": 0, "audio": 0, "tensors": 0, "compressedHistograms": 0}
    multiplexer = EventMultiplexer(size_guidance=guidance)
    if os.path.isdir(log_dir):
        multiplexer.AddRunsFromDirectory(os.fspath(log_dir))
    else:  # one event file (files_to_check says what to pass for anything else): a run named after the file
        (event_file,) = files_to_check(log_dir)
        multiplexer.AddRun(os.fspath(event_file), name=event_file.name)
    multiplexer.Reload()
    return multiplexer


def _plugin(accumulator, tag: str) -> str | None:
    try:
        return accumulator.SummaryMetadata(tag).plugin_data.plugin_name or None
    except KeyError:
        return None


def summarize(log_dir: str | os.PathLike[str]) -> list[TagSummary]:
    """One row per (run, tag): kind, count, first and last step, last value of scalars."""
    multiplexer = _load(log_dir)
    rows = []
    for run in sorted(multiplexer.Runs()):
        accumulator = multiplexer.GetAccumulator(run)
        tags = accumulator.Tags()
        for key, kind in _KINDS.items():
            for tag in sorted(tags.get(key, [])):
                events = getattr(
                    accumulator,
                    {
                        "scalars": "Scalars",
                        "histograms": "Histograms",
                        "images": "Images",
                        "audio": "Audio",
                        "tensors": "Tensors",
                    }[key],
                )(tag)
                if key == "tensors":
                    kind = _plugin(accumulator, tag) or "tensor"
                last = events[-1].value if key == "scalars" and events else None
                rows.append(
                    TagSummary(
                        run,
                        tag,
                        kind,
                        len(events),
                        events[0].step if events else None,
                        events[-1].step if events else None,
                        last,
                    )
                )
        try:
            hparams = accumulator.PluginTagToContent("hparams")
        except KeyError:
            hparams = {}
        if "_hparams_/experiment" in hparams:
            rows.append(TagSummary(run, "(hparams)", "hparams", 1, None, None, None))
        if tags.get("graph"):
            rows.append(TagSummary(run, "(graph)", "graph", 1, None, None, None))
    return rows


def format_table(rows: list[TagSummary]) -> str:
    """A plain-text table for the terminal."""
    if not rows:
        return "no runs found (is this a TensorBoard log dir?)"
    header = ("run", "tag", "kind", "count", "first", "last", "last value")
    body = [
        (
            r.run,
            r.tag,
            r.kind,
            str(r.count),
            "" if r.first_step is None else str(r.first_step),
            "" if r.last_step is None else str(r.last_step),
            "" if r.last_value is None else f"{r.last_value:.6g}",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += [
        "  ".join(cell.rjust(w) if i >= 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in body
    ]
    return "\n".join(out)


def scalars(log_dir: str | os.PathLike[str]) -> dict[str, dict[str, list[list[float]]]]:
    """``{run: {tag: [[wall_time, step, value], ...]}}`` for every run under ``log_dir``."""
    multiplexer = _load(log_dir)
    out: dict[str, dict[str, list[list[float]]]] = {}
    for run in sorted(multiplexer.Runs()):
        accumulator = multiplexer.GetAccumulator(run)
        for tag in sorted(accumulator.Tags().get("scalars", [])):
            out.setdefault(run, {})[tag] = [[e.wall_time, e.step, e.value] for e in accumulator.Scalars(tag)]
    return out


def json_number(value: float) -> float | str:
    """``value``, or for a NaN or an infinity the string strict JSON parsers take (``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``; ``float(v)`` and JavaScript's ``Number(v)`` read them back).

    >>> [json_number(v) for v in (1.5, float("nan"), float("inf"), float("-inf"))]
    [1.5, 'NaN', 'Infinity', '-Infinity']
    """
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def export(log_dir: str | os.PathLike[str], fmt: str) -> str:
    """All scalars of every run as ``csv`` (run, tag, step, wall_time, value) or ``json`` (strict JSON, see
    :func:`json_number`)."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"export format must be csv or json, got {fmt!r}")
    data = scalars(log_dir)
    if fmt == "json":
        strict = {
            run: {tag: [[json_number(v) for v in event] for event in events] for tag, events in tags.items()}
            for run, tags in data.items()
        }
        return json.dumps(strict, indent=1, allow_nan=False)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "tag", "step", "wall_time", "value"])
    for run, tags in data.items():
        for tag, events in tags.items():
            for wall_time, step, value in events:
                writer.writerow([run, tag, step, f"{wall_time:.3f}", repr(value)])
    return buffer.getvalue()
