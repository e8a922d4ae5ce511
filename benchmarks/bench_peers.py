"""Step time of the same logging done by hand, by Lightning, by ignite and by looptrack, side by side.

Same logging everywhere: loss every 50 steps, the tutorial's prediction figure
every 500, parameter histograms every 100, PR curves for 10 classes over the
validation set at the end, the graph at the start. Each variant is a whole
run (start, steps, validation, end), timed wall-clock and divided by the
number of steps; variants run in turn, the order reversed every other
repeat; medians and best runs are compared with the bare loop's.

    python benchmarks/bench_peers.py                         # tutorial CNN, batch 64
    python benchmarks/bench_peers.py --model cnn --batch 4
    python benchmarks/bench_peers.py --model resnet18 --batch 16 --val-samples 2000

Targets (issue 7): looptrack's full logging <= 3 % over the bare loop on the
tutorial CNN at batch 64, and faster than each peer doing the same logging.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from benchmarks_path import add_repo_to_path
from torch.utils.data import DataLoader, TensorDataset

add_repo_to_path()

from common import machine  # noqa: E402

from trackers.tools.demo import (  # noqa: E402
    CLASSES,
    TutorialNet,
    tutorial_step,
)

LOSS_EVERY, FIGURE_EVERY, HIST_EVERY = 50, 500, 100


def build(model_name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    if model_name == "cnn":
        return TutorialNet(), (1, 28, 28)
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=10), (3, 32, 32)


# --- the seeds' hand-written logging -------------------------------------------------------------
def plot_classes_preds(net, images, labels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with torch.no_grad():
        output = net(images)
    _, preds_tensor = torch.max(output, 1)
    preds = np.squeeze(preds_tensor.numpy())
    probs = [F.softmax(el, dim=0)[i].item() for i, el in zip(preds, output)]
    fig = plt.figure(figsize=(12, 48))
    for idx in np.arange(min(4, len(images))):
        ax = fig.add_subplot(1, 4, idx + 1, xticks=[], yticks=[])
        img = images[idx].mean(dim=0) / 2 + 0.5
        plt.imshow(img.numpy(), cmap="Greys")
        ax.set_title(
            f"{CLASSES[preds[idx]]}, {probs[idx] * 100.0:.1f}%\n(label: {CLASSES[labels[idx]]})",
            color=("green" if preds[idx] == labels[idx].item() else "red"),
        )
    return fig


def seed_histograms(writer, net, step):
    for name, param in net.named_parameters():
        writer.add_histogram(name, param, step)


def seed_pr_curves(writer, outputs, targets, step):
    probs = torch.softmax(outputs, 1)
    for i, name in enumerate(CLASSES):
        writer.add_pr_curve(name, targets == i, probs[:, i], step)


def seed_graph(writer, net, example):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer.add_graph(net, example)


class Setup:
    def __init__(self, args):
        self.args = args
        generator = torch.Generator().manual_seed(0)
        n = args.steps * args.batch
        self.x = torch.randn(n, *build(args.model)[1], generator=generator)
        self.y = torch.randint(0, 10, (n,), generator=generator)
        self.vx = torch.randn(args.val_samples, *build(args.model)[1], generator=generator)
        self.vy = torch.randint(0, 10, (args.val_samples,), generator=generator)
        self.root = tempfile.mkdtemp()

    def batches(self):
        b = self.args.batch
        return [(self.x[i : i + b], self.y[i : i + b]) for i in range(0, len(self.x), b)]

    def train_loader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.args.batch)

    def val_loader(self):
        return DataLoader(TensorDataset(self.vx, self.vy), batch_size=500)

    def fresh(self):
        net, _ = build(self.args.model)
        return net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)


def run_bare(s: Setup, log: bool = False) -> None:
    from torch.utils.tensorboard import SummaryWriter

    net, opt = s.fresh()
    step = tutorial_step(net, opt)
    writer = SummaryWriter(f"{s.root}/seeds{time.time()}") if log else None
    batches = s.batches()
    if log:
        seed_graph(writer, net, batches[0][0])
    running = 0.0
    for i, (x, y) in enumerate(batches):
        loss = step(x, y)
        if log:
            running += loss.item()
            if i % LOSS_EVERY == LOSS_EVERY - 1:
                writer.add_scalar("training loss", running / LOSS_EVERY, i)
                running = 0.0
            if i % HIST_EVERY == HIST_EVERY - 1:
                seed_histograms(writer, net, i)
            if i % FIGURE_EVERY == FIGURE_EVERY - 1:
                writer.add_figure("predictions vs. actuals", plot_classes_preds(net, x, y), i)
    with torch.no_grad():
        outputs = torch.cat([net(x) for x, _ in s.val_loader()])
    if log:
        seed_pr_curves(writer, outputs, s.vy, len(batches) - 1)
        writer.close()


def looptrack_callbacks():
    from callbacks import GraphTrace, LossLogger, ParameterHistograms, PRCurves, PredictionFigure

    classes = list(CLASSES)
    return [
        LossLogger(every_n_steps=LOSS_EVERY),
        PredictionFigure(classes, every_n_steps=FIGURE_EVERY),
        ParameterHistograms(every_n_steps=HIST_EVERY, gradients=False),  # parameters only, as the seeds
        PRCurves(classes),
        GraphTrace(),
    ]


def run_looptrack(s: Setup) -> None:
    from trackers import Tracker

    net, opt = s.fresh()
    with Tracker(net, callbacks=looptrack_callbacks(), writer=f"{s.root}/lt{time.time()}") as tracker:
        train_step = tracker.train_step(tutorial_step(net, opt))

        @tracker.eval_step
        def eval_step(x, y):
            with torch.no_grad():
                return {"outputs": net(x)}

        for x, y in s.batches():
            train_step(x, y)
        with tracker.validation():
            for x, y in s.val_loader():
                eval_step(x, y)


def _lightning_module(net, opt):
    import lightning.pytorch as pl

    class Lit(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            loss = F.cross_entropy(self(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            return {"outputs": self(batch[0])}

        def configure_optimizers(self):
            return opt

    return Lit()


def _lightning_trainer(s: Setup, logger, callbacks):
    import lightning.pytorch as pl

    return pl.Trainer(
        max_epochs=1,
        logger=logger,
        callbacks=callbacks,
        log_every_n_steps=LOSS_EVERY,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
    )


def run_lightning(s: Setup, mode: str) -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    net, opt = s.fresh()
    module = _lightning_module(net, opt)
    if mode == "none":
        trainer = _lightning_trainer(s, False, [])
    elif mode == "tensorboard":

        class SameLogging(pl.Callback):
            def __init__(self):
                self.outputs = []

            def on_train_start(self, trainer, pl_module):
                seed_graph(trainer.logger.experiment, net, s.batches()[0][0])

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                step = trainer.global_step - 1
                if step % HIST_EVERY == HIST_EVERY - 1:
                    seed_histograms(trainer.logger.experiment, net, step)
                if step % FIGURE_EVERY == FIGURE_EVERY - 1:
                    trainer.logger.experiment.add_figure(
                        "predictions vs. actuals", plot_classes_preds(net, batch[0], batch[1]), step
                    )

            def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
                self.outputs.append(outputs["outputs"])

            def on_validation_end(self, trainer, pl_module):
                seed_pr_curves(trainer.logger.experiment, torch.cat(self.outputs), s.vy, trainer.global_step - 1)

        trainer = _lightning_trainer(s, TensorBoardLogger(s.root, name=f"pl{time.time()}"), [SameLogging()])
    else:
        from trackers import Tracker

        trainer = _lightning_trainer(s, False, [])
        Tracker(module, callbacks=looptrack_callbacks(), writer=f"{s.root}/ltpl{time.time()}").attach(trainer)
    trainer.fit(module, s.train_loader(), s.val_loader())


def run_ignite(s: Setup, mode: str) -> None:
    from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer

    net, opt = s.fresh()
    trainer = create_supervised_trainer(
        net, opt, F.cross_entropy, output_transform=lambda x, y, y_pred, loss: {"loss": loss, "y_pred": y_pred, "y": y}
    )
    evaluator = create_supervised_evaluator(net)

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):
        evaluator.run(s.val_loader())

    if mode == "tensorboard":
        from ignite.handlers.tensorboard_logger import OutputHandler, TensorboardLogger, WeightsHistHandler

        tb = TensorboardLogger(log_dir=f"{s.root}/ig{time.time()}")
        tb.attach(
            trainer,
            log_handler=OutputHandler(tag="training", output_transform=lambda o: {"loss": o["loss"]}),
            event_name=Events.ITERATION_COMPLETED(every=LOSS_EVERY),
        )
        tb.attach(trainer, log_handler=WeightsHistHandler(net), event_name=Events.ITERATION_COMPLETED(every=HIST_EVERY))

        @trainer.on(Events.STARTED)
        def graph(engine):
            seed_graph(tb.writer, net, s.batches()[0][0])

        @trainer.on(Events.ITERATION_COMPLETED(every=FIGURE_EVERY))
        def figure(engine):
            x, y = engine.state.batch
            tb.writer.add_figure("predictions vs. actuals", plot_classes_preds(net, x, y), engine.state.iteration)

        outputs = []
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output[0]))
        trainer.add_event_handler(
            Events.COMPLETED,
            lambda e: (seed_pr_curves(tb.writer, torch.cat(outputs), s.vy, e.state.iteration), tb.close()),
        )
    elif mode == "looptrack":
        from trackers import Tracker

        Tracker(net, callbacks=looptrack_callbacks(), writer=f"{s.root}/ltig{time.time()}").attach(
            trainer, evaluator=evaluator
        )
    trainer.run(s.train_loader(), max_epochs=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("cnn", "resnet18"), default="cnn")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--val-samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (imports, caches)")
    parser.add_argument("--only", default="", help="comma-separated loops to run: plain,lightning,ignite (default all)")
    args = parser.parse_args()
    print(machine())
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-run banners between the rows
    s = Setup(args)
    variants: dict[str, Callable[[], None]] = {
        "bare loop": lambda: run_bare(s),
        "seeds' SummaryWriter code": lambda: run_bare(s, log=True),
        "looptrack (decorator)": lambda: run_looptrack(s),
    }
    only = set(filter(None, args.only.split(",")))
    if only - {"plain", "lightning", "ignite"}:
        parser.error(f"--only takes plain, lightning and ignite, got {args.only!r}")
    try:
        if only and "lightning" not in only:
            raise ImportError
        import lightning.pytorch  # noqa: F401

        variants.update(
            {
                "Lightning, no logging": lambda: run_lightning(s, "none"),
                "Lightning + TensorBoardLogger": lambda: run_lightning(s, "tensorboard"),
                "looptrack attached to Lightning": lambda: run_lightning(s, "looptrack"),
            }
        )
    except ImportError:
        print("(lightning not installed or not asked for: its rows are skipped)")
    try:
        if only and "ignite" not in only:
            raise ImportError
        import ignite  # noqa: F401

        variants.update(
            {
                "ignite, no logging": lambda: run_ignite(s, "none"),
                "ignite + TensorboardLogger": lambda: run_ignite(s, "tensorboard"),
                "looptrack attached to ignite": lambda: run_ignite(s, "looptrack"),
            }
        )
    except ImportError:
        print("(ignite not installed or not asked for: its rows are skipped)")
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.warmup):
            for name in names:
                variants[name]()
        for repeat in range(args.repeats):
            for name in names if repeat % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                variants[name]()
                times[name].append((time.perf_counter() - start) / args.steps)
    medians = {name: statistics.median(values) for name, values in times.items()}
    bests = {name: min(values) for name, values in times.items()}
    print(
        f"\n{args.model}, batch {args.batch}, {args.steps} steps + validation over {args.val_samples} samples, "
        f"whole runs x {args.repeats}; logging: loss/{LOSS_EVERY}, figure/{FIGURE_EVERY}, "
        f"histograms/{HIST_EVERY}, PR curves and graph. 'best' is the fastest run of each variant: on a shared "
        "machine noise only adds time, so it is the steadier estimate"
    )

    def over(table: dict[str, float], name: str, floor: str) -> float:
        return 100 * (table[name] / table[floor] - 1)

    print(f"  {'variant':34s} {'median ms/step':>15s} {'vs bare':>8s} {'best ms/step':>13s} {'vs bare':>8s}")
    for name in times:
        print(
            f"  {name:34s} {medians[name] * 1e3:15.3f} {over(medians, name, 'bare loop'):+7.1f}% "
            f"{bests[name] * 1e3:13.3f} {over(bests, name, 'bare loop'):+7.1f}%"
        )
    for framework, ours, peer, floor in (
        ("plain loop", "looptrack (decorator)", "seeds' SummaryWriter code", "bare loop"),
        ("Lightning", "looptrack attached to Lightning", "Lightning + TensorBoardLogger", "Lightning, no logging"),
        ("ignite", "looptrack attached to ignite", "ignite + TensorboardLogger", "ignite, no logging"),
    ):
        if ours in medians:
            print(
                f"  {framework}: logging costs looptrack {over(medians, ours, floor):+.1f}% "
                f"(best {over(bests, ours, floor):+.1f}%), the peer {over(medians, peer, floor):+.1f}% "
                f"(best {over(bests, peer, floor):+.1f}%) over {floor}"
            )


if __name__ == "__main__":
    main()
