"""Module hooks callbacks ask for: chosen by name (parameter-less modules too), registered once before the first
step, removed at close, the same names inside DDP and torch.compile, and a failing hook never stops training."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.nn.functional as F
from helpers import fashion_batches, train_tutorial

from callbacks import Callback
from trackers import LooptrackWarning, Tracker
from trackers.core.module_hooks import ModuleHooks, unwrap
from trackers.errors import CallbackError
from trackers.tools.demo import SyntheticFashionMNIST, TutorialNet


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)
        self.act = torch.nn.ReLU(inplace=True)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.linear(x)))


class Stack(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.Sequential(Block(), Block())
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


class Watch(Callback):
    """Records which modules its hooks saw, forward and backward."""

    def __init__(self, include=("*",), exclude=(), fail: bool = False) -> None:
        self.include, self.exclude, self.fail = include, exclude, fail
        self.forward: list[str] = []
        self.backward: list[str] = []
        self.asked = 0

    def module_hooks(self):
        self.asked += 1
        return [ModuleHooks(self.include, self.exclude, forward=self._forward, backward=self._backward)]

    def _forward(self, name, module, inputs, output) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.forward.append(name)

    def _backward(self, name, module, grad) -> None:
        self.backward.append(name)


def _steps(net: torch.nn.Module, tracker: Tracker, n: int = 3) -> None:
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)

    @tracker.train_step
    def step(x, y):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        return loss

    torch.manual_seed(0)
    for _ in range(n):
        step(torch.randn(4, 8), torch.randint(0, 2, (4,)))


def _hook_count(net: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


def test_globs_select_modules_by_name_parameterless_ones_included():
    net = Stack()
    watch = Watch(include=["blocks.*.act", "blocks.*.drop", "head"])
    with Tracker(net, callbacks=[watch], writer="memory") as tracker:
        _steps(net, tracker, n=2)
    names = ["blocks.0.act", "blocks.0.drop", "blocks.1.act", "blocks.1.drop", "head"]
    assert watch.forward == names * 2  # execution order, every step
    # gradients of each output, as they are computed: backward order; ReLU(inplace=True) works beside them
    assert watch.backward == list(reversed(names)) * 2
    assert watch.asked == 1


def test_hooks_are_added_once_before_the_first_step_and_removed_at_close():
    net = Stack()
    before = _hook_count(net)
    tracker = Tracker(net, callbacks=[Watch(exclude=["*.drop"])], writer="memory")
    registered = _hook_count(net)
    assert registered > before
    _steps(net, tracker, n=3)
    assert _hook_count(net) == registered  # nothing added or removed while training runs
    tracker.close()
    assert _hook_count(net) == before


def test_patterns_that_select_nothing_are_said_with_real_names():
    net = TutorialNet()
    with pytest.warns(
        LooptrackWarning, match=r"Watch: its include/exclude patterns select no module of TutorialNet.*'conv1'"
    ):
        Tracker(net, callbacks=[Watch(include=["features.*"])], writer="memory").close()


def test_a_failing_hook_is_reported_once_and_training_goes_on():
    net = Stack()
    with pytest.warns(LooptrackWarning, match=r"Watch\.module hook on 'blocks.0.linear' failed .*RuntimeError: boom"):
        with Tracker(net, callbacks=[Watch(include=["blocks.0.linear"], fail=True)], writer="memory") as tracker:
            _steps(net, tracker, n=3)
    assert tracker.step == 2


def test_a_failing_hook_raises_in_strict_mode():
    net = Stack()
    tracker = Tracker(net, callbacks=[Watch(include=["head"], fail=True)], writer="memory", strict=True)
    with pytest.raises(CallbackError, match="module hook on 'head'"):
        _steps(net, tracker, n=1)
    tracker.close()


def test_compiled_models_keep_their_names_and_run_the_hooks():
    net = Stack()
    compiled = torch.compile(net, backend="eager")
    assert unwrap(compiled) is net
    watch = Watch(include=["blocks.*.act", "head"])
    with Tracker(compiled, callbacks=[watch], writer="memory") as tracker:
        _steps(compiled, tracker, n=2)
    assert watch.forward == ["blocks.0.act", "blocks.1.act", "head"] * 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_wrapped_models_keep_their_names():
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        net = Stack()
        wrapped = DistributedDataParallel(net)
        assert unwrap(wrapped) is net
        watch = Watch(include=["head"])
        with Tracker(wrapped, callbacks=[watch], writer="memory") as tracker:
            _steps(wrapped, tracker, n=2)
        assert watch.forward == ["head", "head"] and watch.backward == ["head", "head"]
    finally:
        dist.destroy_process_group()


def test_the_tutorial_loop_through_the_shared_helper():
    net = TutorialNet()
    watch = Watch(include=["pool", "fc*"])
    data = SyntheticFashionMNIST(64, seed=1)
    with Tracker(net, callbacks=[watch], writer="memory") as tracker:
        train_tutorial(tracker, net, fashion_batches(data, 2, 8), optimizer=torch.optim.SGD(net.parameters(), lr=0.01))
    # the pool module is called twice a forward: each call is seen
    assert watch.forward == ["pool", "pool", "fc1", "fc2", "fc3"] * 2


def test_a_strict_callback_failing_at_the_start_still_ends_the_run():
    class Broken(Callback):
        def on_train_start(self, state):
            raise RuntimeError("no")

    net = Stack()
    before = _hook_count(net)
    tracker = Tracker(net, callbacks=[Broken(), Watch()], writer="memory", strict=True)
    with pytest.raises(CallbackError, match="Broken.on_train_start failed"):
        with tracker:
            pass
    assert tracker.closed and tracker.writer.closed and _hook_count(net) == before
