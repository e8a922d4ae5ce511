"""looptrack's own event file: TensorFlow's record format, read back by TensorBoard's reader."""

from __future__ import annotations

import os

import torch
from conftest import load_run
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboard_masked_crc32c

from trackers.tensorboard.event_file import EventFile, masked_crc32c
from trackers.writers.sinks.tensorboard import TensorBoardWriter


def test_checksum_is_tensorboards():
    for size in (0, 1, 7, 8, 9, 100, 4097):
        data = os.urandom(size)
        assert masked_crc32c(data) == tensorboard_masked_crc32c(data), size


def test_events_read_back_with_tensorboards_loader(tmp_path):
    events = EventFile(str(tmp_path))
    for step in range(3):
        events.add_event(Event(step=step, wall_time=1.5 + step))
    events.close()
    read = list(EventFileLoader(events.path).Load())
    assert read[0].file_version == "brain.Event:2"
    assert [(e.step, e.wall_time) for e in read[1:]] == [(0, 1.5), (1, 2.5), (2, 3.5)]


def test_two_files_in_one_directory_and_second_never_share_a_name(tmp_path):
    first, second = EventFile(str(tmp_path)), EventFile(str(tmp_path))
    assert first.path != second.path
    first.close()
    second.close()
    assert len(os.listdir(tmp_path)) == 2


def test_tensorboard_writer_writes_one_file_through_it(tmp_path):
    writer = TensorBoardWriter(tmp_path, flush_secs=60)
    writer.scalar("loss", 0.5, step=3)
    writer.histogram("weights", torch.arange(10.0), step=3)
    writer.close()
    files = os.listdir(tmp_path)
    assert len(files) == 1 and ".lt" in files[0]
    run = load_run(tmp_path)
    assert [(e.step, e.value) for e in run.Scalars("loss")] == [(3, 0.5)]
    assert run.Histograms("weights")[0].histogram_value.num == 10
