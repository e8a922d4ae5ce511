"""A disk that fills and frees, a log dir deleted under the run: files keep only whole records, nothing later is lost.

Read back with the readers people use: TensorBoard's own (``EventAccumulator``), pandas for JSONL, ``csv``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import textwrap
import warnings

import pandas
import pytest
from conftest import PYTHON, load_run, scalar_series

from trackers.errors import LooptrackWarning
from trackers.tools.doctor import check
from trackers.writers.sinks.csv import CsvWriter
from trackers.writers.sinks.jsonl import JsonlWriter
from trackers.writers.sinks.tensorboard import TensorBoardWriter

# A real process whose file-size limit (RLIMIT_FSIZE) plays the full disk: a write past it fails with EFBIG after
# writing what fits, exactly the torn write a full disk makes. The limit is lifted again mid-run: room again.
# "brief": the records that find no room wait in memory (up to 4 MB) and all get written once there is room.
# "long": at most 8 KB may wait, so the big text and most scalars logged while the disk is full are not written.
# "never": the disk stays full to the end; what waits is not written when the writer closes, and that is said.
DISK_FILLS_THEN_FREES = textwrap.dedent(
    """
    import glob, os, resource, signal, sys
    from trackers.writers.sinks.csv import CsvWriter
    from trackers.writers.sinks.jsonl import JsonlWriter
    from trackers.writers.sinks.tensorboard import TensorBoardWriter

    kind, log_dir, outage = sys.argv[1:]
    if outage == "long":  # a small buffer, and little room to wait in
        from trackers.record_file import RecordFile

        RecordFile.BUFFER_SIZE, RecordFile.MAX_WAITING = 4 * 1024, 8 * 1024
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if kind == "tensorboard":
        writer = TensorBoardWriter(log_dir, flush_secs=3600)
    elif kind == "jsonl":
        writer = JsonlWriter(log_dir=log_dir, flush_secs=3600)
    else:
        writer = CsvWriter(log_dir=log_dir, flush_secs=3600)
    for step in range(50):
        writer.scalar("before", float(step), step)
    writer.flush()
    path = glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))[0] if kind == "tensorboard" else writer.sink.path
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 3000, hard))  # 3 KB of room left
    if kind != "csv":  # the CSV sink writes scalars only
        writer.text("big", "x" * 100_000, 50)  # crosses the limit on its own
    for step in range(50, 650):  # 18 to 50 KB: the first ones fill the room, one is torn, the rest find none
        writer.scalar("during", float(step), step)
    writer.flush()
    if outage != "never":
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # room again
    for step in range(650, 700):
        writer.scalar("after", float(step), step)
    writer.close()
    print("errors", writer.errors)
    """
)
DURING = list(range(50, 650))


def _run_child(tmp_path, subprocess_env, kind, outage):
    script = tmp_path / "child.py"
    script.write_text(DISK_FILLS_THEN_FREES)
    log_dir = tmp_path / "run"
    result = subprocess.run(
        [PYTHON, str(script), kind, str(log_dir), outage],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "File too large" in result.stderr  # the limit did bite
    return log_dir, result


def _check(result, outage: str, steps: dict[str, list[int]], has_big: bool, kind: str) -> None:
    """Every record before the disk filled and after it freed is read back; the rest as the outage allows."""
    assert steps["before"] == list(range(50))
    during = steps.get("during", [])
    assert during == DURING[: len(during)]  # in order, and never past a torn record
    if outage == "never":  # what fitted stays readable; what waited is lost at close, and said so once
        assert "after" not in steps and not has_big
    else:
        assert steps["after"] == list(range(650, 700))  # all of it once there is room again
    if outage == "brief":  # everything waited and was written once there was room: nothing lost
        assert during == DURING and has_big == (kind != "csv")
    elif outage == "long":  # what fitted and what could wait
        assert 0 < len(during) < len(DURING) and not has_big
    else:
        assert len(during) < len(DURING)  # for the text sinks none: they wait behind the text, which never fits

    errors = int(result.stdout.split("errors")[1])
    unit = {"tensorboard": "event", "jsonl": "line", "csv": "row"}[kind]
    assert f"{unit}(s) wait in memory for room" in result.stderr  # said once, while they waited
    if outage == "brief":
        assert errors == 0
    elif outage == "long":
        assert errors == (kind != "csv") + len(DURING) - len(during)  # each record not written counted once
        assert "the record is not written" in result.stderr and "wait in memory for it" in result.stderr
        if kind != "csv":
            assert "could not write text 'big' at step 50" in result.stderr
    else:
        waited = len(DURING) - len(during) + 50 + (kind != "csv")
        assert errors == waited and "could not write flush/close" in result.stderr  # each record lost counted
        assert f"{waited} record(s) waited in memory for room in" in result.stderr
        assert "until it was closed and are not written (it holds only whole records)" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["brief", "long", "never"])
def test_tensorboard_reads_everything_after_a_full_disk_frees(tmp_path, subprocess_env, outage):
    log_dir, result = _run_child(tmp_path, subprocess_env, "tensorboard", outage)
    run = load_run(log_dir)
    steps = {tag: [event.step for event in run.Scalars(tag)] for tag in run.Tags()["scalars"]}
    has_big = "big/text_summary" in run.Tags()["tensors"]  # the tag torch's text summary gives
    _check(result, outage, steps, has_big, "tensorboard")
    [report] = check(log_dir)  # every record whole and checksummed: nothing for `looptrack doctor --salvage`
    assert report.ok and report.records == 1 + sum(map(len, steps.values())) + has_big, report
    if has_big:
        assert [event.step for event in run.Tensors("big/text_summary")] == [50]


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["brief", "long"])
def test_jsonl_reads_everything_after_a_full_disk_frees(tmp_path, subprocess_env, outage):
    log_dir, result = _run_child(tmp_path, subprocess_env, "jsonl", outage)
    text = (log_dir / "looptrack.jsonl").read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())  # only whole lines
    lines = pandas.read_json(log_dir / "looptrack.jsonl", lines=True)
    scalars = lines[lines["kind"] == "scalar"]
    steps = {tag: list(group["step"]) for tag, group in scalars.groupby("tag")}
    big = [json.loads(line) for line in text.splitlines() if json.loads(line)["tag"] == "big"]
    assert len(big) <= 1 and all(line["text"] == "x" * 100_000 for line in big)
    _check(result, outage, steps, len(big) == 1, "jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["brief", "long"])
def test_csv_reads_everything_after_a_full_disk_frees(tmp_path, subprocess_env, outage):
    log_dir, result = _run_child(tmp_path, subprocess_env, "csv", outage)
    text = (log_dir / "scalars.csv").read_bytes().decode("utf-8")
    assert text.startswith("tag,step,walltime,value\r\n") and text.endswith("\r\n")
    rows = list(csv.DictReader(text.splitlines()))
    assert all(len(row) == 4 and None not in row.values() for row in rows)  # only whole rows
    steps: dict[str, list[int]] = {}
    for row in rows:
        steps.setdefault(row["tag"], []).append(int(row["step"]))
    _check(result, outage, steps, False, "csv")


def _deleted_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    messages = [str(w.message) for w in caught if issubclass(w.category, LooptrackWarning)]
    return [message for message in messages if "was deleted" in message]


def _lost(message: str, unit: str) -> int:
    match = re.search(rf"the (\d+) {unit}\(s\) already flushed to .* when it was deleted went with it", message)
    assert match, message
    return int(match.group(1))


def test_a_log_dir_deleted_mid_run_loses_only_what_was_flushed_before(tmp_path):
    """Steps 0..299, flushed every 25 steps, the log dir deleted after step 137: steps 126.. are all read back."""
    log_dir = tmp_path / "run"
    writer = TensorBoardWriter(log_dir, flush_secs=3600)  # flushes only where the loop says: no race with rmtree
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(300):
            writer.scalar("x", float(step), step)
            if step % 25 == 0:
                writer.flush()
            if step == 137:
                shutil.rmtree(log_dir)  # from the training side, while the writer thread goes on
        writer.close()
    [message] = _deleted_warnings(caught)
    assert f"the log dir {str(log_dir)!r} was deleted during the run; it is created again" in message
    steps = [step for step, _ in scalar_series(log_dir, "x")]
    assert steps == list(range(126, 300))  # every step from the deletion on, and the unflushed ones before it
    assert _lost(message, "event") == 126  # steps 0..125 (flushed at step 125), as the warning says
    assert writer.sink.recreated == 1 and writer.errors == 0


def test_records_after_a_deletion_are_kept_past_full_buffers(tmp_path):
    """Many buffers' worth after the deletion: each full-buffer write notices it, nothing goes to the old file."""
    log_dir = tmp_path / "run"
    writer = TensorBoardWriter(log_dir, flush_secs=3600)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(10):
            writer.scalar("x", float(step), step)
        writer.flush()
        shutil.rmtree(log_dir)
        for step in range(10, 5000):  # ~350 KB of events: written as the buffer fills, before any flush
            writer.scalar("x", float(step), step)
        writer.close()
    [message] = _deleted_warnings(caught)
    assert _lost(message, "event") == 10
    assert [step for step, _ in scalar_series(log_dir, "x")] == list(range(10, 5000))
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 1


def test_a_deleted_event_file_and_deleted_sub_runs_are_made_again(tmp_path):
    log_dir = tmp_path / "run"
    writer = TensorBoardWriter(log_dir, flush_secs=3600)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer.scalar("x", 0.0, 0)
        writer.scalars("loss", {"train": 1.0, "test": 2.0}, 0)
        writer.flush()
        [first] = log_dir.glob("events.out.tfevents.*")
        os.remove(first)  # only the file: the directory stays
        writer.scalar("x", 1.0, 1)
        writer.flush()
        shutil.rmtree(log_dir)  # now the directory, with the sub-runs of add_scalars
        writer.scalar("x", 2.0, 2)
        writer.scalars("loss", {"train": 1.5, "test": 2.5}, 2)
        writer.close()
    messages = _deleted_warnings(caught)
    assert any(f"the event file {str(first)!r} was deleted during the run" in m for m in messages), messages
    assert sum("the log dir" in m for m in messages) == 3  # the run and its two sub-runs
    assert writer.sink.recreated == 4
    assert scalar_series(log_dir, "x") == [(2, 2.0)]  # step 1 was flushed to the file deleted with the directory
    for key, value in (("train", 1.5), ("test", 2.5)):
        assert scalar_series(log_dir / f"loss_{key}", "loss") == [(2, value)]


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_deleted_log_dir_is_made_again_by_the_line_sinks(tmp_path, kind):
    log_dir = tmp_path / "run"
    writer = (JsonlWriter if kind == "jsonl" else CsvWriter)(log_dir=log_dir, flush_secs=3600)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(100):
            writer.scalar("x", float(step), step)
            if step % 25 == 0:
                writer.flush()
            if step == 60:
                shutil.rmtree(log_dir)
        writer.close()
    [message] = _deleted_warnings(caught)
    assert f"the directory {str(log_dir)!r} was deleted during the run; it is created again" in message
    assert _lost(message, "line" if kind == "jsonl" else "row") == 51  # steps 0..50, flushed at step 50
    if kind == "jsonl":
        steps = list(pandas.read_json(log_dir / "looptrack.jsonl", lines=True)["step"])
    else:
        steps = [int(row["step"]) for row in csv.DictReader((log_dir / "scalars.csv").open(newline=""))]
    assert steps == list(range(51, 100))
