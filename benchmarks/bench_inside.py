"""What looking inside the model costs: ActivationStats + GradientStats, and the NonFiniteSentinel, per step.

The tutorial CNN, batch 64 (``--batch-size``), SGD with momentum, whole loops of ``--steps`` steps timed
against a bare loop in the same run (variants interleaved, the order reversed every other round; medians of
per-round ratios). Each variant has its own copy of the model, since module hooks belong to a model. Targets
(issue 14): ActivationStats + GradientStats at every_n_steps=100 cost <= 2 % of the run; the sentinel at its
default cadence (every step, checked whole) <= 1 %.

    python benchmarks/bench_inside.py --rounds 7 --steps 300
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile

import torch
from benchmarks_path import add_repo_to_path

add_repo_to_path()

from common import machine, paired_rounds, timed  # noqa: E402

from callbacks import ActivationStats, GradientStats, LossLogger, NonFiniteSentinel  # noqa: E402
from trackers import Tracker  # noqa: E402
from trackers.tools.demo import TutorialNet, tutorial_step  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    print(machine())
    torch.manual_seed(0)
    batches = [(torch.randn(args.batch_size, 1, 28, 28), torch.randint(0, 10, (args.batch_size,))) for _ in range(32)]
    root = tempfile.mkdtemp()
    base = TutorialNet()
    sets = {
        "bare loop": None,
        "LossLogger(50)": [LossLogger(50)],
        f"+ ActivationStats + GradientStats ({args.every})": [
            LossLogger(50),
            ActivationStats(every_n_steps=args.every),
            GradientStats(every_n_steps=args.every),
        ],
        "+ NonFiniteSentinel() (each step checked whole)": [LossLogger(50), NonFiniteSentinel()],
        "+ NonFiniteSentinel(every_n_steps=10) (measured)": [LossLogger(50), NonFiniteSentinel(every_n_steps=10)],
    }
    steps, trackers = {}, []
    for index, (name, callbacks) in enumerate(sets.items()):
        net = copy.deepcopy(base)
        step = tutorial_step(net, torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9))
        if callbacks is not None:
            tracker = Tracker(net, callbacks=callbacks, writer=f"{root}/run{index}")
            trackers.append(tracker)
            step = tracker.train_step(step)
        steps[name] = step

    def loop(step_fn) -> float:
        def run() -> None:
            for i in range(args.steps):
                step_fn(*batches[i % 32])

        return timed(run) / args.steps

    variants = {name: (lambda s=step: loop(s)) for name, step in steps.items()}
    for variant in variants.values():
        variant()  # warm-up: first-use costs, first logging step
    rounds = paired_rounds(variants, args.rounds)
    for tracker in trackers:
        tracker.close()
    print(f"\ntutorial CNN, batch {args.batch_size}, {args.steps} steps x {args.rounds} interleaved rounds")
    print(f"  {'variant':52s} {'ms/step':>9s} {'vs bare (median of per-round ratios)':>38s}")
    for name, values in rounds.items():
        ratios = [v / b for v, b in zip(values, rounds["bare loop"])]
        print(f"  {name:52s} {statistics.median(values) * 1e3:9.3f} {100 * (statistics.median(ratios) - 1):+37.2f}%")
    logger = rounds["LossLogger(50)"]
    for name in list(rounds)[2:]:
        ratios = [v / b for v, b in zip(rounds[name], logger)]
        print(f"  {name} over LossLogger alone: {100 * (statistics.median(ratios) - 1):+.2f}%")


if __name__ == "__main__":
    main()
