"""Check every record of a run's event files, and salvage what a corrupt or truncated file still holds.

An event file is a sequence of TFRecords: an 8-byte length, its masked
CRC32C, the data, the data's masked CRC32C. TensorBoard's readers stop at the
first bad record, so one flipped byte hides everything after it. ``check``
finds every bad or truncated record with its file and offset; ``salvage``
writes a copy that keeps every good record, re-framed.

    looptrack doctor runs/fashion_mnist_experiment_1
    looptrack doctor runs/fashion_mnist_experiment_1 --salvage runs/fashion_mnist_experiment_1-salvaged

``log_dir`` is a run directory, a directory of runs, or one event file.
"""

from __future__ import annotations

import os
from pathlib import Path

from trackers.tensorboard.event_file import frame
from trackers.tensorboard.event_reader import FileReport, event_files, read_records

WHAT_TO_PASS = "pass a run directory, a directory of runs (e.g. runs) or an event file (events.out.tfevents.*)"


def files_to_check(log_dir: str | os.PathLike[str]) -> list[Path]:
    """The event files under the directory ``log_dir``, or ``[log_dir]`` for an event file.

    A missing path raises ``FileNotFoundError``, a file that is no event file ``ValueError``; both say what to pass.
    """
    path = Path(log_dir)
    if path.is_dir():
        return event_files(path)
    if not path.exists():
        raise FileNotFoundError(f"no such log dir or event file: {os.fspath(log_dir)!r}; {WHAT_TO_PASS}")
    if "tfevents" not in path.name:
        raise ValueError(f"{os.fspath(log_dir)!r} is a file but not a TensorBoard event file; {WHAT_TO_PASS}")
    return [path]


def check(log_dir: str | os.PathLike[str]) -> list[FileReport]:
    """A report for every event file under ``log_dir`` (or for the event file ``log_dir``)."""
    reports = []
    for path in files_to_check(log_dir):
        data = path.read_bytes()
        report = FileReport(path, size=len(data))
        for _ in read_records(data, report):
            pass
        reports.append(report)
    return reports


def salvage(log_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[FileReport]:
    """Copy every good record of every event file under ``log_dir`` to the same place under ``out_dir``.

    An event file ``log_dir`` is copied to ``out_dir`` under its own name.
    """
    log_dir, out_dir = Path(log_dir), Path(out_dir)
    files = files_to_check(log_dir)
    run_dir = log_dir if log_dir.is_dir() else log_dir.parent
    targets = [out_dir / (path.relative_to(log_dir) if log_dir.is_dir() else path.name) for path in files]
    if out_dir.resolve() == run_dir.resolve() or any(t.resolve() == p.resolve() for t, p in zip(targets, files)):
        raise ValueError(
            f"--salvage {os.fspath(out_dir)!r} would overwrite the run; write the copy to another directory "
            f"(e.g. --salvage {run_dir.name}-salvaged)"
        )
    reports = []
    for path, target in zip(files, targets):
        data = path.read_bytes()
        report = FileReport(path, size=len(data))
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
        inside = report.path.is_relative_to(root) and report.path != Path(root)
        name = report.path.relative_to(root) if inside else report.path
        status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        lines.append(f"{name}: {report.records} good records, {report.size} bytes, {status}")
        for problem in report.problems:
            lines.append(f"  offset {problem.offset}: {problem.kind} ({problem.detail})")
    bad = sum(1 for r in reports if not r.ok)
    lines.append(f"{len(reports)} file(s) checked, {bad} with problems")
    return "\n".join(lines)
