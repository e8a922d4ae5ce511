"""The same tiny training run through the decorator and through each framework, for adapter tests."""

from __future__ import annotations

import torch
from conftest import TinyNet, load_run
from helpers import RecordingCallback, train_tutorial

from callbacks import Callback, LossLogger, PRCurves
from trackers import Tracker

EPOCHS, TRAIN_BATCHES, VAL_BATCHES, BATCH = 2, 3, 2, 8


def lightning_trainer(**overrides):
    """A quiet ``lightning.pytorch.Trainer`` on one CPU (no logger, checkpoints, progress bar or summary)."""
    import lightning.pytorch as pl

    options = dict(
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    options.update(overrides)
    return pl.Trainer(**options)


def data() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)

    def make(n):
        return [
            (torch.randn(BATCH, 8, generator=generator), torch.randint(0, 3, (BATCH,), generator=generator))
            for _ in range(n)
        ]

    return make(TRAIN_BATCHES), make(VAL_BATCHES)


def dataset(batches):
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    return torch.utils.data.TensorDataset(xs, ys)


def loader(batches):
    return torch.utils.data.DataLoader(dataset(batches), batch_size=BATCH, shuffle=False)


def callbacks() -> tuple[list[Callback], RecordingCallback]:
    recorder = RecordingCallback()
    return [LossLogger(every_n_steps=2), PRCurves(classes=["a", "b", "c"]), recorder], recorder


def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def decorator_run(log_dir, val_loss: bool = True) -> RecordingCallback:
    net = tiny_net()
    train, val = data()
    cbs, recorder = callbacks()
    with Tracker(net, callbacks=cbs, writer=str(log_dir)) as tracker:
        train_tutorial(
            tracker,
            net,
            train,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
            epochs=EPOCHS,
            val=val,
            val_outputs=not val_loss,
        )
    return recorder


def written(log_dir) -> dict[str, list[int]]:
    run = load_run(log_dir)
    tags = {tag: [e.step for e in run.Scalars(tag)] for tag in run.Tags()["scalars"]}
    tags.update({tag: [e.step for e in run.Tensors(tag)] for tag in run.Tags()["tensors"]})
    return tags


def values(log_dir, tag: str) -> list[float]:
    return [e.value for e in load_run(log_dir).Scalars(tag)]
