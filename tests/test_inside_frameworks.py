"""ActivationStats and NonFiniteSentinel inside the real framework loops, driven as each framework's docs drive them.

ActivationStats (ignite, transformers): the logged ``activations/<module>/<stat>`` values against statistics computed
here from the outputs a forward hook of our own recorded, grouped by the framework's own step counter; the logged
steps against the framework's own logging cadence; evaluation forwards (under ``no_grad``) left out even when a
validation pass falls inside the measured window.

NonFiniteSentinel (Lightning, ignite, transformers): a module that turns NaN in its forward, or only in its
backward, at a known training step is named at that step, on the axis ``LossLogger``'s ``train/loss`` uses in the
same loop, in ``findings`` and in the ``nonfinite/<direction>`` text read back from the event file with
TensorBoard's reader; ``action="raise"`` stops ``fit``/``run``/``train`` with ``NonFiniteError`` and the run's
event file is closed and readable; a healthy run logs nothing under ``nonfinite/``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from adapter_runs import EPOCHS, TRAIN_BATCHES, data, lightning_trainer, loader
from conftest import load_run

from callbacks import ActivationStats, LossLogger, NonFiniteSentinel
from callbacks.activation_stats import STATS
from trackers import LooptrackWarning, MemoryWriter, NonFiniteError, Tracker

pytestmark = pytest.mark.slow

FAULT_AT = 4  # the 0-based training step whose forward (or backward) goes non-finite: mid second epoch
STEPS = EPOCHS * TRAIN_BATCHES  # every run here: 2 epochs of 3 steps, an evaluation at the end of each epoch


# ------------------------------------------------------------------------------------------------ shared helpers
class Fault(torch.nn.Module):
    """``activation(x)`` (``x`` if None), except in a training forward while ``armed`` (the loop arms it for step
    FAULT_AT, each framework in its own way): ``"forward"`` returns log(-|y| - 1), NaN; ``"backward"`` returns
    y + sqrt(y * 0), finite in the forward but whose gradient is inf * 0 = NaN. A function of its input while
    armed or not, as a module is: the sentinel may run the step's forward again to find the culprit."""

    def __init__(self, mode: str | None, activation: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.mode, self.activation = mode, activation
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.activation is None else self.activation(x)
        if not (self.armed and torch.is_grad_enabled()):
            return y
        if self.mode == "forward":
            return torch.log(-y.abs() - 1)
        if self.mode == "backward":
            return y + torch.sqrt(y * 0)
        return y


class Mlp(torch.nn.Module):
    """8 -> 16 -> 3, with a ReLU module (zeros to count) and an optional fault between the two layers; a quarter
    of the hidden units have a large negative bias, so they are dead."""

    def __init__(self, fault: Fault | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(8, 16)
        with torch.no_grad():
            self.fc1.bias[:4] = -50.0
        self.fault = fault if fault is not None else torch.nn.Identity()
        self.act = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fault(self.fc1(x))))


def reference_stats(outputs: Sequence[torch.Tensor]) -> dict[str, float]:
    """The six statistics of ``outputs`` together, computed here in float64 from ActivationStats' documented
    definitions (units are dim 1 of an output of two dims or more, else one unit)."""
    xs = [x.double() for x in outputs]
    flat = torch.cat([x.flatten() for x in xs])
    finite = flat[torch.isfinite(flat)]
    alive: dict[int, torch.Tensor] = {}
    for x in xs:
        if x.ndim >= 2:
            units = (x != 0).transpose(0, 1).reshape(x.shape[1], -1).any(dim=1)
        else:
            units = (x != 0).any().reshape(1)
        alive[units.numel()] = alive[units.numel()] | units if units.numel() in alive else units
    dead = sum(int((~units).sum()) for units in alive.values()) / sum(units.numel() for units in alive.values())
    return {
        "mean": finite.mean().item(),
        "std": finite.std(correction=0).item(),
        "abs_max": finite.abs().max().item(),
        "zero_fraction": (flat == 0).double().mean().item(),
        "dead_fraction": dead,
        "nonfinite": float((~torch.isfinite(flat)).sum()),
    }


class Outputs:
    """A forward hook of our own on every leaf module of ``model``: each output (cloned) in call order, as
    ``(kind, key, tensor)``; kind is "train" for forwards with gradients enabled, else "eval"; ``key()`` is read
    at the forward (the framework's step counter)."""

    def __init__(self, model: torch.nn.Module, key: Callable[[], int]) -> None:
        self.calls: dict[str, list[tuple[str, int, torch.Tensor]]] = {}
        self.handles = []
        for name, module in model.named_modules():
            if next(module.children(), None) is None:
                self.handles.append(module.register_forward_hook(self._hook(name, key)))

    def _hook(self, name: str, key: Callable[[], int]) -> Callable[..., None]:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            kind = "train" if torch.is_grad_enabled() else "eval"
            self.calls.setdefault(name, []).append((kind, key(), output.detach().clone()))

        return hook

    def trained(self) -> set[str]:
        return {name for name, calls in self.calls.items() if any(kind == "train" for kind, _, _ in calls)}

    def window(self, name: str, previous: int, step: int, window: int | None) -> tuple[list, list]:
        """The training outputs of ``name`` in the window ending at the logged ``step`` (its own step's with
        window=1, every step after ``previous`` with None), and the evaluation outputs run inside that window."""
        calls = self.calls[name]
        first = step if window == 1 else previous + 1
        positions = [i for i, (kind, key, _) in enumerate(calls) if kind == "train" and first <= key <= step]
        train = [calls[i][2] for i in positions]
        evaluation = [t for kind, _, t in calls[positions[0] : positions[-1] + 1] if kind == "eval"]
        return train, evaluation


def check_activations(writer: MemoryWriter, outputs: Outputs, steps: list[int], window: int | None) -> int:
    """Every logged ``activations/<module>/<stat>`` equals the reference at the framework's ``steps``; returns how
    many windows held evaluation forwards (each of which would have changed the values had they been measured)."""
    names = outputs.trained()
    assert writer.tags("scalar") == {f"activations/{name}/{stat}" for name in names for stat in STATS}
    windows_with_evaluation = 0
    for name in sorted(names):
        previous = 0
        expected, changed = [], False
        for step in steps:
            train, evaluation = outputs.window(name, previous, step, window)
            assert train, (name, step)
            expected.append(reference_stats(train))
            if evaluation:
                windows_with_evaluation += 1
                with_evaluation = reference_stats(train + evaluation)
                changed = changed or with_evaluation["mean"] != pytest.approx(expected[-1]["mean"], rel=1e-3)
            previous = step
        assert not windows_with_evaluation or changed, name  # the control: the evaluation forwards would show
        for stat in STATS:
            got = writer.series(f"activations/{name}/{stat}")
            assert [s for s, _ in got] == steps, (name, stat)
            assert [v for _, v in got] == pytest.approx([e[stat] for e in expected], rel=1e-5, abs=1e-6), (name, stat)
    return windows_with_evaluation


def nonfinite_texts(log_dir) -> dict[str, list[tuple[int, str]]]:
    """The ``nonfinite/<direction>`` text records of a run, read back with TensorBoard's reader."""
    run = load_run(log_dir)
    return {
        tag.removesuffix("/text_summary"): [(e.step, e.tensor_proto.string_val[0].decode()) for e in run.Tensors(tag)]
        for tag in run.Tags()["tensors"]
        if tag.startswith("nonfinite/")
    }


def loss_steps(log_dir) -> list[int]:
    return [e.step for e in load_run(log_dir).Scalars("train/loss")]


def check_sentinel(
    log_dir,
    sentinel: NonFiniteSentinel,
    error: NonFiniteError | None,
    mode: str | None,
    module: str,
    caught: list[warnings.WarningMessage],
) -> None:
    """What a run with ``Fault(mode)`` at step FAULT_AT must show, in ``findings``, the error and the event file."""
    axis = loss_steps(log_dir)  # LossLogger(every_n_steps=1) in the same run, listed before the sentinel
    texts = nonfinite_texts(log_dir)
    if mode is None:
        assert error is None and sentinel.findings == [] and texts == {}
        assert len(axis) == STEPS
        return
    step = axis[FAULT_AT]
    first = sentinel.findings[0]
    assert (first.module, first.step, first.direction, first.type_name) == (module, step, mode, "Fault")
    assert first.produced
    text_step, text = texts[f"nonfinite/{mode}"][0]
    assert text_step == step
    assert f"the {mode} of module '{module}' (Fault) at step {step}" in text
    if error is None:  # action="warn": warned once, and the run went on to its end
        assert len(axis) == STEPS
        messages = [str(w.message) for w in caught if issubclass(w.category, LooptrackWarning)]
        assert any(f"module '{module}'" in m and f"at step {step}" in m for m in messages), messages
    else:  # action="raise": the loop stopped in that step
        assert (error.module, error.step, error.direction) == (module, step, mode)
        assert len(axis) == FAULT_AT + 1
        assert len(sentinel.findings) == 1 and list(texts) == [f"nonfinite/{mode}"]


SENTINEL_CASES = [
    pytest.param(None, "warn", id="healthy"),
    pytest.param("forward", "warn", id="forward-warn"),
    pytest.param("backward", "warn", id="backward-warn"),
    pytest.param("forward", "raise", id="forward-raise"),
    pytest.param("backward", "raise", id="backward-raise"),
]


def sentinel_callbacks(action: str) -> tuple[list, NonFiniteSentinel]:
    sentinel = NonFiniteSentinel(action=action)
    return [LossLogger(every_n_steps=1), sentinel], sentinel


# ----------------------------------------------------------------------------------------------------- ignite
ignite_engine = pytest.importorskip("ignite.engine")
ignite_metrics = pytest.importorskip("ignite.metrics")
Events = ignite_engine.Events


def ignite_engines(net: torch.nn.Module):
    """As ignite's examples/mnist: create_supervised_trainer, an evaluator with Accuracy and Loss metrics run at
    the end of each epoch."""
    trainer = ignite_engine.create_supervised_trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), F.cross_entropy)
    evaluator = ignite_engine.create_supervised_evaluator(
        net, metrics={"accuracy": ignite_metrics.Accuracy(), "nll": ignite_metrics.Loss(F.cross_entropy)}
    )
    _, val = data()

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):
        evaluator.run(loader(val))

    return trainer, evaluator


@pytest.mark.parametrize("window", [1, None], ids=["window-1", "window-None"])
def test_ignite_activation_stats_are_the_training_forwards_of_the_logged_iterations(window):
    net = Mlp()
    trainer, evaluator = ignite_engines(net)
    outputs = Outputs(net, key=lambda: trainer.state.iteration)
    cadence = []  # ignite's own cadence: where its handlers on ITERATION_COMPLETED(every=2) run
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=2), lambda e: cadence.append(e.state.iteration))
    writer = MemoryWriter()
    with Tracker(net, callbacks=[ActivationStats(every_n_steps=2, window=window)], writer=writer) as tracker:
        tracker.attach(trainer, evaluator=evaluator)
        trainer.run(loader(data()[0]), max_epochs=EPOCHS)
    assert cadence == [2, 4, 6]
    assert outputs.trained() == {"fc1", "fault", "act", "fc2"}
    assert any(kind == "eval" for kind, _, _ in outputs.calls["fc1"])  # the evaluator ran the same modules
    with_evaluation = check_activations(writer, outputs, cadence, window)
    # window=None spans the validation after iteration 3 in the window (2, 4]; window=1 never holds one
    assert with_evaluation == (0 if window == 1 else len(outputs.trained()))
    dead = writer.series("activations/act/dead_fraction")
    assert all(value >= 4 / 16 for _, value in dead)  # the units with bias -50 are dead: real zeros measured


@pytest.mark.parametrize("mode, action", SENTINEL_CASES)
def test_ignite_nonfinite_sentinel_names_the_module_at_the_iteration(tmp_path, mode, action):
    net = Mlp(Fault(mode))
    trainer, evaluator = ignite_engines(net)

    @trainer.on(Events.ITERATION_STARTED)
    def arm(engine):  # ignite's iterations count from 1
        net.fault.armed = engine.state.iteration == FAULT_AT + 1

    cbs, sentinel = sentinel_callbacks(action)
    tracker = Tracker(net, callbacks=cbs, writer=str(tmp_path))
    tracker.attach(trainer, evaluator=evaluator)
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer.run(loader(data()[0]), max_epochs=EPOCHS)
        except NonFiniteError as raised:
            error = raised
    assert (error is not None) == (action == "raise" and mode is not None)
    assert tracker.closed == (error is not None)  # an exception ends the run; else it stays open for more passes
    if error is None:
        tracker.close()
    check_sentinel(tmp_path, sentinel, error, mode, "fault", caught)


# -------------------------------------------------------------------------------------------------- Lightning
pl = pytest.importorskip("lightning.pytorch")


class LitMlp(pl.LightningModule):
    """As Lightning's "basics" examples: self.log in the steps, the optimizer from configure_optimizers."""

    def __init__(self, fault: Fault | None = None) -> None:
        super().__init__()
        self.net = Mlp(fault)

    def forward(self, x):
        return self.net(x)

    def on_train_batch_start(self, batch, batch_idx):
        if isinstance(self.net.fault, Fault):
            self.net.fault.armed = self.global_step == FAULT_AT

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("mode, action", SENTINEL_CASES)
def test_lightning_nonfinite_sentinel_names_the_module_at_the_step(tmp_path, mode, action):
    module = LitMlp(Fault(mode))
    cbs, sentinel = sentinel_callbacks(action)
    tracker = Tracker(module, callbacks=cbs, writer=str(tmp_path))
    trainer = lightning_trainer()
    tracker.attach(trainer)
    train, val = data()
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer.fit(module, loader(train), loader(val))
        except NonFiniteError as raised:
            error = raised
    assert error is None or type(error) is NonFiniteError  # Lightning re-raises the callback's own, unwrapped
    assert (error is not None) == (action == "raise" and mode is not None)
    assert tracker.closed == (error is not None)  # on_exception ends the run; after fit it stays open for test()
    if error is None:
        tracker.close()
    check_sentinel(tmp_path, sentinel, error, mode, "net.fault", caught)


# ----------------------------------------------------------------------------------------------- transformers
transformers = pytest.importorskip("transformers")
from test_adapter_transformers import bert, logged, make_trainer  # noqa: E402


@pytest.mark.parametrize("window", [1, None], ids=["window-1", "window-None"])
def test_transformers_activation_stats_are_the_training_forwards_of_the_logged_global_steps(tmp_path, window):
    model = bert()
    # batch 4: 3 optimizer steps an epoch, 6 in all; the epoch's evaluation after global steps 3 and 6
    trainer = make_trainer(tmp_path, model, n_train=4 * TRAIN_BATCHES, n_eval=8, logging_steps=2)
    # the global step a forward's optimizer step completes: the Trainer's global_step counts the steps taken
    outputs = Outputs(model, key=lambda: trainer.state.global_step + 1)
    writer = MemoryWriter()
    with Tracker(model, callbacks=[ActivationStats(every_n_steps=2, window=window)], writer=writer) as tracker:
        tracker.attach(trainer)
        trainer.train()
        writer.flush()
        during_training = len(writer.records)
        metrics = trainer.evaluate()
        writer.flush()
        assert len(writer.records) == during_training and "eval_loss" in metrics  # evaluate()'s forwards: nothing
    steps = [step for step, _ in logged(trainer, "loss")]  # where the Trainer logs its loss every 2 steps
    assert steps == [2, 4, 6]
    names = outputs.trained()
    assert {"bert.embeddings.word_embeddings", "bert.encoder.layer.0.intermediate.intermediate_act_fn"} <= names
    assert {"classifier", "bert.pooler.activation"} <= names
    # every module that ran in training also ran in the evaluations (in train() and evaluate()), without gradients
    assert all(any(kind == "eval" for kind, _, _ in outputs.calls[name]) for name in names)
    with_evaluation = check_activations(writer, outputs, steps, window)
    # window=None spans the epoch's evaluation after global step 3 in the window (2, 4]; window=1 never holds one
    assert with_evaluation == (0 if window == 1 else len(names))


@pytest.mark.parametrize("mode, action", SENTINEL_CASES)
def test_transformers_nonfinite_sentinel_names_the_module_at_the_global_step(tmp_path, mode, action):
    model = bert()
    fault = model.bert.pooler.activation = Fault(mode, activation=torch.tanh)  # BERT's own pooler Tanh, faulty once
    trainer = make_trainer(tmp_path, model, n_train=4 * TRAIN_BATCHES, n_eval=8, logging_steps=1)

    class Arm(transformers.TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            fault.armed = state.global_step == FAULT_AT

    trainer.add_callback(Arm())
    cbs, sentinel = sentinel_callbacks(action)
    tracker = Tracker(model, callbacks=cbs, writer=str(tmp_path / "run"))
    tracker.attach(trainer)
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer.train()
        except NonFiniteError as raised:
            error = raised
        else:
            trainer.evaluate()  # a pass of the same run, without gradients: nothing checked
    assert (error is not None) == (action == "raise" and mode is not None)
    assert tracker.closed == (error is not None)  # an exception out of train() ends the run; else it stays open
    if error is None:
        tracker.close()
    if error is not None:  # train() stopped at the end of the faulty step: the Trainer's own counter names it
        assert trainer.state.global_step == error.step
    check_sentinel(tmp_path / "run", sentinel, error, mode, "bert.pooler.activation", caught)
