"""Tracker.attach(lightning.Trainer) writes what the decorator run writes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adapter_runs import EPOCHS, callbacks, data, decorator_run, loader, tiny_net, values, written
from trackers import Tracker

pl = pytest.importorskip("lightning.pytorch")
pytestmark = pytest.mark.slow


class Lit(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(**overrides):
    options = dict(max_epochs=EPOCHS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu", devices=1, num_sanity_val_steps=2)
    options.update(overrides)
    return pl.Trainer(**options)


def test_lightning_run_equals_the_decorator_run(tmp_path):
    reference = decorator_run(tmp_path / "decorator")
    module = Lit()
    cbs, recorder = callbacks()
    tracker = Tracker(module, callbacks=cbs, writer=str(tmp_path / "lightning"))
    trainer = _trainer()
    assert tracker.attach(trainer) is tracker
    train, val = data()
    trainer.fit(module, loader(train), loader(val))
    assert tracker.closed
    assert written(tmp_path / "lightning") == written(tmp_path / "decorator")
    assert recorder.calls == reference.calls
    for tag in ("train/loss", "val/loss"):
        assert values(tmp_path / "lightning", tag) == pytest.approx(values(tmp_path / "decorator", tag), rel=1e-5)


def test_an_exception_in_fit_ends_the_run_and_propagates(tmp_path):
    class Broken(Lit):
        def training_step(self, batch, batch_idx):
            if batch_idx == 1:
                raise RuntimeError("boom in training_step")
            return super().training_step(batch, batch_idx)

    module = Broken()
    cbs, recorder = callbacks()
    tracker = Tracker(module, callbacks=cbs, writer=str(tmp_path))
    trainer = _trainer()
    tracker.attach(trainer)
    train, val = data()
    with pytest.raises(RuntimeError, match="boom in training_step"):
        trainer.fit(module, loader(train), loader(val))
    assert tracker.closed and recorder.calls[-1][0] == "on_train_end"
