"""The looptrack command: demo end to end in a real process, inspect/export/doctor on real runs."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest
import torch
from conftest import PYTHON, load_run

from trackers import TensorBoardWriter
from trackers.tools.cli import main
from trackers.tools.demo import SyntheticFashionMNIST, TutorialNet, fresh_log_dir
from trackers.writers.logdir import view_command


def _two_runs(root):
    for name, offset in (("a", 0.0), ("b", 1.0)):
        writer = TensorBoardWriter(root / name)
        for step in range(3):
            writer.scalar("train/loss", offset + step, step)
        writer.histogram("weights", torch.randn(50), 2)
        writer.close()


def test_inspect_prints_one_row_per_tag(tmp_path, capsys):
    _two_runs(tmp_path)
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["run", "tag", "kind", "count", "first", "last", "last", "value"]
    rows = [line.split() for line in lines[2:]]
    assert ["a", "train/loss", "scalar", "3", "0", "2", "2"] in rows
    assert ["b", "train/loss", "scalar", "3", "0", "2", "3"] in rows
    assert ["a", "weights", "histogram", "1", "2", "2"] in rows


def test_export_csv_and_json(tmp_path, capsys):
    _two_runs(tmp_path / "runs")
    assert main(["export", str(tmp_path / "runs"), "--format", "csv", "-o", str(tmp_path / "s.csv")]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert [(r["run"], r["tag"], int(r["step"]), float(r["value"])) for r in rows] == [
        ("a", "train/loss", s, float(s)) for s in range(3)
    ] + [("b", "train/loss", s, 1.0 + s) for s in range(3)]
    capsys.readouterr()
    assert main(["export", str(tmp_path / "runs"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e[1:] for e in data["b"]["train/loss"]] == [[0, 1.0], [1, 2.0], [2, 3.0]]


def test_missing_log_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope")]) == 2
    assert "no such log dir" in capsys.readouterr().err


def test_doctor_exit_codes(tmp_path, capsys):
    _two_runs(tmp_path)
    assert main(["doctor", str(tmp_path)]) == 0
    (events,) = (tmp_path / "a").glob("events.*")
    events.write_bytes(events.read_bytes()[:-3])
    assert main(["doctor", str(tmp_path), "--salvage", str(tmp_path / "fixed")]) == 1
    out = capsys.readouterr().out
    assert "truncated" in out and "1 with problems" in out
    assert [e.step for e in load_run(tmp_path / "fixed" / "a").Scalars("train/loss")] == [0, 1, 2]


@pytest.mark.parametrize(
    "command", [["--help"], ["inspect", "--help"], ["export", "--help"], ["doctor", "--help"], ["demo", "--help"]]
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command)
    assert exit_info.value.code == 0
    assert "usage: looptrack" in capsys.readouterr().out


def test_synthetic_data_is_deterministic_and_normalised():
    a, b = SyntheticFashionMNIST(64, seed=3), SyntheticFashionMNIST(64, seed=3)
    assert torch.equal(a.data, b.data) and torch.equal(a.targets, b.targets)
    assert a.data.shape == (64, 1, 28, 28) and -1.0 <= a.data.min() and a.data.max() <= 1.0
    assert TutorialNet()(a.data[:4]).shape == (4, 10)


def test_fresh_log_dir_never_mixes_runs(tmp_path):
    path = str(tmp_path / "fashion_mnist_experiment_1")
    assert fresh_log_dir(path) == path
    _two_runs(tmp_path / "x")
    (tmp_path / "fashion_mnist_experiment_1").mkdir()
    (tmp_path / "fashion_mnist_experiment_1" / "events.out.tfevents.1").write_bytes(b"")
    assert fresh_log_dir(path) == str(tmp_path / "fashion_mnist_experiment_1_2")


def test_the_view_hint_shows_the_runs_folder_or_the_run_itself(tmp_path):
    assert view_command("runs/fashion_mnist_experiment_1") == "tensorboard --logdir runs"
    assert view_command(tmp_path / "runs" / "a") == f"tensorboard --logdir {tmp_path / 'runs'}"
    assert view_command("/tmp/demo_run") == "tensorboard --logdir /tmp/demo_run"  # not all of /tmp


@pytest.mark.slow
def test_demo_end_to_end_in_a_subprocess(tmp_path, subprocess_env):
    log_dir = tmp_path / "runs" / "demo"
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "trackers",
            "demo",
            "--epochs",
            "1",
            "--train-size",
            "1600",
            "--test-size",
            "400",
            "--log-every",
            "10",
            "--logdir",
            str(log_dir),
            "--data-dir",
            str(tmp_path / "no-data"),
        ],
        env=subprocess_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "using a synthetic 28x28 10-class data set" in result.stdout
    assert f"tensorboard --logdir {tmp_path / 'runs'}" in result.stdout
    assert "validation accuracy" in result.stdout
    run = load_run(log_dir)
    assert [e.step for e in run.Scalars("train/loss")] == list(range(9, 50, 10))
    assert len(run.PluginTagToContent("pr_curves")) == 10
    assert "parameters/conv1.weight" in run.Tags()["histograms"]


@pytest.mark.slow
def test_from_config_example_runs(tmp_path, subprocess_env):
    from conftest import ROOT

    config = tmp_path / "tracking.yaml"
    config.write_text(
        (ROOT / "examples" / "tracking.yaml")
        .read_text()
        .replace("runs/fashion_mnist_from_config", str(tmp_path / "run"))
    )
    result = subprocess.run(
        [PYTHON, str(ROOT / "examples" / "from_config.py"), "--config", str(config), "--train-size", "800"],
        env=subprocess_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    run = load_run(tmp_path / "run")
    assert [e.step for e in run.Scalars("val/loss")] == [24]  # 800 images, batches of 32: steps 0-24
    assert len(run.PluginTagToContent("pr_curves")) == 10
