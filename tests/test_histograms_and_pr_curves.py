"""ParameterHistograms and PRCurves through a real run, read back with TensorBoard's reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TinyNet, load_run, make_batches
from helpers import train_tutorial
from torch.utils.tensorboard import SummaryWriter

from callbacks import ParameterHistograms, PRCurves
from trackers import LooptrackWarning, MemoryWriter, Tracker
from trackers.tools.syncs import SyncCounter

CLASSES = ["cat", "dog", "bird"]


def _run(tracker: Tracker, net: torch.nn.Module, steps: int = 6, val_batches: int = 4) -> None:
    train_tutorial(
        tracker,
        net,
        make_batches(steps // 2, seed=1),
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        epochs=2,
        val=make_batches(val_batches, seed=2),
    )


def test_parameter_and_gradient_histograms_every_n_steps(tmp_path):
    net = TinyNet()
    with Tracker(net, callbacks=[ParameterHistograms(every_n_steps=2)], writer=str(tmp_path)) as tracker:
        _run(tracker, net)
    run = load_run(tmp_path)
    names = [n for n, _ in net.named_parameters()]
    assert set(run.Tags()["histograms"]) == {f"parameters/{n}" for n in names} | {f"gradients/{n}" for n in names}
    assert [e.step for e in run.Histograms("parameters/fc1.weight")] == [1, 3, 5]
    final = run.Histograms("parameters/fc2.bias")[-1].histogram_value
    reference = SummaryWriter(str(tmp_path / "reference"))
    reference.add_histogram("b", net.fc2.bias.detach(), 5)
    reference.close()
    expected = load_run(tmp_path / "reference").Histograms("b")[0].histogram_value
    assert list(final.bucket) == list(expected.bucket) and list(final.bucket_limit) == list(expected.bucket_limit)


def test_include_by_prefix_and_by_function(tmp_path):
    net = TinyNet()
    by_prefix = ParameterHistograms(every_n_steps=1, include=["fc1"], gradients=False)
    by_function = ParameterHistograms(every_n_steps=1, include=lambda name, p: p.ndim == 1)
    writer = MemoryWriter()
    with Tracker(net, callbacks=[by_prefix], writer=writer) as tracker:
        _run(tracker, net, steps=2, val_batches=0)
    assert writer.tags() == {"parameters/fc1.weight", "parameters/fc1.bias", "train/loss"} - {"train/loss"}
    writer = MemoryWriter()
    with Tracker(net, callbacks=[by_function], writer=writer) as tracker:
        _run(tracker, net, steps=2, val_batches=0)
    assert writer.tags() == {"parameters/fc1.bias", "parameters/fc2.bias", "gradients/fc1.bias", "gradients/fc2.bias"}


def test_include_that_selects_nothing_is_reported(tmp_path):
    with pytest.warns(LooptrackWarning, match="selects no parameter of TinyNet"):
        with Tracker(TinyNet(), callbacks=[ParameterHistograms(include=["conv"])], writer="memory"):
            pass
    with pytest.raises(TypeError, match="ParameterHistograms: include must be"):
        ParameterHistograms(include="fc1")


def test_non_finite_parameters_are_left_out_and_counted(tmp_path):
    net = TinyNet()
    with torch.no_grad():
        net.fc2.bias[0] = float("nan")
    with Tracker(net, callbacks=[ParameterHistograms(every_n_steps=1, gradients=False)], writer=str(tmp_path)) as t:
        t.train_step(lambda: torch.tensor(0.0))()
    run = load_run(tmp_path)
    assert run.Histograms("parameters/fc2.bias")[0].histogram_value.num == 2
    assert [(e.step, e.value) for e in run.Scalars("nonfinite/parameters/fc2.bias")] == [(0, 1.0)]
    assert "nonfinite/parameters/fc1.bias" not in run.Tags()["scalars"]


def test_histograms_do_not_sync_the_training_thread():
    net = TinyNet()
    tracker = Tracker(net, callbacks=[ParameterHistograms(every_n_steps=1)], writer="memory")
    with SyncCounter() as counter:
        _run(tracker, net, steps=4, val_batches=0)
    tracker.close()
    assert counter.syncs == 0


def test_pr_curves_per_class_equal_add_pr_curve(tmp_path):
    net = TinyNet()
    with Tracker(net, callbacks=[PRCurves(classes=CLASSES)], writer=str(tmp_path / "ours")) as tracker:
        _run(tracker, net, val_batches=5)
    # the last validation pass, recomputed by hand the tutorial's way (but against the true targets)
    batches = make_batches(5, seed=2)
    with torch.no_grad():
        probs = torch.cat([torch.softmax(net(x), 1) for x, _ in batches])
    targets = torch.cat([y for _, y in batches])
    reference = SummaryWriter(str(tmp_path / "reference"))
    for i, name in enumerate(CLASSES):
        reference.add_pr_curve(name, targets == i, probs[:, i], 5)
    reference.close()
    ours, expected = load_run(tmp_path / "ours"), load_run(tmp_path / "reference")
    assert sorted(ours.PluginTagToContent("pr_curves")) == sorted(f"pr_curve/{c}" for c in CLASSES)
    for name in CLASSES:
        (mine,) = ours.Tensors(f"pr_curve/{name}")
        (theirs,) = expected.Tensors(name)
        assert mine.step == 5
        np.testing.assert_array_equal(np.array(mine.tensor_proto.float_val), np.array(theirs.tensor_proto.float_val))


def test_pr_curves_only_from_the_last_validation_pass():
    writer = MemoryWriter()
    callback = PRCurves(classes=["a", "b"], probabilities=True, num_thresholds=3)
    with Tracker(None, callbacks=[callback], writer=writer) as tracker:
        evaluate = tracker.eval_step(lambda out, y: {"outputs": out, "targets": y})
        with tracker.validation():
            evaluate(torch.tensor([[0.9, 0.1]] * 8), torch.zeros(8, dtype=torch.long))
        with tracker.validation():
            evaluate(torch.tensor([[0.2, 0.8], [0.6, 0.4]]), torch.tensor([1, 0]))
    curve = {r.tag: r.data for r in writer.records}["pr_curve/a"]
    assert curve[0].tolist() == [1.0, 1.0, 0.0]  # tp per threshold: only the last pass's 2 rows count
    assert curve[1].tolist() == [1.0, 0.0, 0.0]


def test_pr_curve_input_problems_are_named(tmp_path):
    callback = PRCurves(classes=["a", "b"])
    writer = MemoryWriter()
    with pytest.warns(LooptrackWarning) as caught:
        with Tracker(None, callbacks=[callback], writer=writer) as tracker:
            evaluate = tracker.eval_step(lambda out, y: {"outputs": out, "targets": y})
            evaluate(torch.zeros(2, 3), torch.tensor([0, 1]))  # three scores for two classes
            evaluate(torch.tensor([[1.0, 0.0], [float("nan"), 0.0], [0.0, 1.0]]), torch.tensor([0, 1, 7]))
            tracker.close()
    text = " ".join(str(w.message) for w in caught)
    assert "PRCurves: outputs of shape (2, 3) don't match 2 classes" in text
    assert "PRCurves: 1 validation targets are outside 0..1" in text
    assert "PRCurves: 1 validation rows have non-finite outputs" in text
    assert writer.tags() == {"pr_curve/a", "pr_curve/b"}


def test_no_validation_means_a_clear_warning():
    with pytest.warns(LooptrackWarning, match="PRCurves: no validation batch was seen"):
        with Tracker(None, callbacks=[PRCurves(classes=["a"])], writer="memory") as tracker:
            tracker.train_step(lambda: torch.tensor(1.0))()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"classes": []}, "non-empty list"),
        ({"classes": "abc"}, "non-empty list"),
        ({"classes": ["a"], "num_thresholds": 500}, "2..127"),
    ],
)
def test_pr_curves_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PRCurves(**kwargs)
