"""attach() knows what it supports and says how to install a missing framework."""

from __future__ import annotations

import sys

import pytest

from trackers import Tracker
from trackers.adapters import ignite, lightning, transformers
from trackers.core.tracker import adapter_for
from trackers.optional import require


def test_an_unknown_loop_lists_what_is_supported():
    tracker = Tracker(None, callbacks=[], writer="memory")
    with pytest.raises(TypeError, match="ignite Engine .* Lightning Trainer .* transformers Trainer"):
        tracker.attach(object())
    tracker.close()


def test_recognised_by_class_path_without_importing_frameworks():
    def fake(module, name):
        return type(name, (), {"__module__": module})()

    assert adapter_for(fake("lightning.pytorch.trainer.trainer", "Trainer")) is lightning
    assert adapter_for(fake("pytorch_lightning.trainer.trainer", "Trainer")) is lightning
    assert adapter_for(fake("ignite.engine.engine", "Engine")) is ignite
    assert adapter_for(fake("transformers.trainer", "Trainer")) is transformers
    with pytest.raises(TypeError, match="don't know how to follow a my.own.Trainer"):
        adapter_for(fake("my.own", "Trainer"))


@pytest.mark.parametrize(
    "module, extra", [("lightning.pytorch", "lightning"), ("ignite.engine", "ignite"), ("transformers", "transformers")]
)
def test_a_missing_framework_names_the_pip_command(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModuleNotFoundError, match=rf"pip install 'looptrack\[{extra}\]'"):
        require(module)


def test_pytorch_lightning_package_works_too(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    import torch
    import torch.nn.functional as F
    from adapter_runs import data, loader, tiny_net
    from conftest import scalar_series

    from callbacks import LossLogger

    class Lit(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = tiny_net()

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = Lit()
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    Tracker(module, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path)).attach(trainer)
    trainer.fit(module, loader(data()[0]))
    assert [s for s, _ in scalar_series(tmp_path, "train/loss")] == [0, 1, 2]
