"""Tracker.attach(ignite Engine, evaluator=...) writes what the decorator run writes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adapter_runs import EPOCHS, callbacks, data, decorator_run, loader, tiny_net, values, written
from trackers import Tracker

ignite_engine = pytest.importorskip("ignite.engine")
Events = ignite_engine.Events


def _engines(net):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = ignite_engine.create_supervised_trainer(
        net, optimizer, F.cross_entropy,
        output_transform=lambda x, y, y_pred, loss: {"loss": loss, "y_pred": y_pred, "y": y})
    evaluator = ignite_engine.create_supervised_evaluator(net)
    return trainer, evaluator


def test_ignite_run_equals_the_decorator_run(tmp_path):
    reference = decorator_run(tmp_path / "decorator", val_loss=False)
    net = tiny_net()
    trainer, evaluator = _engines(net)
    train, val = data()

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):
        evaluator.run(loader(val))

    cbs, recorder = callbacks()
    tracker = Tracker(net, callbacks=cbs, writer=str(tmp_path / "ignite")).attach(trainer, evaluator=evaluator)
    trainer.run(loader(train), max_epochs=EPOCHS)
    assert tracker.closed
    assert written(tmp_path / "ignite") == written(tmp_path / "decorator")
    assert recorder.calls == reference.calls
    assert values(tmp_path / "ignite", "train/loss") == pytest.approx(values(tmp_path / "decorator", "train/loss"),
                                                                      rel=1e-5)


def test_default_float_output_still_logs_the_loss(tmp_path):
    net = tiny_net()
    trainer = ignite_engine.create_supervised_trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), F.cross_entropy)
    cbs, _ = callbacks()
    Tracker(net, callbacks=cbs[:1], writer=str(tmp_path)).attach(trainer)
    train, _ = data()
    trainer.run(loader(train), max_epochs=2)
    assert written(tmp_path)["train/loss"] == [1, 3, 5]


def test_an_exception_ends_the_run_and_propagates(tmp_path):
    net = tiny_net()
    trainer, _ = _engines(net)

    @trainer.on(Events.ITERATION_COMPLETED(once=2))
    def explode(engine):
        raise RuntimeError("handler failed")

    cbs, recorder = callbacks()
    tracker = Tracker(net, callbacks=cbs, writer=str(tmp_path)).attach(trainer)
    train, _ = data()
    with pytest.raises(RuntimeError, match="handler failed"):
        trainer.run(loader(train), max_epochs=1)
    assert tracker.closed and recorder.calls[-1][0] == "on_train_end"
