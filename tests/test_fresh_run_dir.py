"""Nothing counted twice, no runs mixed: a second run into a log dir that holds one goes beside it.

Real runs end to end: a Tracker, LossLogger, a decorated train step returning a loss tensor, and the
directories read back with TensorBoard's own reader (or pandas-free for jsonl/csv: the lines themselves).
"""

from __future__ import annotations

import csv
import json
import os
import warnings

import pytest
import torch
from conftest import scalar_series
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks import LossLogger
from trackers import CsvSink, CsvWriter, JsonlSink, JsonlWriter, LooptrackWarning, TensorBoardWriter, Tracker
from trackers.writers.logdir import free_run_dir, holds_events


def _run(writer, n_steps: int, offset: float = 0.0, **tracker_options) -> tuple[Tracker, list[float], list[str]]:
    """One training run of ``n_steps`` (loss logged every step): the tracker, its losses, the 'holds a run' warnings.

    ``writer`` is what ``Tracker(writer=...)`` takes, or a function building it (so its warnings are caught too).
    """
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    inputs = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    targets = inputs.sum(dim=1, keepdim=True) + offset  # a different offset: a run whose losses can't be confused
    losses: list[float] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer = writer() if callable(writer) else writer
        with Tracker(net, callbacks=[LossLogger(every_n_steps=1)], writer=writer, **tracker_options) as tracker:

            @tracker.train_step
            def train_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(net(x), y)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                return loss

            for _ in range(n_steps):
                train_step(inputs, targets)
    messages = [
        str(w.message)
        for w in caught
        if issubclass(w.category, LooptrackWarning) and "already holds a run" in str(w.message)
    ]
    return tracker, losses, messages


def _expected(losses: list[float], first_step: int = 0) -> list[tuple[int, float]]:
    return [(first_step + i, pytest.approx(loss, rel=1e-6)) for i, loss in enumerate(losses)]


def _steps_never_go_back(series: list[tuple[int, float]]) -> bool:
    steps = [step for step, _ in series]
    return steps == sorted(set(steps))


def test_a_second_run_goes_beside_the_first_and_says_where(tmp_path):
    exp = tmp_path / "exp"
    first, first_losses, first_warned = _run(str(exp), 6)
    second, second_losses, second_warned = _run(str(exp), 4, offset=3.0)

    assert first.log_dir == str(exp) and first_warned == []
    assert second.log_dir == str(tmp_path / "exp_2")
    assert scalar_series(exp, "train/loss") == _expected(first_losses)  # the first run's points, exactly
    assert scalar_series(tmp_path / "exp_2", "train/loss") == _expected(second_losses)
    assert _steps_never_go_back(scalar_series(exp, "train/loss"))
    assert _steps_never_go_back(scalar_series(tmp_path / "exp_2", "train/loss"))
    assert len(second_warned) == 1  # told once
    (message,) = second_warned
    assert repr(str(exp)) in message and repr(str(tmp_path / "exp_2")) in message
    assert f"Tracker(..., writer={str(exp)!r}, resume_step=T)" in message
    assert f"TensorBoardSink({str(exp)!r}, if_exists='append')" in message

    third, third_losses, third_warned = _run(str(exp), 2, offset=6.0)  # the first free one: exp_3
    assert third.log_dir == str(tmp_path / "exp_3")
    assert scalar_series(tmp_path / "exp_3", "train/loss") == _expected(third_losses)
    assert repr(str(tmp_path / "exp_3")) in third_warned[0]
    assert scalar_series(exp, "train/loss") == _expected(first_losses)
    assert scalar_series(tmp_path / "exp_2", "train/loss") == _expected(second_losses)


def test_an_empty_or_run_free_directory_is_used_as_it_is(tmp_path):
    (tmp_path / "empty").mkdir()
    tracker, losses, warned = _run(str(tmp_path / "empty"), 3)
    assert tracker.log_dir == str(tmp_path / "empty") and warned == []
    assert scalar_series(tmp_path / "empty", "train/loss") == _expected(losses)

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.pt").write_bytes(b"weights")  # no event files: not a run
    tracker, _, warned = _run(str(tmp_path / "ckpt"), 2)
    assert tracker.log_dir == str(tmp_path / "ckpt") and warned == []


def test_resume_step_still_continues_in_the_same_directory(tmp_path):
    exp = tmp_path / "exp"
    _, first_losses, _ = _run(str(exp), 10)
    resumed, resumed_losses, warned = _run(str(exp), 3, offset=3.0, resume_step=5)
    assert resumed.log_dir == str(exp) and warned == []
    assert not (tmp_path / "exp_2").exists()
    series = scalar_series(exp, "train/loss")
    assert series == _expected(first_losses[:5]) + _expected(resumed_losses, first_step=5)
    assert _steps_never_go_back(series)


def test_if_exists_append_opts_out_and_adds_to_the_old_run(tmp_path):
    exp = tmp_path / "exp"
    _, first_losses, _ = _run(str(exp), 4)
    appended, second_losses, warned = _run(lambda: TensorBoardWriter(str(exp), if_exists="append"), 3, offset=3.0)
    assert appended.log_dir == str(exp) and warned == []
    assert not (tmp_path / "exp_2").exists()
    everything = EventAccumulator(str(exp), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    everything.Reload()  # as written: the reader's restart heuristics off
    points = sorted((e.wall_time, e.step, e.value) for e in everything.Scalars("train/loss"))
    assert [(step, value) for _, step, value in points] == _expected(first_losses) + _expected(second_losses)


def test_if_exists_is_checked(tmp_path):
    with pytest.raises(ValueError, match="if_exists must be one of 'new', 'append', got 'overwrite'"):
        TensorBoardWriter(str(tmp_path), if_exists="overwrite")
    with pytest.raises(ValueError, match="if_exists must be one of"):
        CsvWriter(log_dir=str(tmp_path), if_exists="overwrite")


def _read_jsonl(path: str) -> list[tuple[int, float]]:
    with open(path, encoding="utf-8") as lines:
        return [(r["step"], r["value"]) for r in map(json.loads, lines) if r["tag"] == "train/loss"]


def _read_csv(path: str) -> list[tuple[int, float]]:
    with open(path, encoding="utf-8", newline="") as rows:
        return [(int(r["step"]), float(r["value"])) for r in csv.DictReader(rows) if r["tag"] == "train/loss"]


FILE_BACKENDS = {
    "jsonl": (JsonlSink, "looptrack.jsonl", _read_jsonl),
    "csv": (CsvSink, "scalars.csv", _read_csv),
}


@pytest.mark.parametrize("backend", sorted(FILE_BACKENDS))
def test_file_backends_never_mix_runs_either(tmp_path, backend):
    cls, file_name, read = FILE_BACKENDS[backend]
    exp = tmp_path / "exp"
    first, first_losses, first_warned = _run(lambda: cls(log_dir=str(exp)), 5)
    second, second_losses, second_warned = _run(lambda: cls(log_dir=str(exp)), 3, offset=3.0)

    assert first.log_dir == str(exp) and first_warned == []
    assert second.log_dir == str(tmp_path / "exp_2") and second.writer.sinks[0].path == str(
        tmp_path / "exp_2" / file_name
    )
    assert read(str(exp / file_name)) == _expected(first_losses)
    assert read(str(tmp_path / "exp_2" / file_name)) == _expected(second_losses)
    (message,) = second_warned
    assert repr(str(exp)) in message and repr(str(tmp_path / "exp_2")) in message
    assert f"{cls.__name__}(log_dir={str(exp)!r}, if_exists='append')" in message

    appended, appended_losses, warned = _run(lambda: cls(log_dir=str(exp), if_exists="append"), 2, offset=6.0)
    assert appended.log_dir == str(exp) and warned == [] and not (tmp_path / "exp_3").exists()
    assert read(str(exp / file_name)) == _expected(first_losses) + _expected(appended_losses)


def test_a_file_backend_given_a_path_keeps_its_file_name(tmp_path):
    path = tmp_path / "exp" / "metrics.jsonl"
    _run(lambda: JsonlWriter(str(path)), 2)
    second, losses, (message,) = _run(lambda: JsonlSink(str(path)), 2, offset=3.0)
    assert second.writer.sinks[0].path == str(tmp_path / "exp_2" / "metrics.jsonl")
    assert _read_jsonl(second.writer.sinks[0].path) == _expected(losses)
    assert f"JsonlSink({str(path)!r}, if_exists='append')" in message


def test_tensorboard_and_csv_in_one_dir_move_together(tmp_path):
    exp = str(tmp_path / "exp")
    _run(lambda: [exp, CsvSink(log_dir=exp)], 3)
    second, losses, warned = _run(lambda: [exp, CsvSink(log_dir=exp)], 2, offset=3.0)
    assert [writer.log_dir for writer in second.writer.sinks] == [str(tmp_path / "exp_2")] * 2
    assert scalar_series(tmp_path / "exp_2", "train/loss") == _expected(losses)
    assert _read_csv(str(tmp_path / "exp_2" / "scalars.csv")) == _expected(losses)
    assert len(warned) == 2  # one line per backend, each with its own way to append instead


def test_the_default_timestamped_dir_never_collides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stamped = os.path.join("runs", "Jan01_00-00-00_host")  # two runs started in the same second
    monkeypatch.setattr("trackers.writers.sinks.tensorboard.default_log_dir", lambda comment="": stamped + comment)
    first, first_losses, _ = _run(None, 3)
    second, second_losses, warned = _run(None, 2, offset=3.0)
    assert first.log_dir == stamped and second.log_dir == stamped + "_2" and len(warned) == 1
    assert scalar_series(stamped, "train/loss") == _expected(first_losses)
    assert scalar_series(stamped + "_2", "train/loss") == _expected(second_losses)


def test_the_naming_is_always_a_suffix_never_a_renumbering(tmp_path):
    seed_1 = tmp_path / "seed_1"  # 'seed_1' run twice must not look like 'seed_2'
    seed_1.mkdir()
    (seed_1 / "events.out.tfevents.1.host").write_bytes(b"")
    assert holds_events(str(seed_1)) and not holds_events(str(tmp_path / "nowhere"))
    assert free_run_dir(str(seed_1) + os.sep, holds_events) == str(tmp_path / "seed_1_2")
