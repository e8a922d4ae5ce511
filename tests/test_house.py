"""The bugs the front/sink split fixed, and one registry behind every way of naming a writer."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
from conftest import scalar_series

from callbacks import HParams, LossLogger
from trackers import LooptrackWarning, MemorySink, MemoryWriter, Sink, Tracker, Writer, register_sink
from trackers.registry import UnknownName
from trackers.writers import records as rec


def _steps(tracker: Tracker, losses: list[float]) -> None:
    step = tracker.train_step(lambda value: torch.tensor(value))
    for value in losses:
        step(value)


def test_memory_writer_does_grouped_scalars_and_reads_series():
    writer = MemoryWriter()
    writer.scalars("loss", {"train": torch.tensor(0.5), "val": 0.75}, 3)  # once shadowed by the memory reader
    writer.scalar("train/loss", 0.5, 3)
    writer.close()
    grouped = [r for r in writer.records if isinstance(r, rec.Scalars)]
    assert [(r.tag, r.step, r.values) for r in grouped] == [("loss", 3, {"train": 0.5, "val": 0.75})]
    assert writer.series("train/loss") == [(3, 0.5)]
    assert writer.read_scalars()["loss/val"][0][1:] == [3, 0.75]


def test_writer_named_memory_does_grouped_scalars_from_a_tracker():
    with Tracker(None, callbacks=[], writer="memory") as tracker:
        tracker.writer.scalars("loss", {"train": 1.0, "val": 2.0}, 0)
    (record,) = tracker.writer.sinks[0].records
    assert record.kind == "scalars" and record.values == {"train": 1.0, "val": 2.0}


def test_a_rank_that_does_not_write_still_knows_its_last_scalars():
    writer = Writer([])  # what every rank but zero gets
    writer.scalar("train/loss", torch.tensor(0.25), 4)
    assert float(writer.last_scalar("train/loss")) == 0.25 and writer.describe() == "Writer with no sinks"
    with warnings.catch_warnings():
        warnings.simplefilter("error", LooptrackWarning)  # HParams once warned here that no train/loss was logged
        with Tracker(
            None,
            callbacks=[LossLogger(every_n_steps=2), HParams({"lr": 0.1}, metrics=["train/loss"])],
            writer=Writer([]),
        ) as tracker:
            _steps(tracker, [1.0, 3.0, 5.0, 7.0])
    assert float(tracker.writer.last_scalar("train/loss")) == 6.0


def test_an_unknown_writer_name_is_an_error_that_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownName, match=r"unknown sink 'mlfow'; did you mean 'mlflow'\?.*'runs/mlfow'"):
        Tracker(None, callbacks=[], writer="mlfow")
    assert os.listdir(tmp_path) == []


def test_readme_names_jsonl_and_csv_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("jsonl", "csv"):
        with Tracker(None, callbacks=[LossLogger(every_n_steps=1)], writer=name) as tracker:
            _steps(tracker, [1.0])
        assert os.path.relpath(tracker.log_dir, tmp_path).startswith("runs" + os.sep), (name, tracker.log_dir)
        assert os.path.getsize(tracker.writer.sinks[0].path) > 0


def test_a_log_dir_is_a_path_or_the_sink_colon_form(tmp_path):
    with Tracker(
        None,
        callbacks=[LossLogger(every_n_steps=1)],
        writer=[str(tmp_path / "tb"), f"jsonl:{tmp_path / 'js'}", f"tensorboard:{tmp_path / 'tb2'}"],
    ) as t:
        _steps(t, [2.0])
    assert [type(s).__name__ for s in t.writer.sinks] == ["TensorBoardSink", "JsonlSink", "TensorBoardSink"]
    assert scalar_series(tmp_path / "tb", "train/loss") == scalar_series(tmp_path / "tb2", "train/loss") == [(0, 2.0)]
    (line,) = (tmp_path / "js" / "looptrack.jsonl").read_text().splitlines()
    assert json.loads(line)["value"] == 2.0


class PrintSink(Sink):
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def write_scalar(self, record):
        self.lines.append(f"{self.prefix}{record.tag} {record.step} {record.value}")


def test_a_registered_sink_is_one_name_for_tracker_and_config():
    register_sink("print", PrintSink)
    with Tracker(None, callbacks=[LossLogger(every_n_steps=1)], writer="print") as by_name:
        _steps(by_name, [0.5])
    assert by_name.writer.sinks[0].lines == ["train/loss 0 0.5"]
    by_config = Tracker.from_config(
        {
            "writer": {"backend": "print", "prefix": "> ", "flush_secs": 1.0},
            "callbacks": [{"loss": {"every_n_steps": 1}}],
        }
    )
    with by_config:
        _steps(by_config, [0.25])
    assert by_config.writer.sinks[0].lines == ["> train/loss 0 0.25"]


def test_sinks_receive_plain_values_once():
    seen = []

    class Spy(Sink):
        def write_scalar(self, record):
            seen.append(record.value)

        def write_figure(self, record):
            seen.append(record.image.shape)

    from PIL import Image

    memory = MemorySink()
    writer = Writer([Spy(), memory])
    calls = []
    writer.figure("f", writer.later(lambda: calls.append(1) or Image.new("RGB", (4, 3))), 0)
    writer.scalar("s", torch.tensor(1.5), 0)
    writer.close()
    assert seen == [(3, 4, 3), 1.5] and calls == [1]  # drawn once for both sinks
    assert memory.records[0].image.shape == (3, 4, 3) and memory.records[1].value == 1.5


def test_the_cli_lists_what_the_registry_knows(capsys):
    from trackers.tools.cli import main

    register_sink("print", PrintSink)
    assert main(["names"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert "loss" in lines["callbacks"].split(", ") and "print" in lines["sinks"].split(", ")
    assert lines["loop adapters"] == "ignite, lightning, transformers"
