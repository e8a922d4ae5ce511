"""GraphTrace vs SummaryWriter.add_graph on resnet18, side by side.

Target (issue 4): resnet18 in well under a second, with no TorchScript
deprecation warning.

    python benchmarks/bench_graph.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch
import torchvision
from benchmarks_path import add_repo_to_path
from torch.utils.tensorboard import SummaryWriter

add_repo_to_path()

from common import machine  # noqa: E402

from trackers.tensorboard.graphdef import trace_graph  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    model = torchvision.models.resnet18(weights=None)
    image = torch.rand(16, 3, 32, 32)
    root = tempfile.mkdtemp()
    jit, ours, jit_warnings, our_warnings = [], [], 0, 0
    for r in range(args.rounds):
        writer = SummaryWriter(f"{root}/sw{r}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            writer.add_graph(model, image)
            jit.append(time.perf_counter() - start)
        jit_warnings += sum("TorchScript" in str(w.message) or "jit" in str(w.message) for w in caught)
        writer.close()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            graph = trace_graph(model, (image,))
            ours.append(time.perf_counter() - start)
        our_warnings += sum("TorchScript" in str(w.message) or "jit" in str(w.message) for w in caught)
    j, o = statistics.median(jit), statistics.median(ours)
    print(f"\nresnet18 graph, batch 16 of 3x32x32, median of {args.rounds}")
    print(
        f"  {'SummaryWriter.add_graph (torch.jit.trace)':44s} {j * 1e3:8.1f} ms, {jit_warnings / args.rounds:.0f} "
        "TorchScript warnings a call"
    )
    print(
        f"  {'GraphTrace (torch.fx + fake-tensor shapes)':44s} {o * 1e3:8.1f} ms, {our_warnings / args.rounds:.0f} "
        f"warnings a call, {len(graph.node)} nodes"
    )
    print(f"  ratio: {j / o:.1f}x faster")


if __name__ == "__main__":
    main()
