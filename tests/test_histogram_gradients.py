"""ParameterHistograms' gradients/ histograms against the gradients each optimizer step used (the plain loop, ignite).

Lightning, whose optimizer.step() runs the step's forward and backward, is in test_adapter_lightning.py,
transformers in test_adapter_transformers.py.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyNet, make_batches
from helpers import train_tutorial

from callbacks import ParameterHistograms
from trackers import LooptrackWarning, MemoryWriter, Tracker


class StepGradients:
    """The gradients each optimizer step is about to use, in order, recorded by the optimizers' own pre-step hooks."""

    def __init__(self, net: torch.nn.Module, *optimizers: torch.optim.Optimizer) -> None:
        self.net = net
        self.steps: list[dict[str, torch.Tensor]] = []
        for optimizer in optimizers:
            optimizer.register_step_pre_hook(self._before)

    def _before(self, optimizer, args, kwargs) -> None:
        ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.steps.append(
            {n: p.grad.clone() for n, p in self.net.named_parameters() if id(p) in ids and p.grad is not None}
        )


def gradient_histograms(writer: MemoryWriter) -> dict[str, list]:
    writer.flush()
    out: dict[str, list] = {}
    for record in writer.records:
        if record.kind == "histogram_raw" and record.tag.startswith("gradients/"):
            out.setdefault(record.tag.removeprefix("gradients/"), []).append(record)
    return out


def assert_same(record, expected: torch.Tensor) -> None:
    expected = expected.double()
    assert record.num == expected.numel()
    assert record.sum == pytest.approx(expected.sum().item(), rel=1e-6, abs=1e-9)
    assert record.sum_squares == pytest.approx(expected.square().sum().item(), rel=1e-6)
    assert (record.min, record.max) == pytest.approx((expected.min().item(), expected.max().item()), rel=1e-6)


def test_plain_loop_logs_the_gradients_of_the_logging_steps_and_leaves_no_hook():
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reference = StepGradients(net, optimizer)
    writer = MemoryWriter()
    with Tracker(net, callbacks=[ParameterHistograms(every_n_steps=2)], writer=writer) as tracker:
        train_tutorial(tracker, net, make_batches(6), optimizer=optimizer)
    logged = gradient_histograms(writer)
    assert set(logged) == {n for n, _ in net.named_parameters()}
    for name, records in logged.items():
        assert [r.step for r in records] == [1, 3, 5]
        for record in records:
            assert_same(record, reference.steps[record.step][name])
    assert not optimizer._optimizer_step_post_hooks  # the one-time hooks of the logging steps are gone


def test_each_parameter_from_the_optimizer_that_stepped_it():
    """Two optimizers, one backward between their steps: fc2's gradients are those its own optimizer used."""
    torch.manual_seed(0)
    net = TinyNet()
    first = torch.optim.SGD(net.fc1.parameters(), lr=0.1)
    second = torch.optim.SGD(net.fc2.parameters(), lr=0.1)
    reference = StepGradients(net, first, second)
    writer = MemoryWriter()
    with Tracker(net, callbacks=[ParameterHistograms(every_n_steps=1)], writer=writer) as tracker:

        @tracker.train_step
        def train_step(inputs, labels):
            loss = F.cross_entropy(net(inputs), labels)
            loss.backward()
            first.step()
            net.fc2(torch.ones(2, 16)).square().sum().backward()  # changes fc2's gradients after fc1's step
            second.step()
            first.zero_grad()
            second.zero_grad()
            return loss

        for inputs, labels in make_batches(3):
            train_step(inputs, labels)
    logged = gradient_histograms(writer)
    for name, records in logged.items():
        assert [r.step for r in records] == [0, 1, 2]
        optimizer_steps = reference.steps[0::2] if name.startswith("fc1") else reference.steps[1::2]
        for record in records:
            assert_same(record, optimizer_steps[record.step][name])


def test_a_loop_stepping_outside_the_tracked_step_gets_the_gradients_at_the_steps_end():
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reference = StepGradients(net, optimizer)
    writer = MemoryWriter()
    with Tracker(net, callbacks=[ParameterHistograms(every_n_steps=1)], writer=writer) as tracker:

        @tracker.train_step
        def train_step(inputs, labels):
            loss = F.cross_entropy(net(inputs), labels)
            loss.backward()
            return loss

        for inputs, labels in make_batches(3):
            train_step(inputs, labels)
            optimizer.step()
            optimizer.zero_grad()
    logged = gradient_histograms(writer)
    assert set(logged) == {n for n, _ in net.named_parameters()}
    for name, records in logged.items():
        assert [r.step for r in records] == [0, 1, 2]
        for record in records:
            assert_same(record, reference.steps[record.step][name])


def test_a_failure_inside_the_optimizer_step_is_reported_and_training_goes_on():
    class Failing(MemoryWriter):
        def histogram(self, tag, values, step=None, **options):
            if tag.startswith("gradients/"):
                raise RuntimeError("no room")
            return super().histogram(tag, values, step, **options)

    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    steps: list[int] = []
    optimizer.register_step_post_hook(lambda *_: steps.append(len(steps)))
    writer = Failing()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, callbacks=[ParameterHistograms(every_n_steps=1)], writer=writer) as tracker:
            train_tutorial(tracker, net, make_batches(2), optimizer=optimizer)
    messages = [str(w.message) for w in caught if issubclass(w.category, LooptrackWarning)]
    assert [m for m in messages if "as the optimizer stepped failed at step 0 (RuntimeError: no room)" in m]
    assert steps == [0, 1]  # both optimizer steps ran to their end
    writer.flush()
    assert writer.tags("histogram_raw") == {f"parameters/{n}" for n, _ in net.named_parameters()}


def test_ignite_with_gradient_accumulation_logs_the_summed_gradients_each_step_used():
    ignite_engine = pytest.importorskip("ignite.engine")
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reference = StepGradients(net, optimizer)
    trainer = ignite_engine.create_supervised_trainer(net, optimizer, F.cross_entropy, gradient_accumulation_steps=2)
    iterations: list[int] = []
    optimizer.register_step_pre_hook(lambda *_: iterations.append(trainer.state.iteration))
    writer = MemoryWriter()
    inputs = torch.cat([x for x, _ in make_batches(6)])
    labels = torch.cat([y for _, y in make_batches(6)])
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, labels), batch_size=8)
    with Tracker(net, callbacks=[ParameterHistograms(every_n_steps=1)], writer=writer).attach(trainer):
        trainer.run(data, max_epochs=1)
    assert len(reference.steps) == 3
    logged = gradient_histograms(writer)
    assert set(logged) == {n for n, _ in net.named_parameters()}
    for name, records in logged.items():
        assert [r.step for r in records] == iterations
        for record, used in zip(records, reference.steps):
            assert_same(record, used[name])
