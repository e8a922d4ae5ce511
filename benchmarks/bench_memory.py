"""Peak memory of a long run: the bare loop vs the same loop with looptrack's full logging, each in its own process.

Target (issue 7): over a 50,000-step run (tutorial CNN, batch 4) looptrack's
peak resident memory stays within 5 % of the bare loop's.

    python benchmarks/bench_memory.py --steps 50000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

from benchmarks_path import add_repo_to_path

add_repo_to_path()

from common import machine  # noqa: E402

CHILD = r"""
import resource, sys, torch
sys.path[:0] = [{root!r}, {here!r}]
from trackers.tools.demo import CLASSES, TutorialNet, tutorial_step
mode, steps, log_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
net = TutorialNet()
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
data = [(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))) for _ in range(64)]
val = [(torch.randn(500, 1, 28, 28), torch.randint(0, 10, (500,))) for _ in range(20)]
step = tutorial_step(net, opt)

if mode == "bare":
    for i in range(steps):
        step(*data[i % 64])
    with torch.no_grad():
        outputs = [net(x) for x, _ in val]
else:
    from trackers import Tracker
    from callbacks import GraphTrace, LossLogger, ParameterHistograms, PRCurves, PredictionFigure
    callbacks = [LossLogger(every_n_steps=50), PredictionFigure(list(CLASSES), every_n_steps=500),
                 ParameterHistograms(every_n_steps=100, gradients=False), PRCurves(list(CLASSES)), GraphTrace()]
    with Tracker(net, callbacks=callbacks, writer=log_dir) as tracker:
        tracked = tracker.train_step(step)
        evaluate = tracker.eval_step(lambda x, y: {{"outputs": net(x).detach()}})
        for i in range(steps):
            tracked(*data[i % 64])
        with tracker.validation(), torch.no_grad():
            for x, y in val:
                evaluate(x, y)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_kib(mode: str, steps: int) -> int:
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    child = CHILD.format(root=os.path.dirname(here), here=here)
    with tempfile.TemporaryDirectory() as log_dir:
        out = subprocess.run(
            [sys.executable, "-c", child, mode, str(steps), log_dir], capture_output=True, text=True, check=True
        ).stdout
    return int(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    args = parser.parse_args()
    print(machine())
    bare, tracked = peak_kib("bare", args.steps), peak_kib("looptrack", args.steps)
    print(f"\ntutorial CNN, batch 4, {args.steps} steps, peak resident memory of the whole process")
    print(f"  {'bare loop':34s} {bare / 1024:8.1f} MiB")
    print(f"  {'looptrack, full logging':34s} {tracked / 1024:8.1f} MiB")
    print(f"  looptrack / bare: {100 * (tracked / bare - 1):+.1f}% (target within 5 %)")


if __name__ == "__main__":
    main()
