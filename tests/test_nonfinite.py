"""NonFiniteSentinel names the module, step, direction and dtype where NaN/inf first appear, with no host sync on
the steps it does not check and one read-back on those it does; action="raise" stops the loop whatever strict says."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from helpers import Fault, FaultyNet, fashion_batches, train_tutorial

from callbacks import Callback, NonFiniteSentinel
from trackers import CallbackError, LoggingError, LooptrackWarning, MemoryWriter, NonFiniteError, Tracker
from trackers.core.dispatch import CallbackList
from trackers.core.state import BatchRecord, RunState
from trackers.tools.demo import SyntheticFashionMNIST, TutorialNet, tutorial_step
from trackers.tools.syncs import SyncCounter


def _batches(n: int, nan_at: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(4, 8, generator=generator), torch.randint(0, 3, (4,), generator=generator)) for _ in range(n)
    ]
    if nan_at is not None:
        batches[nan_at][0][1, 2] = float("nan")
    return batches


def _train(
    net: FaultyNet,
    tracker: Tracker,
    *,
    steps: int = 8,
    fault_at: int | None = None,
    mode: str = "forward",
    nan_at: int | None = None,
    loss_fn: Any = F.cross_entropy,
    model: torch.nn.Module | None = None,
) -> None:
    """Train ``steps`` steps with the fault on at step ``fault_at`` (a NaN in the batch of step ``nan_at``), calling
    ``model`` (``net`` itself by default, or a wrapper of it)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    called = net if model is None else model

    @tracker.train_step
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(called(x), y)
        loss.backward()
        optimizer.step()
        return loss

    for index, (x, y) in enumerate(_batches(steps, nan_at)):
        net.fault.mode = mode if index == fault_at else None
        step(x, y)


@pytest.mark.parametrize("mode", ["forward", "backward"])
def test_a_compiled_model_is_checked_whole_and_its_faulty_step_run_again_eagerly(mode):
    torch.manual_seed(0)
    net = FaultyNet()
    model = torch.compile(net, backend="aot_eager")
    sentinel = NonFiniteSentinel()
    with pytest.warns(
        LooptrackWarning, match=f"NonFiniteSentinel: NaN/inf first appeared in the {mode} of module 'fault'"
    ):
        with Tracker(model, callbacks=[sentinel], writer="memory") as tracker:
            _train(net, tracker, steps=4, fault_at=2, mode=mode, model=model)
    first = sentinel.findings[0]
    assert (first.module, first.step, first.direction, first.produced) == ("fault", 2, mode, True)


class Dropped(FaultyNet):
    """Net with BatchNorm (running statistics) and Dropout (random numbers) before the fault."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(16)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fault(self.drop(self.norm(self.fc1(x))))))


def _state_after(sentinel: NonFiniteSentinel | None, mode: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = Dropped()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LooptrackWarning)
        with Tracker(net, callbacks=[sentinel] if sentinel else [], writer="memory") as tracker:
            _train(net, tracker, steps=4, fault_at=1, mode=mode)
    return {**net.state_dict(), "rng": torch.get_rng_state()}


@pytest.mark.parametrize("mode", ["forward", "backward"])
def test_running_a_step_again_changes_nothing_in_the_model_its_statistics_or_the_random_numbers(mode):
    """The replay runs on fresh parameter leaves, cloned buffers and a forked random state: the run with the
    sentinel ends bit-equal to the run without it, NaN weights, BatchNorm statistics and dropout draws alike."""
    sentinel = NonFiniteSentinel()
    watched, bare = _state_after(sentinel, mode), _state_after(None, mode)
    assert (sentinel.findings[0].module, sentinel.findings[0].step) == ("fault", 1)
    assert watched.keys() == bare.keys()
    for name in bare:
        assert torch.equal(watched[name], bare[name]) or (
            torch.isnan(watched[name]).any() and torch.allclose(watched[name], bare[name], equal_nan=True, rtol=0)
        ), name


class Holder(torch.nn.Module):
    """What a LightningModule is to its loop: the model given to the Tracker, whose own forward is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.net = FaultyNet()


def test_when_the_model_given_is_not_the_one_called_the_modules_it_calls_are_watched_from_the_next_step():
    torch.manual_seed(0)
    holder = Holder()
    sentinel = NonFiniteSentinel()
    with pytest.warns(LooptrackWarning, match="module 'net.fault'"):
        with Tracker(holder, callbacks=[sentinel], writer="memory") as tracker:
            _train(holder.net, tracker, steps=4, fault_at=2)
    assert (sentinel.findings[0].module, sentinel.findings[0].step, sentinel.findings[0].direction) == (
        "net.fault",
        2,
        "forward",
    )


def _largest_input_at(net: FaultyNet, module: torch.nn.Module, step: int) -> list[float]:
    """Records the largest |input| of ``module`` at the ``step``-th forward call (filled while training)."""
    seen: list[float] = []
    calls = [0]

    def record(m: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if calls[0] == step:
            seen.append(args[0].detach().abs().max().item())
        calls[0] += 1

    module.register_forward_pre_hook(record)
    return seen


def _texts(writer: MemoryWriter) -> list[Any]:
    writer.flush()
    return [r for r in writer.records if r.kind == "text"]


# ------------------------------------------------------------------------------------------- forward and backward
@pytest.mark.parametrize("every_n_steps", [1, 5])
def test_a_forward_nan_is_named_at_its_step_with_dtype_and_input_magnitude(every_n_steps):
    torch.manual_seed(0)
    net, writer = FaultyNet(), MemoryWriter()
    sentinel = NonFiniteSentinel(every_n_steps=every_n_steps)
    largest = _largest_input_at(net, net.fault, step=3)
    with pytest.warns(LooptrackWarning) as caught:
        with Tracker(net, callbacks=[sentinel], writer=writer) as tracker:
            _train(net, tracker, fault_at=3, mode="forward")
    first = sentinel.findings[0]
    assert (first.module, first.step, first.direction, first.produced) == ("fault", 3, "forward", True)
    assert first.dtype == torch.float32 and first.type_name == "Fault"
    assert first.input_magnitude == pytest.approx(largest[0])
    messages = [str(w.message) for w in caught if "NonFiniteSentinel" in str(w.message)]
    assert len(messages) == 1  # warned once, though later steps stay non-finite (the weights went NaN)
    for part in ("'fault' (Fault)", "at step 3", "forward", "float32", f"largest |input| {largest[0]:.3g}", "Fix:"):
        assert part in messages[0]
    assert "learning rate" in messages[0] and "larger dtype" in messages[0]
    texts = _texts(writer)
    assert texts[0].tag == "nonfinite/forward" and texts[0].step == 3 and "'fault'" in texts[0].text
    assert len(texts) == len(sentinel.findings)  # once per module and direction


@pytest.mark.parametrize("inplace", [False, True])
def test_a_backward_only_nan_is_named_with_direction_backward(inplace):
    torch.manual_seed(0)
    net = FaultyNet(inplace=inplace)  # an in-place ReLU after the fault does not move the blame onto it
    sentinel = NonFiniteSentinel()
    largest = _largest_input_at(net, net.fault, step=2)
    with pytest.warns(LooptrackWarning, match=r"backward of module 'fault' \(Fault\) at step 2"):
        with Tracker(net, callbacks=[sentinel], writer="memory") as tracker:
            _train(net, tracker, fault_at=2, mode="backward")
    first = sentinel.findings[0]
    assert (first.module, first.step, first.direction, first.produced) == ("fault", 2, "backward", True)
    assert first.dtype == torch.float32
    assert first.input_magnitude == pytest.approx(largest[0])
    assert first.gradient_magnitude is not None and first.gradient_magnitude > 0


# --------------------------------------------------------------------------------------------------- raise
@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("mode", ["forward", "backward"])
def test_raise_stops_the_loop_at_that_step_whatever_strict(strict, mode):
    torch.manual_seed(0)
    net = FaultyNet()
    tracker = Tracker(net, callbacks=[NonFiniteSentinel(action="raise")], writer=MemoryWriter(), strict=strict)
    with pytest.raises(NonFiniteError) as raised:
        with tracker:
            _train(net, tracker, fault_at=4, mode=mode)
    error = raised.value
    assert (error.module, error.step, error.direction, error.dtype) == ("fault", 4, mode, torch.float32)
    assert isinstance(error, LoggingError) and not isinstance(error, CallbackError)
    assert "NonFiniteSentinel" in str(error) and "Fix:" in str(error)
    assert tracker.step == 4 and tracker.closed  # the loop stopped in step 4; the run was ended


def test_a_healthy_tutorial_run_is_quiet():
    net = TutorialNet()
    data = SyntheticFashionMNIST(64, seed=1)
    sentinel = NonFiniteSentinel(action="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, callbacks=[sentinel], writer="memory") as tracker:
            losses = train_tutorial(
                tracker, net, fashion_batches(data, 4, 8), optimizer=torch.optim.SGD(net.parameters(), lr=0.01)
            )
    assert len(losses) == 4 and sentinel.findings == []
    assert not [w for w in caught if issubclass(w.category, LooptrackWarning)]


# --------------------------------------------------------------------------------------------------- syncs
class ReadBacks(SyncCounter):
    """Host syncs (``.item()`` and friends) and copies of tensors to the host, which is what a read-back is."""

    def __init__(self) -> None:
        super().__init__()
        self.copies = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        if func is torch.ops.aten._to_copy.default and str((kwargs or {}).get("device")) == "cpu":
            self.copies += 1
        return super().__torch_dispatch__(func, types, args, kwargs)


def test_no_sync_on_the_steps_it_does_not_check_and_one_read_back_on_those_it_does():
    torch.manual_seed(0)
    net = TutorialNet()
    data = SyntheticFashionMNIST(80, seed=2)
    sentinel = NonFiniteSentinel(every_n_steps=5)
    counts = []
    with Tracker(net, callbacks=[sentinel], writer="memory") as tracker:
        step = tracker.train_step(tutorial_step(net, torch.optim.SGD(net.parameters(), lr=0.01)))
        for inputs, labels in fashion_batches(data, 10, 8):
            with ReadBacks() as counter:
                step(inputs, labels)
            counts.append((counter.syncs, counter.copies))
    assert counts == [(0, 0)] * 4 + [(0, 1)] + [(0, 0)] * 4 + [(0, 1)]  # checked at steps 4 and 9
    assert sentinel.findings == []


def test_a_nan_inside_a_window_is_found_at_its_end_and_named_with_its_own_step():
    torch.manual_seed(0)
    net = FaultyNet()
    sentinel = NonFiniteSentinel(every_n_steps=5, action="raise")
    counts = []
    tracker = Tracker(net, callbacks=[sentinel], writer="memory")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    @tracker.train_step
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        return loss

    with pytest.raises(NonFiniteError) as raised:
        for index, (x, y) in enumerate(_batches(10)):
            net.fault.mode = "forward" if index == 6 else None
            with ReadBacks() as counter:
                try:
                    step(x, y)
                finally:
                    counts.append((counter.syncs, counter.copies))
    tracker.close()
    assert (raised.value.module, raised.value.step, raised.value.direction) == ("fault", 6, "forward")
    assert counts == [(0, 0)] * 4 + [(0, 1)] + [(0, 0)] * 4 + [(0, 1)]  # raised at step 9, the window's end


# ------------------------------------------------------------------------------------------ who is named
class Block(torch.nn.Module):
    """Two layers; ``own_fault`` makes its own code between them produce NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.fault = Fault()
        self.b = torch.nn.Linear(8, 8)
        self.own_fault = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fault(self.a(x))
        if self.own_fault:
            h = torch.log(-h.abs() - 1)
        return self.b(h)


class Deep(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = torch.nn.Linear(8, 8)  # so that the gradient at the block's input is measured too
        self.block = Block()
        self.head = torch.nn.Linear(8, 3)
        self.fault = Fault()  # unused; _train sets its mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.block(self.pre(x))))


def _first_finding(net: torch.nn.Module, every_n_steps: int = 1, **train: Any) -> Any:
    sentinel = NonFiniteSentinel(every_n_steps=every_n_steps)
    with pytest.warns(LooptrackWarning, match="NonFiniteSentinel"):
        with Tracker(net, callbacks=[sentinel], writer="memory") as tracker:
            _train(net, tracker, steps=4, **train)
    return sentinel.findings[0]


def test_of_a_module_and_its_children_the_innermost_that_produced_it_is_named():
    torch.manual_seed(0)
    net = Deep()
    net.block.fault.mode = "forward"
    finding = _first_finding(net)
    assert (finding.module, finding.direction, finding.produced, finding.step) == ("block.fault", "forward", True, 0)

    net = Deep()
    net.block.fault.mode = "backward"
    finding = _first_finding(net)
    assert (finding.module, finding.direction, finding.produced, finding.step) == ("block.fault", "backward", True, 0)


class LogInPlace(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.log_()


class WithTeacher(FaultyNet):
    """A frozen part run under no_grad inside the forward, its last module in-place; its output is added to the
    result (``uses_teacher``) or thrown away."""

    def __init__(self, uses_teacher: bool) -> None:
        super().__init__()
        self.teacher = torch.nn.Sequential(torch.nn.Linear(8, 8), LogInPlace())
        self.teacher.requires_grad_(False)
        self.uses_teacher = uses_teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            taught = self.teacher(x - 10)
        out = super().forward(x)
        return out + taught[:, :3] if self.uses_teacher else out


@pytest.mark.parametrize(
    ("every_n_steps", "uses_teacher"),
    [(1, True), (2, True), (2, False)],
    ids=["checked-whole", "measured", "measured-output-unused"],
)
def test_an_in_place_module_is_measured_after_it_ran_also_without_gradients(every_n_steps, uses_teacher):
    """Checking steps whole sees what reaches the gradients; measuring every call also sees a NaN thrown away."""
    torch.manual_seed(0)
    finding = _first_finding(WithTeacher(uses_teacher), every_n_steps=every_n_steps)
    assert (finding.module, finding.type_name, finding.direction, finding.produced) == (
        "teacher.1",
        "LogInPlace",
        "forward",
        True,
    )


class ScaledInPlace(FaultyNet):
    """Code between two modules that overflows their activation in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h *= 1e39
        return self.fc2(self.act(self.fault(h)))


def test_an_in_place_change_between_modules_is_not_blamed_on_the_next_module():
    torch.manual_seed(0)
    finding = _first_finding(ScaledInPlace())
    assert (finding.module, finding.direction, finding.produced) == ("fault", "forward", False)
    assert "code between modules" in finding.describe()


class KeywordNet(FaultyNet):
    """Calls the fault with a keyword argument, which module hooks do not see."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fault(x=self.fc1(x))))


def test_a_module_whose_inputs_are_unseen_is_named_only_if_nothing_before_it_was_non_finite():
    torch.manual_seed(0)
    finding = _first_finding(KeywordNet(), fault_at=1)
    assert (finding.module, finding.step, finding.direction, finding.produced) == ("fault", 1, "forward", True)
    assert not finding.inputs_seen and "passed by keyword" in finding.describe()
    finding = _first_finding(KeywordNet(), nan_at=2)
    assert (finding.module, finding.step, finding.direction, finding.produced) == ("fc1", 2, "forward", False)


def test_a_module_whose_own_code_produced_it_is_named_not_its_child():
    torch.manual_seed(0)
    net = Deep()
    net.block.own_fault = True
    finding = _first_finding(net)
    assert (finding.module, finding.type_name, finding.direction, finding.produced) == (
        "block",
        "Block",
        "forward",
        True,
    )


def test_nan_in_the_batch_is_said_to_come_from_the_batch():
    torch.manual_seed(0)
    finding = _first_finding(FaultyNet(), nan_at=1)
    assert (finding.module, finding.step, finding.direction, finding.produced) == ("fc1", 1, "forward", False)
    assert finding.input_magnitude is None
    assert "came from the batch" in finding.describe() and "torch.isfinite(inputs)" in finding.describe()


def test_a_nan_gradient_from_the_loss_is_said_to_come_from_the_loss():
    torch.manual_seed(0)

    def log_of_zero(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # forward -inf, gradient NaN
        return F.cross_entropy(outputs, labels) + torch.log(outputs.sum() * 0)

    finding = _first_finding(FaultyNet(), loss_fn=log_of_zero)
    assert (finding.module, finding.step, finding.direction, finding.produced) == ("fc2", 0, "backward", False)
    assert "came from the loss" in finding.describe()


def test_validation_forwards_are_not_measured():
    torch.manual_seed(0)
    net = FaultyNet()
    sentinel = NonFiniteSentinel()
    with Tracker(net, callbacks=[sentinel], writer="memory") as tracker:
        _train(net, tracker, steps=2)
        evaluate = tracker.eval_step(lambda x, y: F.cross_entropy(net(x), y))
        net.fault.mode = "forward"
        with torch.no_grad(), tracker.validation():
            loss = evaluate(*_batches(1)[0])
    assert torch.isnan(loss) and sentinel.findings == []


def test_without_a_model_it_says_it_checks_nothing():
    sentinel = NonFiniteSentinel()
    with pytest.warns(LooptrackWarning, match=r"NonFiniteSentinel: no call of the model was seen .*Tracker\(net"):
        with Tracker(callbacks=[sentinel], writer="memory") as tracker:
            tracker.train_step(lambda x, y: torch.tensor(float("nan")))(*_batches(1)[0])
    assert sentinel.findings == []


# ----------------------------------------------------------------------------------- dispatch, arguments, registry
class Stops(Callback):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        raise self.error


@pytest.mark.parametrize("strict", [False, True])
def test_dispatch_lets_nonfinite_error_through_and_still_reports_other_failures(strict):
    state = RunState(model=None, writer=MemoryWriter())
    stop = NonFiniteError("stop", module="fc", step=0, direction="forward")
    with pytest.raises(NonFiniteError):
        CallbackList([Stops(stop)], strict=strict).call("on_train_batch_end", state, BatchRecord())
    failing = CallbackList([Stops(RuntimeError("boom"))], strict=strict)
    if strict:
        with pytest.raises(CallbackError, match="Stops.on_train_batch_end failed"):
            failing.call("on_train_batch_end", state, BatchRecord())
    else:
        with pytest.warns(LooptrackWarning, match="Stops.on_train_batch_end failed"):
            failing.call("on_train_batch_end", state, BatchRecord())
    state.writer.close()


def test_arguments_are_checked_and_the_registry_knows_it():
    with pytest.raises(ValueError, match="NonFiniteSentinel: action must be 'warn' .* or 'raise'"):
        NonFiniteSentinel(action="stop")
    with pytest.raises(ValueError, match="NonFiniteSentinel: every_n_steps must be a positive integer"):
        NonFiniteSentinel(every_n_steps=0)
    with pytest.raises(TypeError, match="include must be a list of glob patterns"):
        NonFiniteSentinel(include="fc*")
    tracker = Tracker.from_config(
        {"writer": "memory", "callbacks": [{"nonfinite_sentinel": {"action": "raise", "every_n_steps": 3}}]},
        FaultyNet(),
    )
    assert repr(tracker.callbacks.callbacks[0]) == "NonFiniteSentinel(action='raise', every_n_steps=3)"
    tracker.close()
