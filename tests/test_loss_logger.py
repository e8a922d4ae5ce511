"""LossLogger: exact steps and means read back with TensorBoard's reader, and no host syncs between logs."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TinyNet, make_batches, scalar_series
from helpers import train_tutorial

from callbacks import LossLogger
from trackers import LooptrackWarning, MemoryWriter, Tracker
from trackers.tools.syncs import SyncCounter


def _losses(n: int) -> list[torch.Tensor]:
    return [torch.tensor(float(i) * 0.25 + 1.0) for i in range(n)]


def test_mean_loss_at_exactly_the_logging_steps(tmp_path):
    losses = _losses(230)
    with Tracker(None, callbacks=[LossLogger(every_n_steps=50)], writer=str(tmp_path / "run")) as tracker:
        step = tracker.train_step(lambda loss: loss)
        for epoch in tracker.epochs(2):
            for loss in losses[epoch * 115 : (epoch + 1) * 115]:
                step(loss)
    series = scalar_series(tmp_path / "run", "train/loss")
    assert [s for s, _ in series] == [49, 99, 149, 199]
    for logged_step, value in series:
        window = losses[logged_step - 49 : logged_step + 1]
        assert value == pytest.approx(sum(float(x) for x in window) / 50, rel=1e-6)


def test_numbers_as_losses_and_custom_tag(tmp_path):
    with Tracker(None, callbacks=[LossLogger(every_n_steps=2, tag="loss/train")], writer=str(tmp_path)) as tracker:
        step = tracker.train_step(lambda v: v)
        for v in (1.0, 3.0, 5, 7):
            step(v)
    assert scalar_series(tmp_path, "loss/train") == [(1, 2.0), (3, 6.0)]


def test_validation_loss_is_the_mean_of_the_pass(tmp_path):
    with Tracker(None, callbacks=[LossLogger(every_n_steps=10)], writer=str(tmp_path)) as tracker:
        train = tracker.train_step(lambda v: v)
        evaluate = tracker.eval_step(lambda v: {"loss": v})
        for epoch in tracker.epochs(2):
            for _ in range(10):
                train(torch.tensor(1.0))
            with tracker.validation():
                for v in (1.0, 2.0, 6.0):
                    evaluate(torch.tensor(v + epoch))
    assert scalar_series(tmp_path, "val/loss") == [(9, 3.0), (19, 4.0)]


def _tutorial_run(tracker: Tracker | None, steps: int, every_item: bool = False) -> SyncCounter:
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    batches = make_batches(steps)
    with SyncCounter() as counter:
        losses = train_tutorial(tracker, net, batches, optimizer=optimizer)
        if every_item:
            sum(loss.item() for loss in losses)  # the tutorial's running loss: one .item() a step
    return counter


def test_no_host_sync_on_steps_that_do_not_log_nor_on_those_that_do():
    bare = _tutorial_run(None, 120)
    tutorial = _tutorial_run(None, 120, every_item=True)
    writer = MemoryWriter()
    tracker = Tracker(None, callbacks=[LossLogger(every_n_steps=50)], writer=writer)
    tracked = _tutorial_run(tracker, 120)
    tracker.close()
    assert tutorial.syncs - bare.syncs == 120  # the counter sees the tutorial's loss.item()
    assert tracked.syncs == bare.syncs  # LossLogger adds none: the writer thread reads the value
    assert [s for s, _ in writer.series("train/loss")] == [49, 99]


def test_tracker_log_does_not_sync_the_caller(tmp_path):
    tracker = Tracker(None, callbacks=[], writer=str(tmp_path))
    value = torch.tensor(2.5) * 2
    with SyncCounter() as counter:
        tracker.log("custom/value", value, step=3)
        tracker.log("custom/number", 1.5)
    tracker.close()
    assert counter.syncs == 0
    assert scalar_series(tmp_path, "custom/value") == [(3, 5.0)]
    assert scalar_series(tmp_path, "custom/number") == [(0, 1.5)]


def test_nan_loss_is_logged_as_such_with_one_warning_naming_the_step(tmp_path):
    losses = [1.0] * 4 + [float("nan")] + [1.0] * 5 + [float("inf")] * 10
    with pytest.warns(LooptrackWarning) as caught:
        with Tracker(None, callbacks=[LossLogger(every_n_steps=5)], writer=str(tmp_path)) as tracker:
            step = tracker.train_step(lambda v: torch.tensor(v))
            for v in losses:
                step(v)
    messages = [str(w.message) for w in caught if "train/loss" in str(w.message)]
    assert len(messages) == 1
    assert "is nan at step 4" in messages[0] and "LossLogger" in messages[0]
    series = scalar_series(tmp_path, "train/loss")
    assert [s for s, _ in series] == [4, 9, 14, 19]
    assert math.isnan(series[0][1]) and series[1][1] == 1.0 and math.isinf(series[2][1])


def test_missing_loss_is_reported_once(tmp_path):
    with pytest.warns(LooptrackWarning, match="gave no loss"):
        with Tracker(None, callbacks=[LossLogger(every_n_steps=2)], writer="memory") as tracker:
            step = tracker.train_step(lambda: None)
            for _ in range(4):
                step()


def test_non_scalar_loss_is_skipped_with_the_fix():
    with pytest.warns(LooptrackWarning, match="reduction='mean'"):
        with Tracker(None, callbacks=[LossLogger(every_n_steps=1)], writer="memory") as tracker:
            tracker.train_step(lambda: torch.ones(3))()


@pytest.mark.parametrize("bad", [0, -5, 2.5, "10", True])
def test_bad_every_n_steps_fails_at_construction(bad):
    with pytest.raises(ValueError, match="LossLogger: every_n_steps must be a positive integer"):
        LossLogger(every_n_steps=bad)
