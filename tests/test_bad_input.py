"""The bad-input catalogue: each gets a clear message naming the culprit, and training goes on."""

from __future__ import annotations

import pytest
import torch

from callbacks import ImageGrid, LossLogger, PRCurves, PredictionFigure
from trackers import LooptrackWarning, MemoryWriter, Tracker
from trackers.tools.demo import CLASSES, TutorialNet


def _messages(caught) -> str:
    return " | ".join(str(w.message) for w in caught)


def test_empty_batches(tmp_path):
    net = TutorialNet()
    callbacks = [LossLogger(every_n_steps=1), PredictionFigure(CLASSES, every_n_steps=1), ImageGrid(every_n_steps=1)]
    with pytest.warns(LooptrackWarning) as caught:
        with Tracker(net, callbacks=callbacks, writer=str(tmp_path)) as tracker:
            step = tracker.train_step(lambda x, y: torch.nn.functional.cross_entropy(net(x), y))
            step(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))
            step(torch.rand(2, 1, 28, 28), torch.tensor([1, 2]))
    text = _messages(caught)
    assert "PredictionFigure: the batch at step 0 is empty" in text
    assert "ImageGrid: the batch at step 0 is empty" in text
    assert "'train/loss' (from LossLogger, mean of steps 0-0) is nan at step 0" in text
    assert tracker.step == 1


@pytest.mark.parametrize("outputs", [torch.tensor([[1, 0, 0], [0, 1, 0]]), torch.tensor([[True, False, False]] * 2)])
def test_integer_and_bool_outputs(outputs):
    with pytest.warns(LooptrackWarning) as caught:
        with Tracker(None, callbacks=[PRCurves(["a", "b", "c"])], writer="memory") as tracker:
            tracker.eval_step(lambda: {"outputs": outputs, "targets": torch.tensor([0, 1])})()
    assert f"PRCurves: outputs are {outputs.dtype}; PRCurves needs class scores" in _messages(caught)


def test_prediction_figure_with_targets_out_of_range_is_reported_by_the_writer():
    net = TutorialNet()
    writer = MemoryWriter()
    with pytest.warns(LooptrackWarning, match="PredictionFigure: target 12 is outside the 10 classes"):
        with Tracker(net, callbacks=[PredictionFigure(CLASSES, every_n_steps=1)], writer=writer) as tracker:
            step = tracker.train_step(lambda x, y: net(x).sum())
            step(torch.rand(2, 1, 28, 28), torch.tensor([12, 1]))
            step(torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    assert tracker.step == 1 and len(writer.records) == 1  # the second figure was drawn


def test_a_figure_that_fails_to_render():
    def broken():
        raise RuntimeError("no such font")

    writer = MemoryWriter()
    with pytest.warns(LooptrackWarning, match="could not write figure 'f' at step 3: RuntimeError: no such font"):
        writer.figure("f", broken, 3)
        writer.scalar("after", 1.0, 4)
        writer.close()
    assert writer.series("after") == [(4, 1.0)]
