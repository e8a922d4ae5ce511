"""What LossLogger(every_n_steps=50) costs a training step, measured against a bare loop in the same run.

The tutorial CNN, batch 64 of 1x28x28 images, SGD with momentum, on this
machine's CPU. Variants run in turn, round after round; medians are compared.
Target (issue 2): LossLogger costs <= 1 % of the step time.

    python benchmarks/bench_loss_logger.py --rounds 40 --steps 50
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from benchmarks_path import add_repo_to_path
from torch.utils.tensorboard import SummaryWriter

add_repo_to_path()

from common import machine, paired_rounds, timed  # noqa: E402

from callbacks import LossLogger  # noqa: E402
from trackers import Tracker  # noqa: E402
from trackers.core.optimizers import OptimizerWatch  # noqa: E402
from trackers.tools.demo import TutorialNet, tutorial_step  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(machine())
    torch.manual_seed(0)
    batches = [(torch.randn(args.batch_size, 1, 28, 28), torch.randint(0, 10, (args.batch_size,))) for _ in range(32)]
    net = TutorialNet()
    step = tutorial_step(net, torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9))
    root = tempfile.mkdtemp()
    tracker = Tracker(net, callbacks=[LossLogger(every_n_steps=50)], writer=f"{root}/looptrack")
    tracked_step = tracker.train_step(step)
    summary_writer = SummaryWriter(f"{root}/tutorial")

    def run(step_fn, item: bool = False) -> float:
        def loop():
            running = 0.0
            for i in range(args.steps):
                loss = step_fn(*batches[i % 32])
                if item:  # the tutorial: read the loss back every step, log every 50
                    running += loss.item()
                    if i % 50 == 49:
                        summary_writer.add_scalar("training loss", running / 50, i)
                        running = 0.0

        return timed(loop) / args.steps

    def bare() -> float:
        return run(step)

    def looptrack() -> float:
        return run(tracked_step)

    def tutorial() -> float:
        return run(step, item=True)

    for warm in (bare, looptrack, tutorial):
        warm()
    variants = {
        "bare loop": bare,
        "looptrack LossLogger(50)": looptrack,
        "tutorial (.item() every step + add_scalar)": tutorial,
    }
    rounds = paired_rounds(variants, args.rounds)
    tracker.close()
    summary_writer.close()
    print(f"\ntutorial CNN, batch {args.batch_size}, {args.steps} steps x {args.rounds} interleaved rounds")
    print(f"  {'variant':44s} {'ms/step':>9s} {'vs bare (median of per-round ratios)':>38s}")
    for name, values in rounds.items():
        ratios = [v / b for v, b in zip(values, rounds["bare loop"])]
        print(f"  {name:44s} {statistics.median(values) * 1e3:9.3f} {100 * (statistics.median(ratios) - 1):+37.2f}%")
    ratios = [v / b for v, b in zip(rounds["looptrack LossLogger(50)"], rounds["bare loop"])]
    print(f"  LossLogger overhead: {100 * (statistics.median(ratios) - 1):+.2f}% (target <= 1 %)")
    hooks_cost()


def hooks_cost(calls: int = 20_000, rounds: int = 7) -> None:
    """What torch's global optimizer step hooks of a Tracker (OptimizerWatch) add to one ``optimizer.step()``.

    While a Tracker is open its hooks run in every loop of the process, the bare one above included, so
    they are measured here on their own: an optimizer over one tiny tensor, with and without a watch.
    """
    parameter = torch.nn.Parameter(torch.zeros(1))
    parameter.grad = torch.zeros(1)
    optimizer = torch.optim.SGD([parameter], lr=0.0)
    model = torch.nn.Module()
    model.weight = parameter

    def steps() -> float:
        return timed(lambda: [optimizer.step() for _ in range(calls)]) / calls

    without = statistics.median(steps() for _ in range(rounds))
    watch = OptimizerWatch(model, first_seen=lambda optimizer: None)
    with_watch = statistics.median(steps() for _ in range(rounds))
    watch.remove()
    print(
        f"  optimizer step hooks: {1e6 * (with_watch - without):.2f} us per optimizer.step() "
        f"({1e6 * without:.1f} us without, {1e6 * with_watch:.1f} us with)"
    )


if __name__ == "__main__":
    main()
