"""The training thread's cost of one tracker.log call vs one SummaryWriter.add_scalar, side by side.

Target (issue 2): tracker.log costs the calling thread >= 5x less than
add_scalar. (With a CUDA tensor, add_scalar also waits for the device;
tracker.log never does.) Each round makes --calls calls, fewer than the
writer's queue holds (10,000), and flushes outside the timed region: a loop
logs a few values a step, so the queue never fills. Were it full,
when_full="block" would make the caller wait for the writer thread, which
spends about as long per record as add_scalar does.

    python benchmarks/bench_log_call.py --rounds 9 --calls 5000
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from benchmarks_path import add_repo_to_path
from torch.utils.tensorboard import SummaryWriter

add_repo_to_path()

from common import interleaved, machine, timed  # noqa: E402

from trackers import Tracker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=5_000)
    args = parser.parse_args()
    print(machine())
    root = tempfile.mkdtemp()
    tracker = Tracker(None, callbacks=[], writer=f"{root}/looptrack")
    summary_writer = SummaryWriter(f"{root}/summary_writer")
    value = torch.tensor(0.25)
    n = args.calls

    def calls(fn) -> float:
        seconds = timed(lambda: [fn(i) for i in range(n)]) / n
        tracker.flush()  # drain outside the timed region, so rounds don't pile up
        return seconds

    variants = {
        "SummaryWriter.add_scalar(tensor)": lambda: calls(lambda i: summary_writer.add_scalar("x", value, i)),
        "tracker.log(tensor)": lambda: calls(lambda i: tracker.log("x", value, i)),
        "SummaryWriter.add_scalar(float)": lambda: calls(lambda i: summary_writer.add_scalar("y", 0.25, i)),
        "tracker.log(float)": lambda: calls(lambda i: tracker.log("y", 0.25, i)),
    }
    for run in variants.values():
        run()
    medians = interleaved(variants, args.rounds)
    tracker.close()
    summary_writer.close()
    print(f"\none call on the training thread, {n} calls x {args.rounds} interleaved rounds (medians)")
    for name, seconds in medians.items():
        print(f"  {name:36s} {seconds * 1e6:8.2f} µs")
    for kind in ("tensor", "float"):
        ratio = medians[f"SummaryWriter.add_scalar({kind})"] / medians[f"tracker.log({kind})"]
        print(f"  tracker.log({kind}) is {ratio:.1f}x cheaper than add_scalar (target >= 5x)")


if __name__ == "__main__":
    main()
