"""Host syncs looptrack adds on the training thread, per way in, with gradient accumulation: tracked minus bare.

A sync is a dispatch of ``aten._local_scalar_dense`` (``.item()``, ``float(t)``,
``bool(t)``...), counted with a ``TorchDispatchMode`` on the training thread
(modes are thread-local: the writer thread's reads are not counted, they do
not stall the device queue). Each loop runs once bare and once with
LossLogger, ParameterHistograms, LearningRate and PRCurves logging every 10
steps; the frameworks' own syncs (ignite's default ``loss.item()``) are in both.

    python benchmarks/bench_syncs.py
"""

from __future__ import annotations

import tempfile

import torch
import torch.nn.functional as F
from benchmarks_path import add_repo_to_path

add_repo_to_path()

from common import machine  # noqa: E402

from callbacks import LearningRate, LossLogger, ParameterHistograms, PRCurves  # noqa: E402
from trackers import Tracker  # noqa: E402
from trackers.tools.syncs import SyncCounter  # noqa: E402

STEPS_OF_DATA, BATCH, ACCUMULATE = 80, 16, 2


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randn(BATCH, 16, generator=generator), torch.randint(0, 4, (BATCH,), generator=generator))
        for _ in range(n)
    ]


def callbacks() -> list:
    return [
        LossLogger(every_n_steps=10),
        ParameterHistograms(every_n_steps=10),
        LearningRate(every_n_steps=10),
        PRCurves(classes=["a", "b", "c", "d"]),
    ]


def plain(tracked: bool) -> int:
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = Tracker(model, callbacks=callbacks(), writer=tempfile.mkdtemp(), step_on="optimizer") if tracked else None

    def train_step(x, y):
        loss = F.cross_entropy(model(x), y) / ACCUMULATE
        loss.backward()
        return loss * ACCUMULATE

    def eval_step(x, y):
        with torch.no_grad():
            return {"loss": F.cross_entropy(model(x), y)}

    if tracker is not None:
        train_step, eval_step = tracker.train_step(train_step), tracker.eval_step(eval_step)
    with SyncCounter() as counter:
        for i, (x, y) in enumerate(batches(STEPS_OF_DATA)):
            train_step(x, y)
            if i % ACCUMULATE == ACCUMULATE - 1:
                optimizer.step()
                optimizer.zero_grad()
        for x, y in batches(10):
            eval_step(x, y)
        if tracker is not None:
            tracker.close()
    return counter.syncs


def lightning(tracked: bool) -> int:
    import lightning.pytorch as pl

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = Module()
    data = batches(STEPS_OF_DATA)
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        num_sanity_val_steps=0,
        accumulate_grad_batches=ACCUMULATE,
    )
    tracker = Tracker(module, callbacks=callbacks(), writer=tempfile.mkdtemp()).attach(trainer) if tracked else None
    with SyncCounter() as counter:
        trainer.fit(module, loader, torch.utils.data.DataLoader(batches(10), batch_size=None))
        if tracker is not None:
            tracker.close()
    return counter.syncs


def ignite(tracked: bool) -> int:
    from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
    from ignite.metrics import Loss

    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = create_supervised_trainer(model, optimizer, F.cross_entropy, gradient_accumulation_steps=ACCUMULATE)
    evaluator = create_supervised_evaluator(model, metrics={"loss": Loss(F.cross_entropy)})
    trainer.add_event_handler(Events.COMPLETED, lambda _: evaluator.run(batches(10)))
    tracker = (
        Tracker(model, callbacks=callbacks(), writer=tempfile.mkdtemp()).attach(trainer, evaluator=evaluator)
        if tracked
        else None
    )
    with SyncCounter() as counter:
        trainer.run(batches(STEPS_OF_DATA), max_epochs=1)
        if tracker is not None:
            tracker.close()
    return counter.syncs


def main() -> None:
    print(machine())
    print(
        f"{STEPS_OF_DATA} micro-batches of {BATCH}, accumulation {ACCUMULATE} "
        f"({STEPS_OF_DATA // ACCUMULATE} optimizer steps), 10 validation batches; logging every 10 steps"
    )
    print(f"{'loop':<10} {'bare':>6} {'tracked':>8} {'added':>6}")
    for name, run in (("plain", plain), ("lightning", lightning), ("ignite", ignite)):
        bare, tracked = run(False), run(True)
        print(f"{name:<10} {bare:>6} {tracked:>8} {tracked - bare:>6}")


if __name__ == "__main__":
    main()
