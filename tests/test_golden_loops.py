"""Golden run: one TinyNet, one data set, one optimizer, through the decorator, Lightning, ignite and transformers.

Each loop is written the way its own docs write it; the Tracker follows it. Every run must write the same tags
with the same number of points, each on its own loop's x axis, and where the math is the same the same values.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adapter_runs import (
    BATCH,
    EPOCHS,
    TRAIN_BATCHES,
    VAL_BATCHES,
    callbacks,
    data,
    dataset,
    decorator_run,
    lightning_trainer,
    loader,
    tiny_net,
)
from conftest import load_run
from helpers import RecordingCallback, train_tutorial

from trackers import Tracker

pl = pytest.importorskip("lightning.pytorch")
ignite_engine = pytest.importorskip("ignite.engine")
ignite_metrics = pytest.importorskip("ignite.metrics")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

CLASSES = ["a", "b", "c"]


# (a) the decorator is adapter_runs.decorator_run: the tutorial's loop with @tracker.train_step / @tracker.eval_step


# ----------------------------------------------------------------------------------------------- (b) Lightning
class LitTiny(pl.LightningModule):
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
        loss = F.cross_entropy(self(x), y)
        self.log("val_loss", loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def lightning_loop(log_dir) -> RecordingCallback:
    module = LitTiny()
    cbs, recorder = callbacks()
    tracker = Tracker(module, callbacks=cbs, writer=str(log_dir))
    trainer = lightning_trainer(num_sanity_val_steps=0)
    tracker.attach(trainer)
    train, val = data()
    trainer.fit(module, loader(train), loader(val))
    tracker.close()
    return recorder


# -------------------------------------------------------------------------------------------------- (c) ignite
def ignite_loop(log_dir) -> RecordingCallback:
    net = tiny_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = ignite_engine.create_supervised_trainer(net, optimizer, F.cross_entropy)
    evaluator = ignite_engine.create_supervised_evaluator(net, metrics={"loss": ignite_metrics.Loss(F.cross_entropy)})
    train, val = data()

    @trainer.on(ignite_engine.Events.EPOCH_COMPLETED)
    def validate(engine):
        evaluator.run(loader(val))

    cbs, recorder = callbacks()
    tracker = Tracker(net, callbacks=cbs, writer=str(log_dir))
    tracker.attach(trainer, evaluator=evaluator)
    trainer.run(loader(train), max_epochs=EPOCHS)
    tracker.close()
    return recorder


# -------------------------------------------------------------------------------------------- (d) transformers
class TinyClassifier(torch.nn.Module):
    """TinyNet with the transformers calling convention: forward(x, labels=None) -> {"loss", "logits"}."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()

    def forward(self, x, labels=None):
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


class DictData(torch.utils.data.Dataset):
    def __init__(self, batches) -> None:
        self.data = dataset(batches)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return {"x": x, "labels": y}


if "train_sampling_strategy" in inspect.signature(transformers.TrainingArguments).parameters:
    IN_ORDER, InOrderTrainer = {"train_sampling_strategy": "sequential"}, transformers.Trainer  # transformers 5
else:

    class InOrderTrainer(transformers.Trainer):  # older transformers: no option, the sampler is a method
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    IN_ORDER = {}


def transformers_loop(log_dir, out_dir) -> tuple[RecordingCallback, transformers.Trainer]:
    model = TinyClassifier()
    train, val = data()
    args = transformers.TrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        optim="sgd",
        learning_rate=0.1,
        lr_scheduler_type="constant",
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        max_grad_norm=0.0,  # the same math as the other loops: no clipping
        **IN_ORDER,
    )
    trainer = InOrderTrainer(model=model, args=args, train_dataset=DictData(train), eval_dataset=DictData(val))
    cbs, recorder = callbacks()
    tracker = Tracker(model, callbacks=cbs, writer=str(log_dir))
    tracker.attach(trainer)
    trainer.train()
    tracker.close()
    return recorder, trainer


# ------------------------------------------------------------------------------------------------------ the test
def _read(log_dir):
    run = load_run(log_dir)
    tags = run.Tags()
    steps = {tag: [e.step for e in run.Scalars(tag)] for tag in tags["scalars"]}
    steps.update({tag: [e.step for e in run.Tensors(tag)] for tag in tags["tensors"]})
    scalars = {tag: [e.value for e in run.Scalars(tag)] for tag in tags["scalars"]}
    curves = {tag: [tf_tensor(e) for e in run.Tensors(tag)] for tag in tags["tensors"]}
    return steps, scalars, curves


def tf_tensor(event):
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto)


def test_golden_run_through_every_loop(tmp_path):
    recorders = {
        "decorator": decorator_run(tmp_path / "decorator"),
        "lightning": lightning_loop(tmp_path / "lightning"),
        "ignite": ignite_loop(tmp_path / "ignite"),
    }
    recorders["transformers"], hf_trainer = transformers_loop(tmp_path / "transformers", tmp_path / "hf_out")
    runs = {name: _read(tmp_path / name) for name in recorders}
    steps = {name: run[0] for name, run in runs.items()}
    scalars = {name: run[1] for name, run in runs.items()}
    curves = {name: run[2] for name, run in runs.items()}

    # the same tags, the same number of points per tag, in every run
    expected_tags = {"train/loss", "val/loss", *(f"pr_curve/{c}" for c in CLASSES)}
    for name in runs:
        assert set(steps[name]) == expected_tags, name
    counts = {tag: len(steps["decorator"][tag]) for tag in expected_tags}
    assert counts == {
        "train/loss": EPOCHS * TRAIN_BATCHES // 2,
        "val/loss": EPOCHS,
        **{f"pr_curve/{c}": 1 for c in CLASSES},
    }
    for name in runs:
        assert {tag: len(s) for tag, s in steps[name].items()} == counts, name

    # each run on its own axis: the 2nd, 4th, 6th optimizer step
    assert steps["decorator"]["train/loss"] == [1, 3, 5]  # a 0-based count
    assert steps["lightning"]["train/loss"] == [1, 3, 5]  # Lightning's logged step (_batches_that_stepped)
    assert steps["ignite"]["train/loss"] == [2, 4, 6]  # engine.state.iteration
    assert steps["transformers"]["train/loss"] == [2, 4, 6]  # state.global_step
    # the Trainer's own logging_steps=2 logs `loss` at the same global steps
    assert [e["step"] for e in hf_trainer.state.log_history if "loss" in e] == [2, 4, 6]
    # validation at each epoch's last step, on the same axes
    assert steps["decorator"]["val/loss"] == steps["lightning"]["val/loss"] == [2, 5]
    assert steps["ignite"]["val/loss"] == steps["transformers"]["val/loss"] == [3, 6]
    assert [e["step"] for e in hf_trainer.state.log_history if "eval_loss" in e] == [3, 6]

    # the same hooks in the same order under every loop
    names = {name: [call for call, _ in recorder.calls] for name, recorder in recorders.items()}
    for name in ("lightning", "ignite", "transformers"):
        assert names[name] == names["decorator"], name
    # ... each seeing its own axis: Lightning's 0-based like the decorator's, ignite's and the Trainer's 1-based
    hook_steps = {name: [step for _, step in recorder.calls] for name, recorder in recorders.items()}
    assert hook_steps["lightning"] == hook_steps["decorator"]
    one_later = [step + 1 if step >= 0 else step for step in hook_steps["decorator"]]
    assert hook_steps["ignite"] == hook_steps["transformers"] == one_later

    # the same math gives the same values: decorator, Lightning, ignite; and the Trainer run in order, unclipped
    for name in ("lightning", "ignite", "transformers"):
        for tag in ("train/loss", "val/loss"):
            assert scalars[name][tag] == pytest.approx(scalars["decorator"][tag], rel=1e-5), (name, tag)
        for c in CLASSES:
            tag = f"pr_curve/{c}"
            np.testing.assert_allclose(
                curves[name][tag][0], curves["decorator"][tag][0], rtol=1e-5, atol=1e-6, err_msg=f"{name} {tag}"
            )
    # and the transformers values are the Trainer's own
    hf_loss = [e["loss"] for e in hf_trainer.state.log_history if "loss" in e]
    hf_eval = [e["eval_loss"] for e in hf_trainer.state.log_history if "eval_loss" in e]
    assert scalars["transformers"]["train/loss"] == pytest.approx(hf_loss, rel=1e-5)
    assert scalars["transformers"]["val/loss"] == pytest.approx(hf_eval, rel=1e-6)
    # the loss is a mean over the window's steps: recompute the decorator's from scratch
    net = tiny_net()
    train, val = data()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = [loss.item() for loss in train_tutorial(None, net, train, optimizer=optimizer, epochs=EPOCHS)]
    assert scalars["decorator"]["train/loss"] == pytest.approx(
        [(losses[i] + losses[i + 1]) / 2 for i in range(0, len(losses), 2)], rel=1e-5
    )
    with torch.no_grad():
        final_val = sum(F.cross_entropy(net(x), y, reduction="sum").item() for x, y in val) / (VAL_BATCHES * BATCH)
    assert scalars["decorator"]["val/loss"][-1] == pytest.approx(final_val, rel=1e-5)
