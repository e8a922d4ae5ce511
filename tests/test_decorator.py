"""The decorator way in: each argument and return shape gives the same batch record."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyNet

from callbacks import Callback
from trackers import LooptrackWarning, MemoryWriter, Tracker
from trackers.core.steps import split_arguments, split_result


class Keep(Callback):
    def __init__(self) -> None:
        self.batches = []

    def on_train_batch_end(self, state, batch):
        self.batches.append(batch)

    def on_validation_batch_end(self, state, batch):
        self.batches.append(batch)


X = torch.randn(4, 8)
Y = torch.tensor([0, 1, 2, 1])


def _criterion(net, x, y):
    return torch.nn.functional.cross_entropy(net(x), y)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda step: step(X, Y), id="inputs-targets"),
        pytest.param(lambda step: step((X, Y)), id="batch-tuple"),
        pytest.param(lambda step: step([X, Y]), id="batch-list"),
        pytest.param(lambda step: step({"inputs": X, "labels": Y}), id="batch-dict"),
        pytest.param(lambda step: step({"x": X, "y": Y}), id="batch-dict-xy"),
        pytest.param(lambda step: step(inputs=X, targets=Y), id="kwargs"),
        pytest.param(lambda step: step(batch=(X, Y)), id="kwarg-batch"),
    ],
)
def test_argument_shapes_give_inputs_and_targets(call):
    net = TinyNet()
    keep = Keep()
    with Tracker(net, callbacks=[keep], writer=MemoryWriter()) as tracker:

        @tracker.train_step
        def step(*args, **kwargs):
            inputs, targets = split_arguments(args, kwargs)
            return _criterion(net, inputs, targets)

        result = call(step)
    (batch,) = keep.batches
    assert batch.inputs is X and batch.targets is Y
    assert batch.loss is result
    assert torch.equal(batch.outputs, net(X).detach())


def test_return_dict_overrides_targets_and_outputs():
    net = TinyNet()
    keep = Keep()
    with Tracker(net, callbacks=[keep], writer=MemoryWriter()) as tracker:

        @tracker.train_step
        def step(images):
            logits = net(images)
            return {"loss": logits.sum(), "outputs": logits, "targets": Y}

        step(X)
    (batch,) = keep.batches
    assert batch.inputs is X and batch.targets is Y
    assert batch.outputs.shape == (4, 3) and not batch.outputs.requires_grad


def test_return_value_is_passed_back_unchanged():
    net = TinyNet()
    with Tracker(net, callbacks=[], writer=MemoryWriter()) as tracker:
        sentinel = {"loss": torch.tensor(1.0), "extra": object()}
        assert tracker.train_step(lambda: sentinel)() is sentinel
        assert tracker.train_step(lambda: None)() is None


def test_outputs_come_from_the_forward_hook_detached_and_not_copied():
    net = TinyNet()
    keep = Keep()
    produced = []
    net.register_forward_hook(lambda m, a, out: produced.append(out))
    with Tracker(net, callbacks=[keep], writer=MemoryWriter()) as tracker:
        tracker.train_step(lambda x, y: _criterion(net, x, y))(X, Y)
    outputs = keep.batches[0].outputs
    assert not outputs.requires_grad
    assert outputs.data_ptr() == produced[0].data_ptr()  # a view of the model's own tensor


def test_no_forward_this_step_means_no_stale_outputs():
    net = TinyNet()
    keep = Keep()
    with Tracker(net, callbacks=[keep], writer=MemoryWriter()) as tracker:
        tracker.train_step(lambda x, y: _criterion(net, x, y))(X, Y)
        tracker.train_step(lambda x, y: torch.tensor(0.0))(X, Y)
    assert keep.batches[0].outputs is not None
    assert keep.batches[1].outputs is None


def test_first_forward_inputs_are_kept():
    net = TinyNet()
    with Tracker(net, callbacks=[], writer=MemoryWriter()) as tracker:
        net(X)
        net(torch.zeros(2, 8))
        (first,) = tracker.first_inputs
    assert torch.equal(first, X)


def test_eval_step_records_validation_batches():
    net = TinyNet()
    keep = Keep()
    with Tracker(net, callbacks=[keep], writer=MemoryWriter()) as tracker:

        @tracker.eval_step
        def eval_step(batch):
            with torch.no_grad():
                return {"loss": _criterion(net, *batch)}

        with tracker.validation():
            eval_step((X, Y))
            eval_step((X, Y))
    assert [b.batch_idx for b in keep.batches] == [0, 1]
    assert all(b.targets is Y and b.outputs.shape == (4, 3) for b in keep.batches)
    assert tracker.step == -1  # validation does not count as training steps


def test_a_result_it_cannot_read_is_reported_once():
    with Tracker(None, callbacks=[], writer=MemoryWriter()) as tracker:
        step = tracker.train_step(lambda: "not a loss")
        with pytest.warns(LooptrackWarning, match="return the loss tensor"):
            step()
        step()


def test_split_result_understands_model_outputs():
    class Out:
        loss = torch.tensor(2.0)
        logits = torch.ones(2, 3)

    loss, outputs, targets, ok = split_result(Out())
    assert ok and loss is Out.loss and outputs is Out.logits and targets is None


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Tracker(model="resnet", writer=MemoryWriter())
