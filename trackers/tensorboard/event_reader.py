"""Reading an event file's records: each TFRecord's CRCs checked, bad ones noted with their offset, and the
reader resynchronised after a bad header (TensorBoard's own readers stop at the first bad record)."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from trackers.tensorboard.event_file import masked_crc32c

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
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[offset + 8 : offset + 12])
        if masked_crc32c(header) != length_crc:
            start = offset
            offset = _next_record(data, offset + 1)
            report.problems.append(
                Problem(start, "bad length crc", f"{offset - start} bytes skipped to the next valid record")
            )
            continue
        record_end = offset + _HEADER + length + _FOOTER
        if record_end > end:
            report.problems.append(
                Problem(offset, "truncated", f"record of {length} bytes, only {end - offset - _HEADER} present")
            )
            return
        payload = data[offset + _HEADER : offset + _HEADER + length]
        (data_crc,) = struct.unpack("<I", data[record_end - _FOOTER : record_end])
        if masked_crc32c(payload) != data_crc:
            report.problems.append(Problem(offset, "bad data crc", f"record of {length} bytes skipped"))
        else:
            report.records += 1
            yield payload
        offset = record_end


def _next_record(data: bytes, offset: int) -> int:
    """The offset of the next complete record with good CRCs, or the end of the data."""
    end = len(data)
    while offset + _HEADER + _FOOTER <= end:
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        if offset + _HEADER + length + _FOOTER <= end and struct.unpack("<I", data[offset + 8 : offset + 12])[
            0
        ] == masked_crc32c(header):
            payload = data[offset + _HEADER : offset + _HEADER + length]
            footer = data[offset + _HEADER + length : offset + _HEADER + length + _FOOTER]
            if struct.unpack("<I", footer)[0] == masked_crc32c(payload):
                return offset
        offset += 1
    return end


def event_files(log_dir: str | os.PathLike[str]) -> list[Path]:
    return sorted(p for p in Path(log_dir).rglob("*") if p.is_file() and "tfevents" in p.name)
