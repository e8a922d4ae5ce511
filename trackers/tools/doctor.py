"""Check every record of a run's event files, and salvage what a corrupt or truncated file still holds.

An event file is a sequence of TFRecords: an 8-byte length, its masked
CRC32C, the data, the data's masked CRC32C. TensorBoard's readers stop at the
first bad record, so one flipped byte hides everything after it. ``check``
finds every bad or truncated record with its file and offset; ``salvage``
writes a copy that keeps every good record, re-framed.

    looptrack doctor runs/fashion_mnist_experiment_1
    looptrack doctor runs/fashion_mnist_experiment_1 --salvage runs/fashion_mnist_experiment_1-salvaged
"""

from __future__ import annotations

import os
from pathlib import Path

from trackers.tensorboard.event_file import frame
from trackers.tensorboard.event_reader import FileReport, event_files, read_records


def check(log_dir: str | os.PathLike[str]) -> list[FileReport]:
    """A report for every event file under ``log_dir``."""
    reports = []
    for path in event_files(log_dir):
        data = path.read_bytes()
        report = FileReport(path, size=len(data))
        for _ in read_records(data, report):
            pass
        reports.append(report)
    return reports


def salvage(log_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[FileReport]:
    """Copy every good record of every event file under ``log_dir`` to the same place under ``out_dir``."""
    log_dir, out_dir = Path(log_dir), Path(out_dir)
    if out_dir.resolve() == log_dir.resolve():
        raise ValueError("looptrack doctor --salvage: the output must be another directory than the run's")
    reports = []
    for path in event_files(log_dir):
        data = path.read_bytes()
        report = FileReport(path, size=len(data))
        target = out_dir / path.relative_to(log_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for payload in read_records(data, report):
                out.write(frame(payload))
        reports.append(report)
    return reports


def format_reports(reports: list[FileReport], root: str | os.PathLike[str]) -> str:
    if not reports:
        return f"no event files under {root}"
    lines = []
    for report in reports:
        name = report.path.relative_to(root) if report.path.is_relative_to(root) else report.path
        status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        lines.append(f"{name}: {report.records} good records, {report.size} bytes, {status}")
        for problem in report.problems:
            lines.append(f"  offset {problem.offset}: {problem.kind} ({problem.detail})")
    bad = sum(1 for r in reports if not r.ok)
    lines.append(f"{len(reports)} file(s) checked, {bad} with problems")
    return "\n".join(lines)
