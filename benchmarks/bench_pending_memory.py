"""Memory and step time of every-step parameter histograms on a ~50M-parameter model: pending records bounded in bytes.

The case of the issue: ``ParameterHistograms(every_n_steps=1)`` (weights and
gradients) on an MLP of ~50M fp32 parameters on the CPU, writing TensorBoard.
Each step hands ~400 MB of host copies to the writer thread, faster than it
can bin them. Bounded only in record count, the copies piled up (0.86 -> 5.9 GB
in 12 steps, steps 10x slower, 12.7 s to close); bounded in bytes
(``max_pending_bytes``, 256 MiB by default) memory stays flat and the policy
decides: ``when_full="block"`` waits for the writer (nothing lost),
``"drop_oldest"`` drops the oldest waiting records (counted, reported at close).

Each configuration runs in its own process, so their memory peaks are
independent: the bare loop (no looptrack), looptrack with the default
policy (block), with ``when_full="drop_oldest"``, and, with ``--before PATH``,
looptrack from another checkout (e.g. ``git worktree add /tmp/lt_before HEAD``)
with its default options. RSS is read from ``/proc/self/status`` after every
step (VmRSS) and at the end (VmHWM, the peak).

On a small shared machine ``--threads 1`` keeps the step times steady (two
torch threads on two busy cores swing 3x with the other load) and leaves the
writer thread a core; ``--rounds 3`` interleaves the runs and reports medians.

    python benchmarks/bench_pending_memory.py --steps 12 --before /tmp/lt_before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks_path import add_repo_to_path

add_repo_to_path()

from common import machine, paired_rounds  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])

CHILD = r"""
import json, os, statistics, sys, time, warnings
config = json.loads(sys.argv[1])
root = config["root"]
sys.path.insert(0, root)
import torch
if config["threads"]:
    torch.set_num_threads(config["threads"])

def status(field):
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MB (MiB)
    raise RuntimeError(field)

torch.manual_seed(0)
width, depth = config["width"], config["depth"]
layers = []
for _ in range(depth):
    layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
batches = [(torch.randn(config["batch"], width), torch.randint(0, 10, (config["batch"],))) for _ in range(4)]

def step(inputs, labels):
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(inputs), labels)
    loss.backward()
    optimizer.step()
    return loss

result = {"parameters": sum(p.numel() for p in model.parameters()), "tensors": len(list(model.parameters()))}
times, rss = [], []
caught = []
if config["mode"] == "bare":
    result["rss_start"] = status("VmRSS")
    for i in range(config["steps"]):
        start = time.perf_counter()
        step(*batches[i % 4])
        times.append(time.perf_counter() - start)
        rss.append(status("VmRSS"))
    result["close"] = 0.0
else:
    import trackers
    from callbacks import ParameterHistograms
    from trackers import Tracker, TensorBoardWriter
    where = os.path.dirname(os.path.dirname(os.path.abspath(trackers.__file__)))
    if os.path.realpath(where) != os.path.realpath(root):
        raise SystemExit(f"trackers imported from {where}, not from {root}")
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer = TensorBoardWriter(config["log_dir"], **config["options"])
        tracker = Tracker(model, callbacks=[ParameterHistograms(every_n_steps=1)], writer=writer)
        tracker.start()
        tracked = tracker.train_step(step)
        result["rss_start"] = status("VmRSS")
        for i in range(config["steps"]):
            start = time.perf_counter()
            tracked(*batches[i % 4])
            times.append(time.perf_counter() - start)
            rss.append(status("VmRSS"))
        start = time.perf_counter()
        tracker.close()
        result["close"] = time.perf_counter() - start
    result["budget"] = getattr(writer, "max_pending_bytes", None)  # None: this checkout has no byte budget
    result["dropped"] = writer.dropped
    result["waited"] = getattr(writer, "waited_seconds", None)  # None: this checkout does not count it
    result["warnings"] = [str(w.message) for w in caught]
result.update(times=times, rss=rss, peak=status("VmHWM"))
print(json.dumps(result))
"""


def run_child(mode: str, root: str, options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One configuration in a fresh process: its step times, RSS after each step, peak RSS, close time."""
    with tempfile.TemporaryDirectory() as log_dir:
        config = {
            "mode": mode,
            "root": root,
            "options": options,
            "log_dir": log_dir,
            "steps": args.steps,
            "width": args.width,
            "depth": args.depth,
            "batch": args.batch,
            "threads": args.threads,
        }
        env = dict(os.environ, PYTHONPATH=root, PYTHONUNBUFFERED="1")
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(config)], capture_output=True, text=True, env=env, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} ({root}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth_per_step(rss: list[float]) -> float:
    """Least-squares slope of RSS over the steps after the first (which allocates the gradients), MB per step."""
    ys = rss[1:] if len(rss) > 2 else rss
    if len(ys) < 2:
        return 0.0
    xs = range(len(ys))
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians over rounds of one configuration's figures."""

    def med(key: str) -> float | None:
        values = [r[key] for r in results if r.get(key) is not None]
        return statistics.median(values) if values else None

    for r in results:
        r["step"] = statistics.median(r["times"])
        r["growth"] = growth_per_step(r["rss"])
        r["rss_end"] = r["rss"][-1]
        r["total"] = sum(r["times"]) + r["close"]
    keys = ("step", "growth", "peak", "rss_start", "rss_end", "close", "total", "dropped", "waited")
    out = {key: med(key) for key in keys}
    out.update(
        budget=results[0].get("budget"),
        parameters=results[0]["parameters"],
        tensors=results[0]["tensors"],
        rss=results[0]["rss"],
        times=results[0]["times"],
        warnings=results[-1].get("warnings", []),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--width", type=int, default=4096, help="hidden width (4096 x 3 layers: ~50M parameters)")
    parser.add_argument("--depth", type=int, default=3, help="square hidden layers")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in every run (0: torch's)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every configuration (medians reported)")
    parser.add_argument("--budget-mib", type=float, default=None, help="max_pending_bytes (default: the library's)")
    parser.add_argument("--before", metavar="PATH", help="also run looptrack from this checkout (default options)")
    parser.add_argument("--per-step", action="store_true", help="print RSS and time of every step too")
    args = parser.parse_args()
    print(machine())

    budget = {} if args.budget_mib is None else {"max_pending_bytes": int(args.budget_mib * 2**20)}
    configs: dict[str, tuple[str, str, dict[str, Any]]] = {"bare loop (no looptrack)": ("bare", ROOT, {})}
    if args.before:
        configs[f"before: {args.before}"] = ("looptrack", os.path.abspath(args.before), {})
    configs["after: when_full=block"] = ("looptrack", ROOT, {**budget, "when_full": "block"})
    configs["after: when_full=drop_oldest"] = ("looptrack", ROOT, {**budget, "when_full": "drop_oldest"})

    variants = {name: (lambda c=config: run_child(c[0], c[1], c[2], args)) for name, config in configs.items()}
    rounds = paired_rounds(variants, args.rounds)  # each run gives a dict of figures
    results = {name: summary(values) for name, values in rounds.items()}
    bare_runs = rounds["bare loop (no looptrack)"]
    for name, runs in rounds.items():  # the ratio within each round, so the machine's drifts cancel
        results[name]["ratio"] = statistics.median(r["step"] / b["step"] for r, b in zip(runs, bare_runs))

    bare = results["bare loop (no looptrack)"]
    print(
        f"\nMLP {args.depth} x {args.width}x{args.width} + head ({bare['parameters'] / 1e6:.1f}M fp32 parameters, "
        f"{bare['tensors']} tensors), batch {args.batch}, SGD on the CPU ({args.threads or 'default'} torch "
        f"threads), {args.steps} steps, "
        f"ParameterHistograms(every_n_steps=1) (weights and gradients: "
        f"{2 * bare['parameters'] * 4 / 1e6:.0f} MB of host copies a step) to TensorBoard; "
        f"median of {args.rounds} run(s) per configuration, each in its own process"
    )
    columns = [("budget", "(MiB)", 8), ("peak RSS", "(MB)", 9), ("RSS/step", "(MB)", 9), ("step", "(s)", 7)]
    columns += [("x bare", "", 7), ("close", "(s)", 7), ("total", "(s)", 7), ("dropped", "", 8), ("waited", "(s)", 7)]
    print(f"  {'config':38s} " + " ".join(f"{title:>{width}s}" for title, _, width in columns))
    print(f"  {'':38s} " + " ".join(f"{unit:>{width}s}" for _, unit, width in columns))
    for name, r in results.items():
        budget_text = "-" if r["budget"] is None else f"{r['budget'] / 2**20:.0f}"
        if name.startswith("before"):
            budget_text = "none"
        dropped = "-" if r["dropped"] is None else f"{r['dropped']:.0f}"
        waited = "-" if r["waited"] is None else f"{r['waited']:.2f}"
        print(
            f"  {name[:38]:38s} {budget_text:>8s} {r['peak']:9.0f} {r['growth']:+9.1f} {r['step']:7.3f} "
            f"{r['ratio']:6.2f}x {r['close']:7.2f} {r['total']:7.1f} {dropped:>8s} {waited:>7s}"
        )
    print(
        "  peak RSS: VmHWM of the whole process (close included); RSS/step: least-squares slope of VmRSS after "
        "steps 2..N; step: median wall time of one training step (logging included); x bare: median over rounds "
        "of step / the bare loop's step in the same round; total: all steps plus close; waited: time the "
        "training thread waited for room in the queue ('-': not counted by that checkout)"
    )
    if args.per_step:
        for name, r in results.items():
            print(f"\n  {name}: RSS after each step (MB) / step time (s)")
            print("    " + " ".join(f"{v:.0f}" for v in r["rss"]))
            print("    " + " ".join(f"{t:.2f}" for t in r["times"]))
    for name, r in results.items():
        for message in r["warnings"]:
            print(f"\n  {name} warned: {message}")


if __name__ == "__main__":
    main()
