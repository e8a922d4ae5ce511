"""Events reach callbacks in Lightning's order, only where overridden, and failures don't kill training."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import make_batches
from helpers import RecordingCallback, train_tutorial

from callbacks import Callback
from trackers import CallbackError, LooptrackWarning, MemoryWriter, Tracker
from trackers.core.dispatch import CallbackList, overrides


def _train(tracker: Tracker, net: torch.nn.Module, epochs: int = 2, steps: int = 2, val_steps: int = 1) -> None:
    batches = make_batches(steps)
    train_tutorial(
        tracker,
        net,
        batches,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        epochs=epochs,
        val=batches[:val_steps],
    )


def test_hook_order_follows_lightning(net):
    recorder = RecordingCallback()
    with Tracker(net, callbacks=[recorder], writer=MemoryWriter()) as tracker:
        _train(tracker, net)
    names = [name for name, _ in recorder.calls]
    epoch = [
        "on_train_epoch_start",
        "on_train_batch_start",
        "on_train_batch_end",
        "on_train_batch_start",
        "on_train_batch_end",
        "on_validation_start",
        "on_validation_batch_start",
        "on_validation_batch_end",
        "on_validation_end",
        "on_train_epoch_end",
    ]
    assert names == ["on_train_start", *epoch, *epoch, "on_train_end"]
    batch_end_steps = [step for name, step in recorder.calls if name == "on_train_batch_end"]
    assert batch_end_steps == [0, 1, 2, 3]


def test_eval_step_outside_validation_block_opens_and_closes_a_pass(net):
    recorder = RecordingCallback()
    with Tracker(net, callbacks=[recorder], writer=MemoryWriter()) as tracker:
        eval_step = tracker.eval_step(lambda x, y: torch.tensor(1.0))
        train_step = tracker.train_step(lambda x, y: torch.tensor(1.0))
        x, y = make_batches(1)[0]
        eval_step(x, y)
        eval_step(x, y)
        train_step(x, y)
    names = [name for name, _ in recorder.calls]
    assert names == [
        "on_train_start",
        "on_validation_start",
        "on_validation_batch_start",
        "on_validation_batch_end",
        "on_validation_batch_start",
        "on_validation_batch_end",
        "on_validation_end",
        "on_train_batch_start",
        "on_train_batch_end",
        "on_train_end",
    ]


def test_dispatch_skips_callbacks_that_do_not_override():
    class OnlyEnd(Callback):
        def on_train_end(self, state):
            pass

    cb = OnlyEnd()
    assert overrides(cb, "on_train_end")
    assert not overrides(cb, "on_train_batch_end")
    callbacks = CallbackList([cb])
    assert callbacks.wants("on_train_end")
    assert not callbacks.wants("on_train_batch_end")


def test_hooks_get_state_and_batch_not_a_trainer(net):
    seen = {}

    class Inspect(Callback):
        def on_train_batch_end(self, state, batch):
            seen.update(
                step=state.step,
                epoch=state.epoch,
                model=state.model,
                writer=state.writer,
                inputs=batch.inputs,
                targets=batch.targets,
                outputs=batch.outputs,
                loss=batch.loss,
            )

    writer = MemoryWriter()
    with Tracker(net, callbacks=[Inspect()], writer=writer) as tracker:
        _train(tracker, net, epochs=1, steps=1, val_steps=0)
    assert seen["step"] == 0 and seen["epoch"] == 0
    assert seen["model"] is net and seen["writer"] is writer
    assert seen["inputs"].shape == (8, 8) and seen["targets"].shape == (8,)
    assert seen["outputs"].shape == (8, 3) and not seen["outputs"].requires_grad
    assert seen["loss"].ndim == 0


def test_a_failing_callback_is_reported_once_and_training_goes_on(net):
    class Broken(Callback):
        def on_train_batch_end(self, state, batch):
            raise ValueError("boom")

    recorder = RecordingCallback()
    with pytest.warns(LooptrackWarning) as caught:
        with Tracker(net, callbacks=[Broken(), recorder], writer=MemoryWriter()) as tracker:
            _train(tracker, net, epochs=1, steps=3, val_steps=0)
    messages = [str(w.message) for w in caught if "Broken" in str(w.message)]
    assert len(messages) == 1
    assert "Broken.on_train_batch_end failed at step 0: ValueError: boom" in messages[0]
    assert tracker.callbacks.failures[("Broken", "on_train_batch_end")] == 3
    assert [n for n, _ in recorder.calls].count("on_train_batch_end") == 3


def test_strict_mode_raises_naming_the_callback_and_event(net):
    class Broken(Callback):
        def on_train_batch_end(self, state, batch):
            raise ValueError("boom")

    with pytest.raises(CallbackError, match=r"Broken\.on_train_batch_end failed at step 0"):
        with Tracker(net, callbacks=[Broken()], writer=MemoryWriter(), strict=True) as tracker:
            _train(tracker, net, epochs=1, steps=2, val_steps=0)


def test_exception_in_loop_runs_on_exception_then_end_and_reraises(net):
    recorder = RecordingCallback()
    writer = MemoryWriter()
    with pytest.raises(RuntimeError, match="loop died"):
        with Tracker(net, callbacks=[recorder], writer=writer) as tracker:
            tracker.train_step(lambda x, y: torch.tensor(0.5))(*make_batches(1)[0])
            raise RuntimeError("loop died")
    names = [name for name, _ in recorder.calls]
    assert names[-2:] == ["on_exception", "on_train_end"]
    assert tracker.closed and writer.closed


def test_exception_inside_a_step_propagates_unchanged(net):
    class Boom(Exception):
        pass

    recorder = RecordingCallback()
    with pytest.raises(Boom):
        with Tracker(net, callbacks=[recorder], writer=MemoryWriter()) as tracker:

            @tracker.train_step
            def step(x, y):
                raise Boom()

            step(*make_batches(1)[0])
    names = [name for name, _ in recorder.calls]
    assert names == ["on_train_start", "on_train_batch_start", "on_exception", "on_train_end"]


def test_close_is_idempotent_and_removes_forward_hooks(net):
    recorder = RecordingCallback()
    tracker = Tracker(net, callbacks=[recorder], writer=MemoryWriter())
    assert len(net._forward_hooks) == 1 and len(net._forward_pre_hooks) == 1
    tracker.start()
    tracker.close()
    tracker.close()
    assert [n for n, _ in recorder.calls] == ["on_train_start", "on_train_end"]
    assert len(net._forward_hooks) == 0 and len(net._forward_pre_hooks) == 0


def test_default_callbacks_include_the_loss_logger_and_the_graph(net):
    from callbacks import GraphTrace, LossLogger

    tracker = Tracker(net, writer=MemoryWriter())
    assert [type(cb) for cb in tracker.callbacks.callbacks] == [LossLogger, GraphTrace]
    tracker.close()


def test_not_a_callback_is_rejected_with_the_fix(net):
    with pytest.raises(TypeError, match="Subclass callbacks.Callback"):
        Tracker(net, callbacks=[object()], writer="memory")


def test_epochs_validates_its_argument(net):
    tracker = Tracker(net, callbacks=[], writer="memory")
    with pytest.raises(ValueError, match="non-negative integer"):
        list(tracker.epochs(-1))
    tracker.close()


def test_without_epochs_everything_is_epoch_zero(net):
    seen = []

    class Epochs(Callback):
        def on_train_batch_end(self, state, batch):
            seen.append(state.epoch)

    with Tracker(net, callbacks=[Epochs()], writer="memory") as tracker:
        step = tracker.train_step(lambda x, y: torch.tensor(1.0))
        for x, y in make_batches(3):
            step(x, y)
    assert seen == [0, 0, 0]


def test_step_after_close_runs_untracked_with_one_warning(net):
    tracker = Tracker(net, callbacks=[], writer="memory")
    step = tracker.train_step(lambda: 7)
    tracker.close()
    with pytest.warns(LooptrackWarning, match="after the tracker was closed"):
        assert step() == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert step() == 7
