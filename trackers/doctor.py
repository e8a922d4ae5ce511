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
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from trackers.writers.event_file import frame
from trackers.writers.event_file import masked_crc32c as _masked_crc32c

_HEADER = 12  # length (8) + its crc (4)
_FOOTER = 4


@dataclass
class Problem:
    offset: int
    kind: str  # "bad data crc", "bad length crc", "truncated"
    detail: str


@dataclass
class FileReport:
    path: Path
    records: int = 0
    size: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_records(data: bytes, report: FileReport) -> Iterator[bytes]:
    """Yield every record whose CRCs check, noting each problem; resynchronises after a bad header."""
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < _HEADER:
            report.problems.append(Problem(offset, "truncated", f"{end - offset} bytes, less than a record header"))
            return
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        if _masked_crc32c(header) != length_crc:
            start = offset
            offset = _next_record(data, offset + 1)
            report.problems.append(Problem(start, "bad length crc",
                                           f"{offset - start} bytes skipped to the next valid record"))
            continue
        record_end = offset + _HEADER + length + _FOOTER
        if record_end > end:
            report.problems.append(Problem(offset, "truncated", f"record of {length} bytes, only "
                                           f"{end - offset - _HEADER} present"))
            return
        payload = data[offset + _HEADER:offset + _HEADER + length]
        (data_crc,) = struct.unpack("<I", data[record_end - _FOOTER:record_end])
        if _masked_crc32c(payload) != data_crc:
            report.problems.append(Problem(offset, "bad data crc", f"record of {length} bytes skipped"))
        else:
            report.records += 1
            yield payload
        offset = record_end


def _next_record(data: bytes, offset: int) -> int:
    """The offset of the next complete record with good CRCs, or the end of the data."""
    end = len(data)
    while offset + _HEADER + _FOOTER <= end:
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        if (offset + _HEADER + length + _FOOTER <= end
                and struct.unpack("<I", data[offset + 8:offset + 12])[0] == _masked_crc32c(header)):
            payload = data[offset + _HEADER:offset + _HEADER + length]
            footer = data[offset + _HEADER + length:offset + _HEADER + length + _FOOTER]
            if struct.unpack("<I", footer)[0] == _masked_crc32c(payload):
                return offset
        offset += 1
    return end


def event_files(log_dir: str | os.PathLike[str]) -> list[Path]:
    return sorted(p for p in Path(log_dir).rglob("*") if p.is_file() and "tfevents" in p.name)


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
