"""The tutorial CNN trained by a Lightning Trainer, logged by looptrack: ``tracker.attach(trainer)``.

python examples/lightning_fashion_mnist.py --epochs 1
tensorboard --logdir runs
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from callbacks import GraphTrace, LossLogger, ParameterHistograms, PRCurves, PredictionFigure
from trackers import Tracker
from trackers.tools.demo import CLASSES, TutorialNet, fashion_mnist_datasets
from trackers.writers.logdir import view_command


class LitTutorialNet(pl.LightningModule):
    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.net = TutorialNet()
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        inputs, labels = batch
        loss = F.cross_entropy(self(inputs), labels)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        inputs, labels = batch
        self.log("val_loss", F.cross_entropy(self(inputs), labels))  # looptrack logs it as val/loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=12_000)
    parser.add_argument("--logdir", default="runs/fashion_mnist_lightning")
    args = parser.parse_args()
    torch.manual_seed(0)
    trainset, testset, description = fashion_mnist_datasets(train_size=args.train_size, test_size=2_000)
    print(description)
    model = LitTutorialNet()
    classes = list(CLASSES)
    tracker = Tracker(
        model,
        callbacks=[
            LossLogger(every_n_steps=50),
            PredictionFigure(classes, every_n_steps=200),
            ParameterHistograms(every_n_steps=100),
            PRCurves(classes),
            GraphTrace(),
        ],
        writer=args.logdir,
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
        devices=1,
        enable_model_summary=False,
    )
    with tracker.attach(trainer):  # the run ends with the block: PR curves from the last validation pass
        trainer.fit(model, DataLoader(trainset, batch_size=32, shuffle=True), DataLoader(testset, batch_size=256))
    print(f"the run is in {tracker.log_dir}")
    print(f"view it with:  {view_command(tracker.log_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
