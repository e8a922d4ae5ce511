"""Run by test_distributed.py: a Lightning DDP fit on 2 CPU processes, tracked by looptrack."""

import json
import sys

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from callbacks import LossLogger, PRCurves
from trackers import Tracker

log_dir, report = sys.argv[1], sys.argv[2]


class Lit(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, i):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, i):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


g = torch.Generator().manual_seed(0)
x, y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
module = Lit()
tracker = Tracker(
    module, callbacks=[LossLogger(every_n_steps=2, reduce="mean"), PRCurves(["a", "b", "c"])], writer=log_dir
)
trainer = pl.Trainer(
    max_epochs=1,
    strategy="ddp",
    accelerator="cpu",
    devices=2,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
)
tracker.attach(trainer)
trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x, y), batch_size=8))
rank = trainer.global_rank
json.dump(
    {"rank": rank, "writer": [type(s).__name__ for s in tracker.writer.sinks], "steps": tracker.step},
    open(f"{report}.{rank}", "w"),
)
