"""Training-thread cost of the picture callbacks vs SummaryWriter, measured side by side.

Targets (issue 3): all resnet18 parameters as histograms >= 10x cheaper on the
training thread than ``add_histogram``; PR curves for 10 classes x 10,000
samples >= 10x cheaper than ten ``add_pr_curve`` calls; the prediction
figure as cheap as it can be (the seeds build and render it on the training
thread). The time the writer thread then spends (off the training thread) is
printed too, for honesty. As ``timeit`` does, the cyclic garbage collector is
off while timing: a full collection (~200 ms in a process with torch loaded)
otherwise lands in whichever timed call happens to allocate when it is due.

    python benchmarks/bench_pictures.py --rounds 5
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time

import torch
import torchvision
from benchmarks_path import add_repo_to_path
from torch.utils.tensorboard import SummaryWriter

add_repo_to_path()

from common import machine  # noqa: E402

from callbacks import ParameterHistograms, PRCurves  # noqa: E402
from trackers import TensorBoardWriter  # noqa: E402
from trackers.core.state import BatchRecord, RunState  # noqa: E402


def settle(summary_writer: SummaryWriter) -> None:
    """Untimed, after ``add_histogram``: let SummaryWriter's writer thread and numpy's BLAS threads (it uses
    ``dot``; OpenBLAS threads spin for a while after a call) go idle, so they don't run into the next timed
    call. Both sides start their timed call from the same idle state."""
    summary_writer.flush()
    time.sleep(0.3)


def bench_histograms(rounds: int, root: str) -> None:
    model = torchvision.models.resnet18(weights=None)
    n_values = sum(p.numel() for p in model.parameters())
    summary_writer = SummaryWriter(f"{root}/hist_sw", flush_secs=3600)
    writer = TensorBoardWriter(f"{root}/hist_lt", flush_secs=3600)
    callback = ParameterHistograms(every_n_steps=1, gradients=False)
    state = RunState(model=model, writer=writer, step=0)
    callback.on_train_start(state)
    baseline, ours, drain = [], [], []
    for r in range(rounds):
        start = time.perf_counter()
        for name, param in model.named_parameters():
            summary_writer.add_histogram(name, param, r)
        baseline.append(time.perf_counter() - start)
        settle(summary_writer)
        state.step = r
        start = time.perf_counter()
        callback.on_train_batch_end(state, BatchRecord())
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        writer.flush()
        drain.append(time.perf_counter() - start)
        time.sleep(0.3)  # the baseline starts from an idle machine too
    summary_writer.close()
    writer.close()
    b, o, d = statistics.median(baseline), statistics.median(ours), statistics.median(drain)
    print(
        f"\nresnet18 parameter histograms ({n_values / 1e6:.1f}M values, {len(list(model.parameters()))} tensors), "
        f"median of {rounds}"
    )
    print(f"  {'SummaryWriter.add_histogram (training thread)':52s} {b * 1e3:9.1f} ms")
    print(f"  {'ParameterHistograms (training thread)':52s} {o * 1e3:9.1f} ms")
    print(f"  {'  then the writer thread, off the training thread':52s} {d * 1e3:9.1f} ms")
    print(f"  training-thread ratio: {b / o:.1f}x cheaper (target >= 10x)")


def bench_pr_curves(rounds: int, root: str, samples: int = 10_000, classes: int = 10, batch: int = 64) -> None:
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(samples, classes, generator=generator) * 3
    targets = torch.randint(0, classes, (samples,), generator=generator)
    names = [f"class{i}" for i in range(classes)]
    baseline, ours, drain = [], [], []
    for r in range(rounds):
        summary_writer = SummaryWriter(f"{root}/pr_sw{r}", flush_secs=3600)
        start = time.perf_counter()
        probs = torch.softmax(outputs, 1)
        for i, name in enumerate(names):
            summary_writer.add_pr_curve(name, targets == i, probs[:, i], r)
        baseline.append(time.perf_counter() - start)
        summary_writer.flush()  # untimed: its writer thread must not run into the next timed call
        summary_writer.close()

        writer = TensorBoardWriter(f"{root}/pr_lt{r}", flush_secs=3600)
        callback = PRCurves(classes=names)
        state = RunState(model=None, writer=writer, step=r)
        callback.on_validation_start(state)
        for lo in range(0, samples, batch):  # what the validation pass hands it, batch by batch
            callback.on_validation_batch_end(
                state, BatchRecord(None, targets[lo : lo + batch], outputs[lo : lo + batch])
            )
        start = time.perf_counter()
        callback.on_train_end(state)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        writer.close()
        drain.append(time.perf_counter() - start)
    b, o, d = statistics.median(baseline), statistics.median(ours), statistics.median(drain)
    print(f"\nPR curves, {classes} classes x {samples} samples, median of {rounds}")
    print(f"  {'ten SummaryWriter.add_pr_curve (training thread)':52s} {b * 1e3:9.2f} ms")
    print(f"  {'PRCurves at the end of the run (training thread)':52s} {o * 1e3:9.2f} ms")
    print(f"  {'  then the writer thread, off the training thread':52s} {d * 1e3:9.2f} ms")
    print(f"  training-thread ratio: {b / o:.1f}x cheaper (target >= 10x)")


def bench_prediction_figure(rounds: int, root: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch.nn.functional as F

    from callbacks import PredictionFigure
    from trackers.tools.demo import CLASSES, TutorialNet

    net = TutorialNet()
    images, labels = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    outputs = net(images).detach()

    def plot_classes_preds():  # the seeds' helper, as written there (pyplot, a new forward pass)
        output = net(images)
        _, preds_tensor = torch.max(output, 1)
        preds = np.squeeze(preds_tensor.numpy())
        probs = [F.softmax(el, dim=0)[i].item() for i, el in zip(preds, output)]
        fig = plt.figure(figsize=(12, 48))
        for idx in np.arange(4):
            ax = fig.add_subplot(1, 4, idx + 1, xticks=[], yticks=[])
            img = images[idx].mean(dim=0) / 2 + 0.5
            plt.imshow(img.numpy(), cmap="Greys")
            ax.set_title(
                f"{CLASSES[preds[idx]]}, {probs[idx] * 100.0:.1f}%\n(label: {CLASSES[labels[idx]]})",
                color=("green" if preds[idx] == labels[idx].item() else "red"),
            )
        return fig

    summary_writer = SummaryWriter(f"{root}/fig_sw", flush_secs=3600)
    writer = TensorBoardWriter(f"{root}/fig_lt", flush_secs=3600)
    callback = PredictionFigure(list(CLASSES), every_n_steps=1)
    state = RunState(model=net, writer=writer, step=0)
    baseline, ours, drain = [], [], []
    for r in range(rounds):
        start = time.perf_counter()
        summary_writer.add_figure("predictions vs. actuals", plot_classes_preds(), r)
        baseline.append(time.perf_counter() - start)
        summary_writer.flush()  # untimed: its writer thread must not run into the next timed call
        state.step = r
        start = time.perf_counter()
        callback.on_train_batch_end(state, BatchRecord(images, labels, outputs))
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        writer.flush()
        drain.append(time.perf_counter() - start)
    summary_writer.close()
    writer.close()
    b, o, d = statistics.median(baseline), statistics.median(ours), statistics.median(drain)
    print(f"\nprediction figure (4 images of a batch of 64), median of {rounds}")
    print(f"  {'add_figure(plot_classes_preds(...)) (training thread)':52s} {b * 1e3:9.2f} ms")
    print(f"  {'PredictionFigure (training thread)':52s} {o * 1e3:9.2f} ms")
    print(f"  {'  then the writer thread, off the training thread':52s} {d * 1e3:9.2f} ms")
    print(f"  training-thread ratio: {b / o:.0f}x cheaper")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(machine())
    gc.disable()  # see the module docstring
    with tempfile.TemporaryDirectory() as root:
        bench_histograms(args.rounds, root)
        bench_pr_curves(args.rounds, root)
        bench_prediction_figure(args.rounds, root)


if __name__ == "__main__":
    main()
