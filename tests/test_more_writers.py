"""jsonl and csv backends, and fan-out to several writers where one failing does not stop the others."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import scalar_series
from helpers import fashion_batches, train_tutorial

from callbacks import LossLogger, PredictionFigure
from trackers import CsvWriter, JsonlWriter, LooptrackWarning, MemoryWriter, Sink, Tracker
from trackers.tools.demo import CLASSES, SyntheticFashionMNIST, TutorialNet


def test_jsonl_lines_read_back_with_pandas_and_pngs_beside(tmp_path):
    pandas = pytest.importorskip("pandas")
    writer = JsonlWriter(log_dir=tmp_path)
    writer.scalar("train/loss", torch.tensor(0.5), 3)
    writer.histogram("w", torch.randn(100), 3)
    writer.image("grid", torch.rand(3, 8, 8), 3)
    writer.text("note", "hello", 0)
    writer.pr_curve("p", torch.tensor([0, 1, 1]), torch.tensor([0.2, 0.8, 0.6]), 3)
    writer.close()
    frame = pandas.read_json(tmp_path / "looptrack.jsonl", lines=True)
    assert list(frame["kind"]) == ["scalar", "histogram_raw", "image", "text", "pr_curve"]
    assert frame.loc[0, "value"] == 0.5 and frame.loc[0, "step"] == 3
    assert (tmp_path / frame.loc[2, "path"]).exists()
    assert sum(frame.loc[1, "bucket_counts"]) == 100


def test_csv_keeps_scalars_and_reports_other_kinds_once(tmp_path):
    writer = CsvWriter(tmp_path / "scalars.csv")
    writer.scalar("a", 1.0, 0)
    writer.scalars("b", {"x": 2.0}, 1)
    with pytest.warns(LooptrackWarning, match="cannot show image"):
        writer.image("i", torch.rand(3, 4, 4), 0)
        writer.image("i", torch.rand(3, 4, 4), 1)
        writer.close()
    rows = list(csv.DictReader((tmp_path / "scalars.csv").open()))
    assert [(r["tag"], int(r["step"]), float(r["value"])) for r in rows] == [("a", 0, 1.0), ("b/x", 1, 2.0)]


class Broken(Sink):
    def write_scalar(self, record):
        raise OSError("disk on fire")


def test_fan_out_from_a_tracker_and_one_failing_backend(tmp_path):
    net = TutorialNet()
    data = SyntheticFashionMNIST(16)
    memory = MemoryWriter()
    with pytest.warns(LooptrackWarning, match="Broken could not write scalar"):
        with Tracker(
            net,
            callbacks=[LossLogger(every_n_steps=1), PredictionFigure(CLASSES, every_n_steps=2)],
            writer=[str(tmp_path / "tb"), JsonlWriter(log_dir=tmp_path / "tb"), memory, Broken()],
        ) as tracker:
            assert len(tracker.writer.sinks) == 4  # one writer, one thread, four sinks
            train_tutorial(tracker, net, fashion_batches(data, 4, 4), optimizer=None)
    assert [s for s, _ in scalar_series(tmp_path / "tb", "train/loss")] == [0, 1, 2, 3]
    assert [s for s, _ in memory.series("train/loss")] == [0, 1, 2, 3]
    lines = [json.loads(line) for line in (tmp_path / "tb" / "looptrack.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if line["kind"] == "figure"] == [1, 3]
    assert tracker.log_dir == str(tmp_path / "tb")
    assert tracker.writer.errors == 4


def test_writer_lists_in_config(tmp_path):
    tracker = Tracker.from_config({"writer": {"backend": "jsonl", "log_dir": str(tmp_path)}, "callbacks": []})
    tracker.log("x", 1.0, 0)
    tracker.close()
    assert json.loads((tmp_path / "looptrack.jsonl").read_text())["value"] == 1.0
