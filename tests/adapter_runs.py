"""The same tiny training run through the decorator and through each framework, for adapter tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from callbacks import Callback, LossLogger, PRCurves
from conftest import TinyNet, load_run
from trackers import Tracker

EPOCHS, TRAIN_BATCHES, VAL_BATCHES, BATCH = 2, 3, 2, 8


def data() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    make = lambda n: [(torch.randn(BATCH, 8, generator=generator), torch.randint(0, 3, (BATCH,), generator=generator))
                      for _ in range(n)]
    return make(TRAIN_BATCHES), make(VAL_BATCHES)


def dataset(batches):
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    return torch.utils.data.TensorDataset(xs, ys)


def loader(batches):
    return torch.utils.data.DataLoader(dataset(batches), batch_size=BATCH, shuffle=False)


class Recorder(Callback):
    """The hook names, in order, with the step each saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []


for _name in ("on_train_start", "on_train_epoch_start", "on_train_batch_start", "on_train_batch_end",
              "on_validation_start", "on_validation_batch_start", "on_validation_batch_end", "on_validation_end",
              "on_train_epoch_end", "on_train_end"):
    setattr(Recorder, _name, (lambda name: lambda self, state, *a: self.calls.append((name, state.step)))(_name))


def callbacks() -> tuple[list[Callback], Recorder]:
    recorder = Recorder()
    return [LossLogger(every_n_steps=2), PRCurves(classes=["a", "b", "c"]), recorder], recorder


def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def decorator_run(log_dir, val_loss: bool = True) -> Recorder:
    net = tiny_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    train, val = data()
    cbs, recorder = callbacks()
    with Tracker(net, callbacks=cbs, writer=str(log_dir)) as tracker:
        @tracker.train_step
        def train_step(x, y):
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
            return loss

        @tracker.eval_step
        def eval_step(x, y):
            with torch.no_grad():
                logits = net(x)
            return {"loss": F.cross_entropy(logits, y)} if val_loss else {"outputs": logits}

        for _ in tracker.epochs(EPOCHS):
            for x, y in train:
                train_step(x, y)
            with tracker.validation():
                for x, y in val:
                    eval_step(x, y)
    return recorder


def written(log_dir) -> dict[str, list[int]]:
    run = load_run(log_dir)
    tags = {tag: [e.step for e in run.Scalars(tag)] for tag in run.Tags()["scalars"]}
    tags.update({tag: [e.step for e in run.Tensors(tag)] for tag in run.Tags()["tensors"]})
    return tags


def values(log_dir, tag: str) -> list[float]:
    return [e.value for e in load_run(log_dir).Scalars(tag)]
