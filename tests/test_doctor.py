"""looptrack doctor: finds corrupt and truncated records by offset, salvages what follows them."""

from __future__ import annotations

from conftest import scalar_series

from trackers import TensorBoardWriter
from trackers.tools.doctor import check, format_reports, salvage


def _run(path, steps=50):
    writer = TensorBoardWriter(path)
    for step in range(steps):
        writer.scalar("loss", float(step), step)
    writer.close()
    (events,) = path.glob("events.out.tfevents.*")
    return events


def test_a_healthy_run_checks_clean(tmp_path):
    _run(tmp_path / "run")
    (report,) = check(tmp_path / "run")
    assert report.ok and report.records == 51  # the file-version event plus 50 scalars


def test_a_flipped_byte_is_found_and_salvage_keeps_what_follows(tmp_path):
    events = _run(tmp_path / "run")
    data = bytearray(events.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0xFF
    events.write_bytes(bytes(data))
    # TensorBoard's reader stops at the bad record: everything after it is hidden
    hidden = scalar_series(tmp_path / "run", "loss")
    assert len(hidden) < 40
    (report,) = check(tmp_path / "run")
    assert len(report.problems) == 1 and report.problems[0].offset <= middle
    assert report.records == 50
    text = format_reports([report], tmp_path / "run")
    assert f"offset {report.problems[0].offset}:" in text and "1 with problems" in text
    salvage(tmp_path / "run", tmp_path / "fixed")
    recovered = scalar_series(tmp_path / "fixed", "loss")
    assert len(recovered) == 49 and recovered[-1] == (49, 49.0)


def test_a_truncated_file_is_reported_with_its_offset(tmp_path):
    events = _run(tmp_path / "run")
    data = events.read_bytes()
    events.write_bytes(data[:-7])
    (report,) = check(tmp_path / "run")
    assert [p.kind for p in report.problems] == ["truncated"]
    assert report.records == 50
    salvage(tmp_path / "run", tmp_path / "fixed")
    assert len(scalar_series(tmp_path / "fixed", "loss")) == 49
