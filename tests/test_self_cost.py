"""What looptrack costs the training thread: measured by the Tracker itself, logged and printed when asked; and the
forward hooks that slow every call of the model kept off it when no callback reads the outputs."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyNet, make_batches
from helpers import train_tutorial

from callbacks import Callback, Every, LossLogger
from trackers import MemoryWriter, Tracker

COST_TAGS = {
    "looptrack/train_thread_ms",
    "looptrack/per_step_us",
    "looptrack/eval_ms",
    "looptrack/loop_percent",
    "looptrack/waited_s",
}
STEPS = 12


def _run(report_cost: bool, callbacks=None) -> tuple[Tracker, MemoryWriter]:
    net = TinyNet()
    writer = MemoryWriter()
    tracker = Tracker(net, callbacks=callbacks or [LossLogger(every_n_steps=4)], writer=writer, report_cost=report_cost)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with tracker:
        train_tutorial(tracker, net, make_batches(STEPS), optimizer=optimizer, val=make_batches(2, seed=1))
    return tracker, writer


def test_the_cost_scalars_are_logged_at_the_end_with_plausible_values(capsys):
    tracker, writer = _run(report_cost=True)
    assert COST_TAGS <= writer.tags("scalar")
    values = {tag: writer.series(tag) for tag in COST_TAGS}
    assert all(points == [(STEPS - 1, points[0][1])] for points in values.values()), values  # once, at the end
    total_ms = values["looptrack/train_thread_ms"][0][1]
    per_step_us = values["looptrack/per_step_us"][0][1]
    assert total_ms > 0 and per_step_us > 0
    assert per_step_us / 1e3 < total_ms  # a step's share is less than the whole
    assert values["looptrack/eval_ms"][0][1] > 0  # the validation batches are counted apart
    assert 0 < values["looptrack/loop_percent"][0][1] < 100
    assert values["looptrack/waited_s"][0][1] >= 0
    figures = tracker.cost.figures()
    assert figures.steps == STEPS
    assert figures.total_ns >= figures.step_ns + figures.eval_ns
    capsys.readouterr()


def test_report_cost_prints_one_line_at_close(capsys):
    _run(report_cost=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"looptrack: {STEPS} steps, ") and " us a step " in lines[0]


def test_by_default_nothing_is_printed_or_logged_but_the_cost_is_measured(capsys):
    tracker, writer = _run(report_cost=False)
    assert capsys.readouterr() == ("", "")
    assert not [tag for tag in writer.tags() if tag.startswith("looptrack/")]
    assert writer.series("train/loss")  # the run itself is logged as ever
    figures = tracker.cost.figures()
    assert figures.steps == STEPS and figures.step_ns > 0 and figures.per_step_ns > 0


def test_entry_points_a_loop_adapter_drives_are_counted_once_training_and_evaluation_apart():
    tracker = Tracker(None, callbacks=[LossLogger(every_n_steps=2)], writer=MemoryWriter())
    tracker.epoch_start()
    for _ in range(3):
        batch = tracker.batch_start(torch.zeros(2), None)
        tracker.batch_end(batch, loss=torch.tensor(1.0))
    training = tracker.cost.figures()
    tracker.validation_start()
    batch = tracker.batch_start(torch.zeros(2), None, validation=True)
    tracker.batch_end(batch, loss=torch.tensor(2.0))
    tracker.validation_end()
    tracker.close()
    figures = tracker.cost.figures()
    assert training.steps == figures.steps == 3 and training.step_ns > 0 and training.eval_ns == 0
    assert figures.step_ns == training.step_ns  # the evaluation pass added nothing to the steps' time
    assert figures.eval_ns > 0 and figures.other_ns > training.other_ns
    assert tracker.cost.depth == 0


def test_report_cost_must_be_a_bool():
    with pytest.raises(TypeError, match="report_cost must be True or False"):
        Tracker(None, callbacks=[], writer=MemoryWriter(), report_cost="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ forward hooks only where they are read
class EveryOther(Callback):
    """Reads the outputs on every second step."""

    def __init__(self) -> None:
        self.every = Every(2)
        self.outputs: list[tuple[int, torch.Tensor | None]] = []

    def on_train_batch_end(self, state, batch):
        self.outputs.append((state.step, batch.outputs))


def _hooks(net: torch.nn.Module) -> int:
    return len(net._forward_hooks) + len(net._forward_pre_hooks)


def test_no_forward_hook_stays_on_the_model_when_no_callback_reads_outputs():
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with Tracker(net, callbacks=[LossLogger(every_n_steps=2)], writer=MemoryWriter()) as tracker:
        train_tutorial(tracker, net, make_batches(4), optimizer=optimizer)
        assert _hooks(net) == 0  # the first call's inputs are kept, then the model goes the fast way
        assert tracker.first_inputs is not None and tracker.first_inputs[0].shape == (8, 8)


def test_outputs_are_kept_on_the_steps_a_reading_callback_gets():
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reader = EveryOther()
    with Tracker(net, callbacks=[reader, LossLogger(every_n_steps=2)], writer=MemoryWriter()) as tracker:
        train_tutorial(tracker, net, make_batches(4), optimizer=optimizer)
    assert [step for step, _ in reader.outputs] == [1, 3]
    assert all(isinstance(outputs, torch.Tensor) and outputs.shape == (8, 3) for _, outputs in reader.outputs)
    assert _hooks(net) == 0


def test_loss_fn_keeps_the_outputs_of_every_batch():
    net = TinyNet()
    writer = MemoryWriter()
    loss_fn = torch.nn.functional.cross_entropy
    with Tracker(net, callbacks=[LossLogger(every_n_steps=1)], writer=writer, loss_fn=loss_fn) as tracker:

        @tracker.train_step
        def step(x, y):
            net(x)  # no loss returned: loss_fn computes it from the outputs the hook kept

        for x, y in make_batches(2):
            step(x, y)
    assert [step for step, _ in writer.series("train/loss")] == [0, 1]
