"""Pending records are bounded in bytes: large copies waiting for a slow sink never hold more than
``max_pending_bytes`` (plus one record); ``block`` loses nothing, ``drop_oldest`` counts and reports what it
dropped; arrays are copied at the call; NumPy arrays and lists go through the default histogram buckets."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from conftest import load_run

from trackers import LooptrackWarning, MemorySink, MemoryWriter, Sink, TensorBoardWriter, Writer
from trackers.writers.buffers import POOL

MIB = 2**20
BUDGET = 8 * MIB
RECORD = MIB  # one float32 tensor of 262,144 values
LOGGED = 50


class SlowSink(Sink):
    """Takes its time over every histogram and image, like a backend on a slow disk; keeps only the steps."""

    keeps_values = False

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.steps: list[int | None] = []

    def _slow(self, record) -> None:
        time.sleep(self.delay)
        self.steps.append(record.step)

    write_histogram_raw = write_image = _slow


class GatedSink(Sink):
    """Blocks on the first record it is given until ``gate`` is set: what is queued behind it waits."""

    keeps_values = False

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.steps: list[int | None] = []

    def _gated(self, record) -> None:
        assert self.gate.wait(30), "the test never opened the gate"
        self.steps.append(record.step)

    write_histogram_raw = write_image = _gated


class GatedMemorySink(MemorySink):
    """A MemorySink whose writer thread is held on the first scalar until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def write_scalar(self, record) -> None:
        assert self.gate.wait(30), "the test never opened the gate"
        self._keep(record)


def log_one(writer: Writer, kind: str, step: int) -> None:
    """One record holding RECORD bytes of host copies: a histogram of a CPU tensor, or a CHW image."""
    if kind == "histogram":
        writer.histogram("h", torch.rand(RECORD // 4), step)
    else:
        writer.image("i", torch.rand(1, 512, 512), step)


@pytest.mark.parametrize("kind", ["histogram", "image"])
def test_block_bounds_the_pending_bytes_and_loses_nothing(kind):
    sink = SlowSink(0.01)
    writer = Writer(sink, max_pending_bytes=BUDGET, when_full="block")
    peak = 0
    for step in range(LOGGED):
        log_one(writer, kind, step)
        peak = max(peak, writer.pending_bytes)
    writer.close()
    assert peak <= BUDGET + RECORD
    assert peak >= BUDGET // 2  # the budget was reached: logging outran the sink
    assert sink.steps == list(range(LOGGED))
    assert writer.dropped == 0
    assert writer.pending_bytes == 0


@pytest.mark.parametrize("kind", ["histogram", "image"])
def test_drop_oldest_bounds_the_pending_bytes_counts_and_reports(kind):
    sink = GatedSink()  # nothing is written while logging: the queue must drop to stay within the budget
    writer = Writer(sink, max_pending_bytes=BUDGET, when_full="drop_oldest")
    peak = 0
    with pytest.warns(LooptrackWarning) as caught:
        for step in range(LOGGED):
            log_one(writer, kind, step)
            peak = max(peak, writer.pending_bytes)
        sink.gate.set()
        writer.close()
    assert peak <= BUDGET + RECORD
    assert writer.dropped >= LOGGED - BUDGET // RECORD - 1
    assert len(sink.steps) + writer.dropped == LOGGED
    assert sink.steps == sorted(sink.steps) and sink.steps[-1] == LOGGED - 1  # the newest survive
    messages = " ".join(str(w.message) for w in caught)
    assert "dropping the oldest waiting records" in messages
    assert f"{writer.dropped} record(s) were dropped" in messages
    assert writer.pending_bytes == 0


def test_dropped_records_give_their_copies_back_to_the_pool():
    """Dropping a record frees its host copy for the next one (pooled), instead of leaving it to the garbage
    collector while the next call faults in fresh pages."""
    values = torch.rand(RECORD // 4 - 1)  # a shape of its own in the process-wide pool
    sink = GatedSink()
    writer = Writer(sink, max_pending_bytes=4 * MIB, when_full="drop_oldest")
    before = POOL.pooled_bytes
    with pytest.warns(LooptrackWarning):
        for step in range(20):
            writer.histogram("h", values, step)
        dropped, pooled = writer.dropped, POOL.pooled_bytes - before
        sink.gate.set()
        writer.close()
    assert dropped > 0
    assert pooled >= values.nbytes, f"{dropped} records dropped, but none of their copies is back in the pool"


def test_arrays_are_copied_at_the_call():
    sink = GatedMemorySink()
    writer = Writer(sink)
    writer.scalar("gate", 0.0, 0)  # the writer thread waits on this one: nothing below is read before the gate opens
    small = np.full((3, 8, 8), 200, dtype=np.uint8)  # under the pooling size: a plain copy
    large = np.full((3, 128, 128), 0.25, dtype=np.float32)  # 192 KiB: a pooled copy
    tensor = torch.full((3, 128, 128), 0.5)
    tensorflow_bins = np.arange(1000, dtype=np.float64)
    numpy_bins = np.arange(1000, dtype=np.float64)
    writer.image("small", small, 1)
    small[:] = 0
    writer.image("large", large, 1)
    large[:] = 1.0
    writer.image("tensor", tensor, 1)
    tensor.fill_(1.0)
    writer.histogram("tensorflow_bins", tensorflow_bins, 1)
    tensorflow_bins[:] = -5.0
    writer.histogram("numpy_bins", numpy_bins, 1, bins=10)
    numpy_bins[:] = -5.0
    sink.gate.set()
    writer.close()
    assert writer.errors == 0
    images = {r.tag: np.asarray(r.image) for r in sink.records if r.kind == "image"}
    assert np.all(images["small"] == 200) and images["small"].shape == (3, 8, 8)
    assert np.all(images["large"] == 0.25) and images["large"].shape == (3, 128, 128)
    assert np.all(images["tensor"] == 0.5)
    histograms = {r.tag: r for r in sink.records if r.kind == "histogram_raw"}
    for tag in ("tensorflow_bins", "numpy_bins"):
        h = histograms[tag]
        assert (h.min, h.max, h.num, h.sum) == (0.0, 999.0, 1000.0, 499_500.0), tag
        assert sum(h.bucket_counts) == 1000, tag


def test_numpy_arrays_and_lists_take_the_default_buckets():
    writer = MemoryWriter(strict=True)
    values = np.random.default_rng(0).random((100, 100))
    writer.histogram("array", values, 0)
    writer.histogram("list", [1, 2, 3, 3], 0)
    writer.histogram("float32", values.astype(np.float32), 0)
    writer.flush()
    histograms = {r.tag: r for r in writer.records if r.kind == "histogram_raw"}
    writer.close()
    assert set(histograms) == {"array", "list", "float32"}
    for tag in ("array", "float32"):
        h = histograms[tag]
        assert h.num == 10_000 and sum(h.bucket_counts) == 10_000, tag
        assert h.min == pytest.approx(values.min()) and h.max == pytest.approx(values.max()), tag
    h = histograms["list"]
    assert (h.min, h.max, h.num, h.sum, h.sum_squares) == (1.0, 3.0, 4.0, 9.0, 23.0)
    assert sum(h.bucket_counts) == 4


def test_numpy_histogram_reaches_tensorboard(tmp_path):
    writer = TensorBoardWriter(str(tmp_path), strict=True)
    writer.histogram("h", np.random.rand(100, 100), 0)
    writer.histogram("l", [0.5, 1.5, 1.5], 1)
    writer.close()
    run = load_run(tmp_path)
    (h,) = run.Histograms("h")
    assert h.step == 0 and h.histogram_value.num == 10_000
    (from_list,) = run.Histograms("l")
    assert from_list.step == 1 and from_list.histogram_value.num == 3
    assert from_list.histogram_value.sum == pytest.approx(3.5)


def test_a_deferred_result_that_is_its_pooled_copy_is_never_reused_while_read():
    """on_device(fn) where fn returns its argument: the result must not go back to the pool and be overwritten."""
    import torch

    from trackers.writers.transfer import Deferred

    first = Deferred.on_device(lambda t: t, torch.full((20_000,), 1.0))
    assert float(first()[0]) == 1.0
    second = Deferred.on_device(lambda t: t, torch.full((20_000,), 2.0))  # would reuse the buffer if given back
    assert float(second()[0]) == 2.0
    assert float(first()[0]) == 1.0 and float(first()[-1]) == 1.0
