"""A bounded queue in front of a slow writer: blocking keeps everything, dropping keeps training going."""

from __future__ import annotations

import threading
import time
import tracemalloc

import pytest

from trackers import LooptrackWarning, Sink, Writer


class SlowSink(Sink):
    """Takes its time over every record, like a backend on a slow disk or network."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.written: list[int] = []

    def write_scalar(self, record) -> None:
        time.sleep(self.delay)
        self.written.append(record.step)


def SlowWriter(delay: float, **options) -> Writer:
    writer = Writer(SlowSink(delay), **options)
    writer.written = writer.sinks[0].written
    return writer


def test_block_policy_loses_nothing_and_bounds_the_queue():
    writer = SlowWriter(0.0005, max_pending=50, when_full="block")
    peak = 0
    for step in range(2_000):
        writer.scalar("x", 1.0, step)
        peak = max(peak, writer.pending)
    writer.close()
    assert peak <= 50
    assert writer.written == list(range(2_000)) and writer.dropped == 0


def test_drop_oldest_policy_never_waits_counts_and_reports():
    writer = SlowWriter(0.001, max_pending=100, when_full="drop_oldest")
    with pytest.warns(LooptrackWarning) as caught:
        for step in range(100_000):
            writer.scalar("x", 1.0, step)
        writer.close()
    messages = " ".join(str(w.message) for w in caught)
    assert "dropping the oldest waiting records" in messages
    assert f"{writer.dropped} record(s) were dropped" in messages
    assert writer.dropped > 90_000
    assert len(writer.written) + writer.dropped == 100_000
    assert writer.written[-1] == 99_999  # the newest records survive
    assert writer.written == sorted(writer.written)


def test_memory_stays_flat_over_100k_steps_with_a_slow_writer():
    writer = SlowWriter(0.001, max_pending=1_000, when_full="drop_oldest")
    with pytest.warns(LooptrackWarning):
        tracemalloc.start()
        for step in range(10_000):
            writer.scalar("x", 1.0, step)
        after_10k = tracemalloc.get_traced_memory()[0]
        for step in range(10_000, 100_000):
            writer.scalar("x", 1.0, step)
        after_100k = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        writer.close()
    # the written list grows by a few hundred ints; the queue itself does not grow
    assert after_100k - after_10k < 512 * 1024


def test_flush_is_never_dropped():
    writer = SlowWriter(0.002, max_pending=5, when_full="drop_oldest")
    done = threading.Event()
    with pytest.warns(LooptrackWarning):
        for step in range(20):
            writer.scalar("x", 1.0, step)
        flusher = threading.Thread(target=lambda: (writer.flush(), done.set()))
        flusher.start()
        for step in range(20, 200):
            writer.scalar("x", 1.0, step)
        assert done.wait(30)
        writer.close()


def test_bad_policy_is_rejected():
    with pytest.raises(ValueError, match="when_full must be one of block, drop_oldest"):
        SlowWriter(0.0, when_full="spill")
