"""The tutorial CNN with its callbacks chosen in a config file (examples/tracking.yaml).

python examples/from_config.py [--config examples/tracking.yaml] [--epochs 1]
tensorboard --logdir runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from trackers import Tracker
from trackers.tools.demo import TutorialNet, fashion_mnist_datasets
from trackers.writers.logdir import view_command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).with_name("tracking.yaml")))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=6_000)
    args = parser.parse_args()
    torch.manual_seed(0)
    trainset, testset, description = fashion_mnist_datasets(train_size=args.train_size, test_size=1_000)
    print(description)
    net = TutorialNet()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    with Tracker.from_config(args.config, net) as tracker:

        @tracker.train_step
        def train_step(inputs, labels):
            optimizer.zero_grad()
            loss = criterion(net(inputs), labels)
            loss.backward()
            optimizer.step()
            return loss

        @tracker.eval_step
        def eval_step(inputs, labels):
            with torch.no_grad():
                return {"loss": criterion(net(inputs), labels)}

        for _ in tracker.epochs(args.epochs):
            for inputs, labels in DataLoader(trainset, batch_size=32, shuffle=True):
                train_step(inputs, labels)
            with tracker.validation():
                for inputs, labels in DataLoader(testset, batch_size=256):
                    eval_step(inputs, labels)
    print(f"the run is in {tracker.log_dir}")
    print(f"view it with:  {view_command(tracker.log_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
