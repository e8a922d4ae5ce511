"""The tutorial CNN trained by ignite engines, logged by looptrack: ``tracker.attach(trainer, evaluator=...)``.

python examples/ignite_fashion_mnist.py --epochs 1
tensorboard --logdir runs
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy, Loss
from torch.utils.data import DataLoader

from callbacks import GraphTrace, LossLogger, ParameterHistograms, PRCurves, PredictionFigure
from trackers import Tracker
from trackers.tools.demo import CLASSES, TutorialNet, fashion_mnist_datasets
from trackers.writers.logdir import view_command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=12_000)
    parser.add_argument("--logdir", default="runs/fashion_mnist_ignite")
    args = parser.parse_args()
    torch.manual_seed(0)
    trainset, testset, description = fashion_mnist_datasets(train_size=args.train_size, test_size=2_000)
    print(description)
    net = TutorialNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    # hand the loss over as a tensor (ignite's default output is loss.item(): a sync every step)
    trainer = create_supervised_trainer(
        net,
        optimizer,
        F.cross_entropy,
        output_transform=lambda x, y, y_pred, loss: {"loss": loss, "y_pred": y_pred, "y": y},
    )
    evaluator = create_supervised_evaluator(net, metrics={"accuracy": Accuracy(), "loss": Loss(F.cross_entropy)})
    testloader = DataLoader(testset, batch_size=256)

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):
        evaluator.run(testloader)

    classes = list(CLASSES)
    tracker = Tracker(
        net,
        callbacks=[
            LossLogger(every_n_steps=50),
            PredictionFigure(classes, every_n_steps=200),
            ParameterHistograms(every_n_steps=100),
            PRCurves(classes),
            GraphTrace(),
        ],
        writer=args.logdir,
    )
    with tracker.attach(trainer, evaluator=evaluator):  # val/loss is the evaluator's Loss metric
        trainer.run(DataLoader(trainset, batch_size=32, shuffle=True), max_epochs=args.epochs)
    print(f"the run is in {tracker.log_dir}")
    print(f"view it with:  {view_command(tracker.log_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
