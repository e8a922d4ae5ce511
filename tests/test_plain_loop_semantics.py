"""The plain loop's semantics, read back from what was written.

One step is one optimizer step (gradient accumulation included); an
evaluation pass's loss is weighted by samples; test passes are kept apart;
structured forward outputs give their class scores; nothing is counted
twice; gradients are taken before the loop zeroes them; the learning rate
comes from the optimizer seen stepping; a resumed run continues its axis.
"""

from __future__ import annotations

import warnings
from collections import namedtuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TinyNet, load_run, make_batches, scalar_series
from helpers import train_tutorial, tutorial_eval_step
from tensorboard.util import tensor_util

from callbacks import Callback, LearningRate, LossLogger, ParameterHistograms, PRCurves, PredictionFigure
from trackers import LooptrackWarning, Tracker
from trackers.tools.demo import tutorial_step

CLASSES = ["ant", "bee", "cat"]


class StepLog(Callback):
    """What the training-step hooks saw: (step, step_index, micro_batches, loss)."""

    def __init__(self) -> None:
        self.ends: list[tuple[int, int, int, float]] = []

    def on_train_batch_end(self, state, batch):
        loss = float(batch.loss) if batch.loss is not None else None
        self.ends.append((state.step, state.step_index, batch.micro_batches, loss))


def looptrack_messages(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, LooptrackWarning)]


def _net_and_optimizer(lr: float = 0.1):
    torch.manual_seed(0)
    net = TinyNet()
    return net, torch.optim.SGD(net.parameters(), lr=lr)


# --------------------------------------------------------------------------- 1. gradient accumulation
K = 2
MICRO_BATCHES = 8


def _accumulating_run(tmp_path, where: str, step_on: str, every: int = 2):
    """8 micro-batches, the optimizer stepping every K=2 of them, inside or outside the decorated step."""
    net, optimizer = _net_and_optimizer()
    log = StepLog()
    kwargs = {} if step_on == "call" else {"step_on": step_on}
    with Tracker(net, callbacks=[LossLogger(every_n_steps=every), log], writer=str(tmp_path), **kwargs) as tracker:
        losses = [
            loss.item()
            for loss in train_tutorial(
                tracker,
                net,
                make_batches(MICRO_BATCHES),
                optimizer=optimizer,
                accumulate=K,
                step_outside=where == "outside",
            )
        ]
        final_step = tracker.step
    return losses, log, final_step


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_accumulation_one_step_is_one_optimizer_step(tmp_path, where):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses, log, final_step = _accumulating_run(tmp_path, where, "optimizer")
    assert final_step == 3
    assert [(s, i, m) for s, i, m, _ in log.ends] == [(0, 0, 2), (1, 1, 2), (2, 2, 2), (3, 3, 2)]
    for (_, _, _, loss), window in zip(log.ends, range(4)):
        assert loss == pytest.approx(np.mean(losses[2 * window : 2 * window + 2]), rel=1e-5)
    series = scalar_series(tmp_path, "train/loss")
    assert [s for s, _ in series] == [1, 3]
    assert series[0][1] == pytest.approx(np.mean(losses[0:4]), rel=1e-5)
    assert series[1][1] == pytest.approx(np.mean(losses[4:8]), rel=1e-5)
    assert not [m for m in looptrack_messages(caught) if "accumulat" in m], looptrack_messages(caught)


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_accumulation_with_default_step_on_counts_calls_and_warns_once(tmp_path, where):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses, log, final_step = _accumulating_run(tmp_path, where, "call")
    assert final_step == MICRO_BATCHES - 1
    assert [s for s, *_ in log.ends] == list(range(MICRO_BATCHES))
    series = scalar_series(tmp_path, "train/loss")
    assert [s for s, _ in series] == [1, 3, 5, 7]
    for (_step, value), window in zip(series, range(4)):
        assert value == pytest.approx(np.mean(losses[2 * window : 2 * window + 2]), rel=1e-5)
    accumulation = [m for m in looptrack_messages(caught) if "accumulat" in m]
    assert len(accumulation) == 1, looptrack_messages(caught)
    assert "step_on='optimizer'" in accumulation[0]


# --------------------------------------------------------------------------- 2. validation loss weighted by samples
def _uneven_eval_batches():
    generator = torch.Generator().manual_seed(3)
    sizes = (8, 8, 4)
    return [
        (torch.randn(n, 8, generator=generator) * (1 + 2 * i), torch.randint(0, 3, (n,), generator=generator))
        for i, n in enumerate(sizes)
    ]


def test_validation_loss_is_weighted_by_batch_size(tmp_path):
    net, optimizer = _net_and_optimizer()
    batch_losses, sizes = [], []
    with Tracker(net, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path)) as tracker:
        eval_step = tracker.eval_step(tutorial_eval_step(net))
        train_tutorial(tracker, net, make_batches(2), optimizer=optimizer)
        with tracker.validation():
            for inputs, labels in _uneven_eval_batches():
                batch_losses.append(eval_step(inputs, labels)["loss"].item())
                sizes.append(len(labels))
    assert sizes == [8, 8, 4]
    weighted = sum(loss * n for loss, n in zip(batch_losses, sizes)) / sum(sizes)
    plain = float(np.mean(batch_losses))
    assert abs(weighted - plain) > 1e-3 * abs(weighted)  # the data tells the two apart
    series = scalar_series(tmp_path, "val/loss")
    assert [s for s, _ in series] == [1]
    assert series[0][1] == pytest.approx(weighted, rel=1e-5)


def test_validation_loss_from_loss_fn_is_weighted(tmp_path):
    net, _ = _net_and_optimizer()
    logits_seen, sizes = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(
            net, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path), loss_fn=F.cross_entropy
        ) as tracker:

            @tracker.eval_step
            def eval_step(inputs, labels):
                with torch.no_grad():
                    return {"outputs": net(inputs)}

            with tracker.validation():
                for inputs, labels in _uneven_eval_batches():
                    logits_seen.append((eval_step(inputs, labels)["outputs"], labels))
                    sizes.append(len(labels))
    expected = sum(F.cross_entropy(o, y).item() * n for (o, y), n in zip(logits_seen, sizes)) / sum(sizes)
    # the same as the loss over the whole set
    whole = F.cross_entropy(torch.cat([o for o, _ in logits_seen]), torch.cat([y for _, y in logits_seen])).item()
    assert expected == pytest.approx(whole, rel=1e-5)
    series = scalar_series(tmp_path, "val/loss")
    assert len(series) == 1
    assert series[0][1] == pytest.approx(expected, rel=1e-5)
    assert not [m for m in looptrack_messages(caught) if "loss" in m], looptrack_messages(caught)


def test_validation_without_loss_or_loss_fn_warns_once_naming_loss_fn(tmp_path):
    net, _ = _net_and_optimizer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path)) as tracker:

            @tracker.eval_step
            def eval_step(inputs, labels):
                with torch.no_grad():
                    return {"outputs": net(inputs)}

            for _ in range(2):  # two passes, still one message
                with tracker.validation():
                    for inputs, labels in _uneven_eval_batches():
                        eval_step(inputs, labels)
    naming = [m for m in looptrack_messages(caught) if "loss_fn" in m]
    assert len(naming) == 1, looptrack_messages(caught)
    assert "val/loss" in naming[0]
    assert "val/loss" not in load_run(tmp_path).Tags()["scalars"]


def test_pytest_warns_form_of_missing_validation_loss():
    net, _ = _net_and_optimizer()
    with pytest.warns(LooptrackWarning, match="loss_fn"):
        with Tracker(net, callbacks=[LossLogger(every_n_steps=1)], writer="memory") as tracker:
            eval_step = tracker.eval_step(lambda inputs, labels: {"outputs": net(inputs).detach()})
            with tracker.validation():
                for inputs, labels in _uneven_eval_batches():
                    eval_step(inputs, labels)


# --------------------------------------------------------------------------- 3. test passes
def _pr_counts(run, tag):
    """The [6, thresholds] pr_curve tensor: TP, FP, TN, FN, precision, recall."""
    (event,) = run.Tensors(tag)
    return tensor_util.make_ndarray(event.tensor_proto)


def test_test_pass_logs_test_loss_and_pr_curves_use_only_validation(tmp_path):
    net, _ = _net_and_optimizer()
    val_batches = make_batches(2, batch_size=8, seed=11)  # 16 samples
    test_batches = make_batches(3, batch_size=4, seed=12)  # 12 samples
    with Tracker(net, callbacks=[LossLogger(every_n_steps=1), PRCurves(CLASSES)], writer=str(tmp_path)) as tracker:

        @tracker.eval_step
        def eval_step(inputs, labels):
            with torch.no_grad():
                return {"loss": F.cross_entropy(net(inputs), labels)}

        with tracker.validation():
            val_losses = [eval_step(x, y)["loss"].item() for x, y in val_batches]
        with tracker.validation(stage="test"):
            test_losses = [eval_step(x, y)["loss"].item() for x, y in test_batches]
    run = load_run(tmp_path)
    val = [v for _, v in scalar_series(tmp_path, "val/loss")]
    test = [v for _, v in scalar_series(tmp_path, "test/loss")]
    assert val == pytest.approx([np.mean(val_losses)], rel=1e-5)
    assert test == pytest.approx([np.mean(test_losses)], rel=1e-5)
    assert set(run.Tags()["tensors"]) >= {f"pr_curve/{c}" for c in CLASSES}
    val_targets = torch.cat([y for _, y in val_batches])
    for index, name in enumerate(CLASSES):
        counts = _pr_counts(run, f"pr_curve/{name}")
        tp, fp, tn, fn = counts[:4, 0]
        assert tp + fp + tn + fn == 16  # the validation pass's samples, not the test pass's 12
        assert tp + fn == int((val_targets == index).sum())


# --------------------------------------------------------------------------- 4. structured model outputs
Pair = namedtuple("Pair", ["hidden", "logits"])


class ImageNet(torch.nn.Module):
    """1x8x8 images -> 3 class scores, returned in the shape ``mode`` says."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.fc = torch.nn.Linear(2 * 8 * 8, 3)

    def forward(self, images):
        hidden = torch.relu(self.conv(images)).flatten(1)  # [batch, 128]: not class scores
        logits = self.fc(hidden)
        if self.mode == "tensor":
            return logits
        if self.mode == "dict":
            return {"aux": hidden, "logits": logits}
        if self.mode == "tuple":
            return logits, hidden
        if self.mode == "namedtuple":
            return Pair(hidden=hidden, logits=logits)
        if self.mode == "model_output":
            from transformers.modeling_outputs import SequenceClassifierOutput

            return SequenceClassifierOutput(logits=logits, hidden_states=(hidden,))
        if self.mode == "named_key":
            return {"hidden": hidden, "scores": logits}
        if self.mode == "no_scores":
            return {"summary": logits.sum(), "note": "no scores here"}  # a 0-d tensor is a loss, not scores
        if self.mode == "function":
            return hidden, logits
        raise AssertionError(self.mode)


def _logits_of(mode, out):
    return {
        "tensor": lambda: out,
        "dict": lambda: out["logits"],
        "tuple": lambda: out[0],
        "namedtuple": lambda: out.logits,
        "model_output": lambda: out.logits,
        "named_key": lambda: out["scores"],
        "function": lambda: out[1],
    }[mode]()


def _image_batches(n, batch_size=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.rand(batch_size, 1, 8, 8, generator=generator) * 2 - 1,
            torch.randint(0, 3, (batch_size,), generator=generator),
        )
        for _ in range(n)
    ]


def _structured_run(tmp_path, mode, outputs=None):
    torch.manual_seed(0)
    net = ImageNet(mode)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: every mode sees the same weights
    kwargs = {} if outputs is None else {"outputs": outputs}
    callbacks = [PRCurves(CLASSES), PredictionFigure(CLASSES, every_n_steps=1, n=2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, callbacks=callbacks, writer=str(tmp_path), **kwargs) as tracker:

            @tracker.train_step
            def train_step(images, labels):
                optimizer.zero_grad()
                if mode == "no_scores":
                    loss = net(images)["summary"] ** 2 * 1e-3
                else:
                    loss = F.cross_entropy(_logits_of(mode, net(images)), labels)
                loss.backward()
                optimizer.step()
                return loss

            @tracker.eval_step
            def eval_step(images, labels):
                with torch.no_grad():
                    out = net(images)
                    if mode == "no_scores":
                        return out["summary"]
                    return F.cross_entropy(_logits_of(mode, out), labels)

            for images, labels in _image_batches(2, seed=1):
                train_step(images, labels)
            with tracker.validation():
                for images, labels in _image_batches(3, seed=2):
                    eval_step(images, labels)
    return load_run(tmp_path), looptrack_messages(caught)


@pytest.fixture(scope="module")
def plain_tensor_curves(tmp_path_factory):
    run, messages = _structured_run(tmp_path_factory.mktemp("plain"), "tensor")
    assert not messages, messages
    return {c: _pr_counts(run, f"pr_curve/{c}") for c in CLASSES}


@pytest.mark.parametrize(
    "mode, outputs",
    [
        pytest.param("dict", None, id="dict-logits"),
        pytest.param("tuple", None, id="tuple"),
        pytest.param("namedtuple", None, id="namedtuple"),
        pytest.param("model_output", None, id="transformers-ModelOutput"),
        pytest.param("named_key", "scores", id="outputs-key"),
        pytest.param("function", lambda out: out[1], id="outputs-function"),
    ],
)
def test_structured_outputs_feed_pr_curves_and_prediction_figure(tmp_path, plain_tensor_curves, mode, outputs):
    if mode == "model_output":
        pytest.importorskip("transformers")
    run, messages = _structured_run(tmp_path, mode, outputs)
    assert not messages, messages
    tags = run.Tags()
    for name in CLASSES:
        assert f"pr_curve/{name}" in tags["tensors"]
        # the scores chosen are the logits: the same curve as a model returning the logits tensor
        np.testing.assert_allclose(_pr_counts(run, f"pr_curve/{name}"), plain_tensor_curves[name], rtol=1e-6)
    assert "predictions vs. actuals" in tags["images"]
    assert [e.step for e in run.Images("predictions vs. actuals")] == [0, 1]


WRONG_BLAMES = ("does the model's forward run", "no validation batch was seen", "forward did not run")


def test_forward_without_scores_blames_the_output_selection(tmp_path):
    run, messages = _structured_run(tmp_path, "no_scores")
    assert any("outputs=" in m for m in messages), messages
    wrong = [m for m in messages if any(blame in m for blame in WRONG_BLAMES)]
    assert not wrong, wrong
    assert not [t for t in run.Tags()["tensors"] if t.startswith("pr_curve/")]


# --------------------------------------------------------------------------- 5. nothing counted twice
def test_nested_train_steps_count_once(tmp_path):
    net, optimizer = _net_and_optimizer()
    log = StepLog()
    losses = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, callbacks=[LossLogger(every_n_steps=1), log], writer=str(tmp_path)) as tracker:
            inner = tracker.train_step(tutorial_step(net, optimizer))

            @tracker.train_step
            def outer(inputs, labels):
                return inner(inputs, labels)

            for inputs, labels in make_batches(3):
                losses.append(outer(inputs, labels).item())
            assert tracker.step == 2
    assert [(s, i) for s, i, _, _ in log.ends] == [(0, 0), (1, 1), (2, 2)]
    series = scalar_series(tmp_path, "train/loss")
    assert [s for s, _ in series] == [0, 1, 2]
    assert [v for _, v in series] == pytest.approx(losses, rel=1e-5)
    nested = [m for m in looptrack_messages(caught) if "inside another tracked step" in m]
    assert len(nested) == 1, looptrack_messages(caught)


def test_attach_twice_raises_and_counts_once(tmp_path):
    ignite_engine = pytest.importorskip("ignite.engine")
    net, optimizer = _net_and_optimizer()
    trainer = ignite_engine.create_supervised_trainer(net, optimizer, F.cross_entropy)
    tracker = Tracker(net, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path))
    tracker.attach(trainer)
    with pytest.raises(ValueError, match="attach"):
        tracker.attach(trainer)
    with tracker:
        trainer.run(make_batches(4), max_epochs=1)
    steps = [s for s, _ in scalar_series(tmp_path, "train/loss")]
    assert steps == [1, 2, 3, 4]


# --------------------------------------------------------------------------- 6. gradient histograms
def test_gradients_are_taken_before_the_loop_zeroes_them(tmp_path):
    net, optimizer = _net_and_optimizer()
    grads_seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, callbacks=[ParameterHistograms(every_n_steps=1)], writer=str(tmp_path)) as tracker:

            @tracker.train_step
            def train_step(inputs, labels):
                loss = F.cross_entropy(net(inputs), labels)
                loss.backward()
                grads_seen.append({n: p.grad.detach().clone() for n, p in net.named_parameters()})
                optimizer.step()
                optimizer.zero_grad()  # set_to_none: no gradient left at the step's end
                return loss

            for inputs, labels in make_batches(3):
                train_step(inputs, labels)
    assert all(p.grad is None for p in net.parameters())
    run = load_run(tmp_path)
    histograms = run.Tags()["histograms"]
    for name, _ in net.named_parameters():
        assert f"gradients/{name}" in histograms
        events = run.Histograms(f"gradients/{name}")
        assert [e.step for e in events] == [0, 1, 2]
        for event, grads in zip(events, grads_seen):
            value = event.histogram_value
            assert value.num == grads[name].numel()
            assert value.sum == pytest.approx(grads[name].sum().item(), rel=1e-4, abs=1e-6)
            assert value.min == pytest.approx(grads[name].min().item(), rel=1e-5, abs=1e-7)
            assert value.max == pytest.approx(grads[name].max().item(), rel=1e-5, abs=1e-7)
    assert not [m for m in looptrack_messages(caught) if "gradient" in m], looptrack_messages(caught)


def test_no_backward_warns_once_about_missing_gradients(tmp_path):
    net, _ = _net_and_optimizer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, callbacks=[ParameterHistograms(every_n_steps=1)], writer=str(tmp_path)) as tracker:

            @tracker.train_step
            def train_step(inputs, labels):
                with torch.no_grad():
                    return F.cross_entropy(net(inputs), labels)

            for inputs, labels in make_batches(3):
                train_step(inputs, labels)
    missing = [m for m in looptrack_messages(caught) if "gradient" in m]
    assert len(missing) == 1, looptrack_messages(caught)
    run = load_run(tmp_path)
    histograms = run.Tags()["histograms"]
    assert not [t for t in histograms if t.startswith("gradients/")]
    assert [e.step for e in run.Histograms("parameters/fc1.weight")] == [0, 1, 2]


# --------------------------------------------------------------------------- 7. learning rate
def test_learning_rate_without_optimizer_uses_the_one_seen_stepping():
    net, optimizer = _net_and_optimizer(lr=0.05)
    with Tracker(net, callbacks=[LearningRate(every_n_steps=1)], writer="memory") as tracker:
        train_tutorial(tracker, net, make_batches(3), optimizer=optimizer)
    assert tracker.writer.sinks[0].series("lr") == [
        (0, pytest.approx(0.05)),
        (1, pytest.approx(0.05)),
        (2, pytest.approx(0.05)),
    ]


def test_learning_rate_tags_use_param_group_names():
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(
        [
            {"params": net.fc1.parameters(), "lr": 0.1, "name": "body"},
            {"params": net.fc2.parameters(), "lr": 0.01, "name": "head"},
        ]
    )
    with Tracker(net, callbacks=[LearningRate(every_n_steps=1)], writer="memory") as tracker:
        train_tutorial(tracker, net, make_batches(2), optimizer=optimizer)
    lr_tags = {t for t in tracker.writer.sinks[0].tags("scalar") if t.startswith("lr")}
    assert lr_tags == {"lr/body", "lr/head"}, lr_tags
    assert [v for _, v in tracker.writer.sinks[0].series("lr/body")] == pytest.approx([0.1, 0.1])
    assert [v for _, v in tracker.writer.sinks[0].series("lr/head")] == pytest.approx([0.01, 0.01])


# --------------------------------------------------------------------------- 8. resume
def _two_steps(tracker, net, optimizer):
    return [loss.item() for loss in train_tutorial(tracker, net, make_batches(2), optimizer=optimizer)]


def test_resume_step_continues_the_axis(tmp_path):
    net, optimizer = _net_and_optimizer()
    with Tracker(net, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path), resume_step=10) as tracker:
        losses = _two_steps(tracker, net, optimizer)
        assert tracker.step == 11
    series = scalar_series(tmp_path, "train/loss")
    assert [s for s, _ in series] == [10, 11]
    assert [v for _, v in series] == pytest.approx(losses, rel=1e-5)


def test_resume_step_replaces_the_old_tail(tmp_path):
    with Tracker(None, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path)) as first:
        step = first.train_step(lambda: torch.tensor(-1.0))
        for _ in range(12):
            step()  # the old run reached step 11
    net, optimizer = _net_and_optimizer()
    with Tracker(net, callbacks=[LossLogger(every_n_steps=1)], writer=str(tmp_path), resume_step=10) as tracker:
        losses = _two_steps(tracker, net, optimizer)
    series = scalar_series(tmp_path, "train/loss")
    assert series[:10] == [(s, -1.0) for s in range(10)]
    assert [s for s, _ in series[10:]] == [10, 11]
    assert [v for _, v in series[10:]] == pytest.approx(losses, rel=1e-5)
