"""Tracker.attach(ignite Engine, evaluator=...) writes what the decorator run writes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from adapter_runs import EPOCHS, callbacks, data, decorator_run, loader, tiny_net, values, written

from callbacks import LossLogger
from trackers import Tracker

ignite_engine = pytest.importorskip("ignite.engine")
Events = ignite_engine.Events


def _engines(net):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = ignite_engine.create_supervised_trainer(
        net,
        optimizer,
        F.cross_entropy,
        output_transform=lambda x, y, y_pred, loss: {"loss": loss, "y_pred": y_pred, "y": y},
    )
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
    with Tracker(net, callbacks=cbs, writer=str(tmp_path / "ignite")).attach(trainer, evaluator=evaluator):
        trainer.run(loader(train), max_epochs=EPOCHS)
    ignite_steps, decorator_steps = written(tmp_path / "ignite"), written(tmp_path / "decorator")
    assert set(ignite_steps) == set(decorator_steps) == {"train/loss", "pr_curve/a", "pr_curve/b", "pr_curve/c"}
    # on ignite's axis, engine.state.iteration: one to the right of the plain loop's 0-based count
    assert ignite_steps["train/loss"] == [s + 1 for s in decorator_steps["train/loss"]] == [2, 4, 6]
    assert [name for name, _ in recorder.calls] == [name for name, _ in reference.calls]
    assert values(tmp_path / "ignite", "train/loss") == pytest.approx(
        values(tmp_path / "decorator", "train/loss"), rel=1e-5
    )


def test_default_float_output_still_logs_the_loss(tmp_path):
    net = tiny_net()
    trainer = ignite_engine.create_supervised_trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), F.cross_entropy)
    cbs, _ = callbacks()
    with Tracker(net, callbacks=cbs[:1], writer=str(tmp_path)).attach(trainer):
        train, _ = data()
        trainer.run(loader(train), max_epochs=2)
    assert written(tmp_path)["train/loss"] == [2, 4, 6]


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


# --------------------------------------------------------------- ignite's own idioms
from conftest import load_run  # noqa: E402
from ignite.metrics import Accuracy, Loss  # noqa: E402

from trackers import LooptrackWarning  # noqa: E402


def _mnist_example_engines(net, **trainer_options):
    """As ignite's examples/mnist: default trainer output (loss.item()), the loss as an evaluator metric 'nll'."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = ignite_engine.create_supervised_trainer(net, optimizer, F.cross_entropy, **trainer_options)
    evaluator = ignite_engine.create_supervised_evaluator(
        net, metrics={"accuracy": Accuracy(), "nll": Loss(F.cross_entropy)}
    )
    return trainer, evaluator


def test_points_land_where_ignites_own_tensorboard_logger_puts_them(tmp_path):
    from ignite.handlers.tensorboard_logger import OutputHandler, TensorboardLogger

    net = tiny_net()
    trainer, evaluator = _mnist_example_engines(net)
    train, val = data()
    ignite_logger = TensorboardLogger(log_dir=str(tmp_path / "ignite_own"))
    ignite_logger.attach(
        trainer,
        OutputHandler(tag="training", output_transform=lambda loss: {"batchloss": loss}),
        event_name=Events.ITERATION_COMPLETED(every=2),
    )
    nll = []

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):
        evaluator.run(loader(val))
        nll.append(evaluator.state.metrics["nll"])

    with Tracker(net, callbacks=[LossLogger(every_n_steps=2)], writer=str(tmp_path / "ours")) as tracker:
        tracker.attach(trainer, evaluator=evaluator)
        trainer.run(loader(train), max_epochs=EPOCHS)
    ignite_logger.close()
    theirs = load_run(tmp_path / "ignite_own").Scalars("training/batchloss")
    ours = load_run(tmp_path / "ours")
    assert [e.step for e in ours.Scalars("train/loss")] == [e.step for e in theirs] == [2, 4, 6]
    # val/loss is the evaluator's Loss metric (found by type under the name 'nll'), at the epoch's last iteration
    assert [(e.step, e.value) for e in ours.Scalars("val/loss")] == [
        (3, pytest.approx(nll[0], rel=1e-6)),
        (6, pytest.approx(nll[1], rel=1e-6)),
    ]


def _process_function_run(tmp_path, step_output, **attach_options):
    """A hand-written process function, as ignite's CIFAR10 example: its return value is state.output."""
    net = tiny_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = []

    def train_step(engine, batch):
        x, y = batch
        optimizer.zero_grad()
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        return step_output(loss, logits, y)

    trainer = ignite_engine.Engine(train_step)
    train, _ = data()
    with Tracker(net, callbacks=[LossLogger(every_n_steps=3)], writer=str(tmp_path)) as tracker:
        tracker.attach(trainer, **attach_options)
        trainer.run(loader(train), max_epochs=2)
    return losses


@pytest.mark.parametrize("shape", ["cifar10 dict", "number", "tuple", "tensor"])
def test_the_training_loss_from_the_shapes_process_functions_return(tmp_path, shape):
    outputs = {
        "cifar10 dict": lambda loss, logits, y: {"batch loss": loss.item()},  # ignite's examples/cifar10/main.py
        "number": lambda loss, logits, y: loss.item(),
        "tuple": lambda loss, logits, y: (loss.detach(), logits, y),
        "tensor": lambda loss, logits, y: loss.detach(),
    }
    losses = _process_function_run(tmp_path, outputs[shape])
    assert [(e.step, e.value) for e in load_run(tmp_path).Scalars("train/loss")] == [
        (3, pytest.approx(sum(losses[:3]) / 3, rel=1e-5)),
        (6, pytest.approx(sum(losses[3:]) / 3, rel=1e-5)),
    ]


def test_output_transform_says_where_the_loss_is_and_a_missing_loss_speaks_ignite(tmp_path):
    losses = _process_function_run(
        tmp_path / "a",
        lambda loss, logits, y: {"objective": loss.item(), "n": 8},
        output_transform=lambda output: output["objective"],
    )
    assert [e.value for e in load_run(tmp_path / "a").Scalars("train/loss")] == pytest.approx(
        [sum(losses[:3]) / 3, sum(losses[3:]) / 3], rel=1e-5
    )
    with pytest.warns(LooptrackWarning, match=r"state\.output.*output_transform") as caught:
        _process_function_run(tmp_path / "b", lambda loss, logits, y: {"objective": loss.item(), "n": 8})
    assert not any("decorated function" in str(w.message) for w in caught)


def test_gradient_accumulation_one_step_per_optimizer_step(tmp_path):
    net = tiny_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = ignite_engine.create_supervised_trainer(net, optimizer, F.cross_entropy, gradient_accumulation_steps=2)
    micro_losses, stepped_at = [], []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: micro_losses.append(e.state.output))
    optimizer.register_step_post_hook(lambda *_: stepped_at.append(trainer.state.iteration))
    train = data()[0] * 2  # 6 iterations an epoch: 3 optimizer steps
    with Tracker(net, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path)) as tracker:
        tracker.attach(trainer)
        trainer.run(loader(train), max_epochs=1)
    points = [(e.step, e.value) for e in load_run(tmp_path).Scalars("train/loss")]
    assert stepped_at == [2, 4, 6]
    # ignite hands back loss * k, the micro-batch's own loss; a step's value is the mean of its two
    assert points == [
        (2 * i + 2, pytest.approx((micro_losses[2 * i] + micro_losses[2 * i + 1]) / 2, rel=1e-5)) for i in range(3)
    ]


def test_evaluation_after_run_belongs_to_the_run_and_loss_fn_computes_a_missing_loss(tmp_path):
    net = tiny_net()
    trainer, _ = _engines(net)
    evaluator = ignite_engine.create_supervised_evaluator(net)  # (y_pred, y), no metrics
    train, val = data()
    tracker = Tracker(net, callbacks=[LossLogger(every_n_steps=3)], writer=str(tmp_path))
    tracker.attach(trainer, evaluator=evaluator, loss_fn=F.cross_entropy)
    trainer.run(loader(train), max_epochs=1)
    assert not tracker.closed
    evaluator.run(loader(val))  # the final evaluation, after training
    tracker.close()
    with torch.no_grad():
        expected = sum(F.cross_entropy(net(x), y).item() * len(y) for x, y in val) / sum(len(y) for _, y in val)
    assert [(e.step, e.value) for e in load_run(tmp_path).Scalars("val/loss")] == [
        (3, pytest.approx(expected, rel=1e-5))
    ]


def test_attaching_twice_is_refused(tmp_path):
    net = tiny_net()
    trainer, _ = _engines(net)
    tracker = Tracker(net, callbacks=[LossLogger()], writer="memory").attach(trainer)
    with pytest.raises(ValueError, match="already follows"):
        tracker.attach(trainer)
    tracker.close()
