"""Every callback under ``torch.compile(model)`` (issue 14 item 5): no graph break, no frame Dynamo gives up on, and
no recompilation once warmed up, read from ``torch._dynamo.utils.counters``.

The warm-up is the first ``WARMUP`` training steps and the first validation pass: it holds two logging steps and a
non-logging step of every cadence used here (2 and 3), the first forward (a callback may set itself up there) and
the ``no_grad`` validation forward, so every variant of the graph a callback legitimately asks for is compiled by
then. The steps after it, and a second validation pass, must reuse those graphs.

A recompile shows as a frame converted or a graph made after the warm-up (the guard failures that caused it are
in the message); hitting ``torch._dynamo.config.recompile_limit`` (alias ``cache_size_limit``) shows in
``counters["unimplemented"]`` as "Dynamo recompile limit exceeded". The ``aot_eager`` backend runs Dynamo and
AOTAutograd without compiling C++: graph breaks and recompiles come from Dynamo's tracing, before the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch._dynamo
from helpers import fashion_batches, train_tutorial
from torch._dynamo.utils import counters, guard_failures

from callbacks import (
    ActivationStats,
    Callback,
    Embedding,
    GradientStats,
    GraphTrace,
    ImageGrid,
    LearningRate,
    LossLogger,
    NonFiniteSentinel,
    ParameterHistograms,
    PRCurves,
    PredictionFigure,
    TextLogger,
)
from trackers import MemoryWriter, Tracker
from trackers.tools.demo import CLASSES, SyntheticFashionMNIST, TutorialNet

STEPS = 14
# steps 0-5: two logging steps of Every(2) (1, 3) and of Every(3) (2, 5), and non-logging steps of both: a callback
# that measures only its logging steps makes its state at the first and runs its steady path from the second
WARMUP = 6
BATCH = 8
VAL_BATCHES = 2

NONFINITE_BREAK = (
    "NonFiniteSentinel(every_n_steps>1) measures every module call from module hooks inside the compiled graph: "
    "graph break 'Tensor with grad_fn(): Dynamo does not support tracing tensors with a grad_fn directly' at "
    "`grad_fn = tensor.grad_fn` in CallMeasure._link (callbacks/nonfinite/measure.py), and a recompile per new input "
    "tensor from `record.known.get(id(tensor))`; the default (every step, checked whole) has no hook inside the graph"
)


@dataclass(frozen=True)
class Case:
    make: Callable[[], Callback]
    logs: frozenset[str]  # record kinds the callback must have written: the run was not a no-op
    marks: tuple[pytest.MarkDecorator, ...] = ()


CASES = {
    "ActivationStats": Case(
        lambda: ActivationStats(every_n_steps=2, histograms=True), frozenset({"scalar", "histogram_raw"})
    ),
    "ActivationStats(3)": Case(
        lambda: ActivationStats(every_n_steps=3, histograms=True), frozenset({"scalar", "histogram_raw"})
    ),
    "GradientStats": Case(lambda: GradientStats(every_n_steps=3), frozenset({"scalar"})),
    "NonFiniteSentinel": Case(NonFiniteSentinel, frozenset()),  # a finite run logs nothing
    "NonFiniteSentinel(2)": Case(
        lambda: NonFiniteSentinel(every_n_steps=2),
        frozenset(),
        (pytest.mark.xfail(strict=True, raises=AssertionError, reason=NONFINITE_BREAK),),
    ),
    "LossLogger": Case(lambda: LossLogger(every_n_steps=3), frozenset({"scalar"})),
    "ParameterHistograms": Case(lambda: ParameterHistograms(every_n_steps=2), frozenset({"histogram_raw"})),
    "LearningRate": Case(lambda: LearningRate(every_n_steps=3), frozenset({"scalar"})),
    "PredictionFigure": Case(lambda: PredictionFigure(CLASSES, every_n_steps=3, n=2), frozenset({"figure"})),
    "ImageGrid": Case(lambda: ImageGrid(every_n_steps=2, n=4), frozenset({"image"})),
    "GraphTrace": Case(GraphTrace, frozenset({"graph"})),
    "PRCurves": Case(lambda: PRCurves(CLASSES), frozenset({"pr_curve"})),
    "Embedding": Case(lambda: Embedding(n=16, classes=CLASSES), frozenset({"embedding"})),
    "Embedding(layer)": Case(
        lambda: Embedding(n=16, layer="fc2", classes=CLASSES),
        frozenset({"embedding"}),
    ),
    "TextLogger": Case(lambda: TextLogger(lambda state: f"step {state.step}", every_n_steps=2), frozenset({"text"})),
}


def _compiles() -> dict[str, int]:
    """How many frames Dynamo was asked to convert (a cache miss each) and graphs it made, so far."""
    return {"frames converted": counters["frames"]["total"], "graphs made": counters["stats"]["unique_graphs"]}


def _listed(counter: dict[str, int]) -> str:
    return "\n".join(f"  [{count}x] {reason}" for reason, count in counter.items())


def compile_problems(cases: list[Case], backend: str) -> list[str]:
    """Train ``torch.compile(TutorialNet)`` tracked by the cases' callbacks (strict: a failing callback raises)
    for ``STEPS`` steps with two validation passes; what went wrong under Dynamo, one message each."""
    callbacks = [case.make() for case in cases]
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    net = TutorialNet()
    data = SyntheticFashionMNIST(STEPS * BATCH + VAL_BATCHES * BATCH, seed=1)
    batches = fashion_batches(data, STEPS, BATCH)
    val = fashion_batches(data, VAL_BATCHES, BATCH, start=STEPS * BATCH)
    model = torch.compile(net, backend=backend)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    writer = MemoryWriter()
    tracker = Tracker(model, callbacks=callbacks, writer=writer, strict=True)
    try:  # (a callback failing in on_train_start raises from __enter__, which leaves the run open: closed here)
        with tracker:
            train_tutorial(tracker, model, batches[:WARMUP], optimizer=optimizer, val=val)
            warm = _compiles()
            seen = {code: len(reasons) for code, reasons in guard_failures.items()}
            train_tutorial(tracker, model, batches[WARMUP:], optimizer=optimizer, val=val)
            after = _compiles()
    finally:
        tracker.close()
    kinds = {record.kind for record in writer.records}
    problems = [
        f"{type(callback).__name__} logged no {kind} (the run logged: {sorted(kinds)})"
        for callback, case in zip(callbacks, cases)
        for kind in sorted(case.logs - kinds)
    ]
    if warm["graphs made"] < 2:
        problems.append(f"the model was not compiled (a training and a validation graph expected): {warm}")
    if counters["graph_break"]:
        problems.append(f"graph breaks (reason: times):\n{_listed(counters['graph_break'])}")
    if counters["unimplemented"]:  # frames Dynamo skipped (run eagerly), the recompile limit hit among them
        problems.append(f"frames Dynamo gave up on (reason: times):\n{_listed(counters['unimplemented'])}")
    if after != warm:
        new = [reason for code, reasons in guard_failures.items() for reason in reasons[seen.get(code, 0) :]]
        problems.append(
            f"recompiled after the warm-up: {warm} after {WARMUP} steps and a validation pass, {after} at the "
            f"end; guard failures:\n" + "\n".join(f"  {reason}" for reason in new)
        )
    return problems


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    yield  # compile_problems starts from a fresh Dynamo; leave none of this file's compiled code behind
    torch._dynamo.reset()
    counters.clear()


@pytest.mark.parametrize("name", [pytest.param(name, marks=case.marks, id=name) for name, case in CASES.items()])
def test_one_callback_compiles_without_graph_breaks_or_recompiles(name: str) -> None:
    problems = compile_problems([CASES[name]], "aot_eager")
    assert not problems, f"{name} under torch.compile:\n" + "\n".join(problems)


TOGETHER = [name for name in CASES if name not in ("ActivationStats(3)", "Embedding(layer)", "NonFiniteSentinel(2)")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("names", "backend"),
    [
        pytest.param(TOGETHER, "aot_eager", id="all-aot_eager"),
        pytest.param(TOGETHER, "eager", id="all-eager"),
    ],
)
def test_every_callback_together_compiles_without_graph_breaks_or_recompiles(names: list[str], backend: str) -> None:
    problems = compile_problems([CASES[name] for name in names], backend)
    assert not problems, f"{', '.join(names)} under torch.compile(backend={backend!r}):\n" + "\n".join(problems)
