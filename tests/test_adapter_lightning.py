"""Tracker.attach(lightning.Trainer) writes what the decorator run writes."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from adapter_runs import callbacks, data, decorator_run, lightning_trainer, loader, tiny_net, values, written

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
    return lightning_trainer(**{"num_sanity_val_steps": 2, **overrides})


def test_lightning_run_equals_the_decorator_run(tmp_path):
    reference = decorator_run(tmp_path / "decorator")
    module = Lit()
    cbs, recorder = callbacks()
    tracker = Tracker(module, callbacks=cbs, writer=str(tmp_path / "lightning"))
    trainer = _trainer()
    assert tracker.attach(trainer) is tracker
    train, val = data()
    trainer.fit(module, loader(train), loader(val))
    assert not tracker.closed  # test() or validate() may follow; close() ends the run
    tracker.close()
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


# ------------------------------------------------------------ Lightning's own idioms
from conftest import load_run  # noqa: E402

from callbacks import LearningRate, LossLogger, ParameterHistograms  # noqa: E402


class Basics(pl.LightningModule):
    """As Lightning's "basics" examples: self.log in the steps, validation_step returns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()
        self.returned: list[float] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.returned.append(loss.item())
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_logged_val_loss_on_lightnings_own_axis_and_test_after_fit(tmp_path):
    module = Basics()
    own = pl.loggers.CSVLogger(str(tmp_path), name="lightning_own")
    trainer = _trainer(logger=own, log_every_n_steps=2, num_sanity_val_steps=0)
    train, val = data()
    with Tracker(module, callbacks=[LossLogger(every_n_steps=2)], writer=str(tmp_path / "ours")) as tracker:
        tracker.attach(trainer)
        trainer.fit(module, loader(train), loader(val))
        val_loss = float(trainer.callback_metrics["val_loss"])
        tested = trainer.test(module, loader(val), verbose=False)
    import csv

    with open(f"{own.log_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    lightning_train_steps = [int(r["step"]) for r in rows if r.get("train_loss")]
    lightning_val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r.get("val_loss")]
    run = load_run(tmp_path / "ours")
    assert [e.step for e in run.Scalars("train/loss")] == lightning_train_steps == [1, 3, 5]
    assert [(e.step, e.value) for e in run.Scalars("val/loss")] == [
        (s, pytest.approx(v, rel=1e-6)) for s, v in lightning_val
    ]
    assert run.Scalars("val/loss")[-1].value == pytest.approx(val_loss, rel=1e-6)
    assert [(e.step, e.value) for e in run.Scalars("test/loss")] == [
        (5, pytest.approx(tested[0]["test_loss"], rel=1e-6))
    ]


def test_gradient_accumulation_logs_the_step_loss_not_the_scaled_one(tmp_path):
    module = Basics()
    trainer = _trainer(max_epochs=1, accumulate_grad_batches=2, num_sanity_val_steps=0, limit_val_batches=0)
    train = data()[0] * 2  # 6 batches: 3 optimizer steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(module, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path)) as tracker:
            tracker.attach(trainer)
            trainer.fit(module, loader(train))
    assert not [w for w in caught if "step_on" in str(w.message)]  # the plain loop's advice is not Lightning's
    assert trainer.global_step == 3
    points = [(e.step, e.value) for e in load_run(tmp_path).Scalars("train/loss")]
    returned = module.returned
    assert points == [(i, pytest.approx((returned[2 * i] + returned[2 * i + 1]) / 2, rel=1e-5)) for i in range(3)]


class RecordsGradients(Basics):
    """Basics, keeping each optimizer step's gradients as Lightning hands them to the optimizer (after backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.gradients: dict[int, dict[str, torch.Tensor]] = {}

    def on_before_optimizer_step(self, optimizer):
        # inside optimizer.step(closure): after this step's training_step and backward, before the update
        self.gradients[self.trainer.global_step] = {
            name: p.grad.detach().clone() for name, p in self.named_parameters() if p.grad is not None
        }


def test_gradients_and_the_learning_rate_of_the_optimizer_lightning_made(tmp_path):
    module = RecordsGradients()
    trainer = _trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    train, _ = data()
    with Tracker(
        module, callbacks=[ParameterHistograms(every_n_steps=1), LearningRate(every_n_steps=1)], writer=str(tmp_path)
    ) as tracker:
        tracker.attach(trainer)
        trainer.fit(module, loader(train))
    run = load_run(tmp_path)
    names = [name for name, _ in module.named_parameters()]
    assert sorted(run.Tags()["histograms"]) == sorted(
        [f"parameters/{n}" for n in names] + [f"gradients/{n}" for n in names]
    )
    assert sorted(module.gradients) == [0, 1, 2] and all(set(g) == set(names) for g in module.gradients.values())
    for name in names:
        events = run.Histograms(f"gradients/{name}")
        assert [e.step for e in events] == [0, 1, 2]
        for event in events:  # the gradients of that step's own backward, not of the step before it
            expected = module.gradients[event.step][name].double()
            value = event.histogram_value
            assert value.num == expected.numel()
            assert value.sum == pytest.approx(expected.sum().item(), rel=1e-6, abs=1e-9)
            assert value.sum_squares == pytest.approx(expected.square().sum().item(), rel=1e-6)
            assert (value.min, value.max) == pytest.approx((expected.min().item(), expected.max().item()), rel=1e-6)
    assert [(e.step, round(e.value, 6)) for e in run.Scalars("lr")] == [(0, 0.1), (1, 0.1), (2, 0.1)]
