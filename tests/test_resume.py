"""Resuming at step T: later events are gone from the files, for every TensorBoard reader."""

from __future__ import annotations

import pytest
import torch
from conftest import scalar_series
from tensorboard.backend.event_processing import plugin_event_multiplexer

from callbacks import LossLogger
from trackers import TensorBoardWriter, Tracker


def _server_view(log_dir, tag):
    """What `tensorboard --load_fast=false` serves: the plugin event multiplexer."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(log_dir))
    multiplexer.Reload()
    return [
        (e.step, float(torch.tensor(list(e.tensor_proto.float_val) or [e.tensor_proto.double_val[0]])[0]))
        for e in multiplexer.Tensors(".", tag)
    ]


def test_resume_step_trims_what_came_after(tmp_path):
    with Tracker(None, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path)) as first:
        step = first.train_step(lambda v: torch.tensor(v))
        for _i in range(100):
            step(1.0)  # the crashed run got to step 99
    with Tracker(None, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path), resume_step=50) as second:
        step = second.train_step(lambda v: torch.tensor(v))
        for _i in range(30):
            step(2.0)  # resumed from the checkpoint of step 49
    expected = [(s, 1.0) for s in range(50)] + [(s, 2.0) for s in range(50, 80)]
    assert scalar_series(tmp_path, "train/loss") == expected
    assert _server_view(tmp_path, "train/loss") == expected


def test_writer_purge_step_trims_too(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    for s in range(10):
        writer.scalar("x", float(s), s)
    writer.close()
    writer = TensorBoardWriter(tmp_path, purge_step=4)
    writer.scalar("x", 40.0, 4)
    writer.close()
    assert scalar_series(tmp_path, "x") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_resume_step_is_checked():
    with pytest.raises(ValueError, match="resume_step must be a non-negative integer"):
        Tracker(None, writer="memory", resume_step=-1)
