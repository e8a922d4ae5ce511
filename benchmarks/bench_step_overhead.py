"""What the Tracker itself costs the training thread per step, on a step so small that nothing hides it.

A tiny MLP (16 -> 32 -> 4), batch 4, SGD, one torch thread: a plain loop
against the same loop through ``@tracker.train_step`` with no callbacks, with
``LossLogger(every_n_steps=50)``, and with LossLogger, ParameterHistograms(100)
and LearningRate(50). Each round builds the variant's Tracker (writer
"memory"), warms it, times ``--steps`` steps and closes it, so only one
Tracker's hooks are ever open; variants run in turn, round after round, and
the medians of the per-round differences to the bare loop are printed, with
the Tracker's own figure of its cost (``tracker.cost``) beside them.
Target (issue 5a): the Tracker with LossLogger(50) adds <= 10 us a step.

    python benchmarks/bench_step_overhead.py --rounds 30 --steps 400
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from benchmarks_path import add_repo_to_path

add_repo_to_path()

from common import machine, paired_rounds, timed  # noqa: E402

from callbacks import Callback, LearningRate, LossLogger, ParameterHistograms  # noqa: E402
from trackers import Tracker  # noqa: E402
from trackers.tools.demo import tutorial_step  # noqa: E402
from trackers.tools.syncs import SyncCounter  # noqa: E402

WARM_STEPS = 20
VARIANTS: dict[str, Callable[[], list[Callback]]] = {
    "Tracker, no callbacks": lambda: [],
    "LossLogger(50)": lambda: [LossLogger(every_n_steps=50)],
    "+ ParameterHistograms(100), LearningRate(50)": lambda: [
        LossLogger(every_n_steps=50),
        ParameterHistograms(every_n_steps=100),
        LearningRate(every_n_steps=50),
    ],
}


def tiny_mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=400, help="timed steps per round (a multiple of 100)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine())
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(4, 16, generator=generator), torch.randint(0, 4, (4,), generator=generator)) for _ in range(32)
    ]
    net = tiny_mlp()
    step = tutorial_step(net, torch.optim.SGD(net.parameters(), lr=0.01))
    self_measured: dict[str, list[float]] = {name: [] for name in VARIANTS}

    def loop(step_fn: Callable[..., object], steps: int) -> None:
        for i in range(steps):
            step_fn(*batches[i % 32])

    def bare() -> float:
        loop(step, WARM_STEPS)
        return timed(lambda: loop(step, args.steps)) / args.steps

    def tracked(name: str) -> Callable[[], float]:
        def run() -> float:
            tracker = Tracker(net, callbacks=VARIANTS[name](), writer="memory")
            tracked_step = tracker.train_step(step)
            loop(tracked_step, WARM_STEPS)
            before = tracker.cost.figures()
            seconds = timed(lambda: loop(tracked_step, args.steps)) / args.steps
            self_measured[name].append(tracker.cost.figures().minus(before).per_step_ns / 1e3)
            tracker.close()
            return seconds

        return run

    variants = {"bare loop": bare, **{name: tracked(name) for name in VARIANTS}}
    for warm in variants.values():
        warm()
    for values in self_measured.values():
        values.clear()
    rounds = paired_rounds(variants, args.rounds)
    base = rounds["bare loop"]
    print(f"\ntiny MLP, batch 4, 1 thread, {args.steps} steps x {args.rounds} interleaved rounds (medians)")
    print(f"  bare step: {statistics.median(base) * 1e6:.1f} us")
    print(f"  {'variant':46s} {'us/step':>8s} {'added us':>9s} {'ratio':>6s} {'self-measured us':>17s}")
    for name in VARIANTS:
        values = rounds[name]
        added = statistics.median(v - b for v, b in zip(values, base)) * 1e6
        ratio = statistics.median(v / b for v, b in zip(values, base))
        own = statistics.median(self_measured[name])
        print(f"  {name:46s} {statistics.median(values) * 1e6:8.1f} {added:+9.1f} {ratio:6.3f} {own:17.1f}")
    print("  target (issue 5a): LossLogger(50) adds <= 10 us a step")
    print(
        "  self-measured: tracker.cost over the timed steps, the time inside looptrack's own functions; the\n"
        "  difference to 'added' is what they cause elsewhere: torch calling the optimizer step hooks, the\n"
        "  call into the decorated step, caches and allocator, and the writer thread (histograms are binned\n"
        "  there, contending for the GIL and the cores)"
    )
    syncs(net, step, args.steps)


def syncs(net: torch.nn.Module, step: Callable[..., object], steps: int) -> None:
    """Host syncs on the training thread per variant (``aten._local_scalar_dense``): the bare loop makes none."""
    generator = torch.Generator().manual_seed(1)
    batch = (torch.randn(4, 16, generator=generator), torch.randint(0, 4, (4,), generator=generator))
    counts = []
    for name, make in VARIANTS.items():
        tracker = Tracker(net, callbacks=make(), writer="memory")
        tracked_step = tracker.train_step(step)
        with SyncCounter() as counter:
            for _ in range(steps):
                tracked_step(*batch)
            tracker.close()
        counts.append(f"{name}: {counter.syncs}")
    print(f"  host syncs in {steps} steps and close: " + "; ".join(counts))


if __name__ == "__main__":
    main()
