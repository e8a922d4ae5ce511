"""The demo: the PyTorch TensorBoard tutorial's FashionMNIST CNN, trained through a Tracker.

    looptrack demo                      # or: python -m trackers demo, python examples/fashion_mnist.py
    looptrack demo --epochs 1 --logdir runs/quick
    tensorboard --logdir runs

The real FashionMNIST is used when its files are in ``--data-dir`` (or with
``--download``); otherwise a synthetic, learnable 28x28 10-class data set is
generated on the fly, so the demo runs offline in well under a minute.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trackers.writers.logdir import free_run_dir, holds_events

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle Boot")


class TutorialNet(nn.Module):
    """The tutorial's CNN for 1x28x28 images and 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _prototypes(generator: torch.Generator) -> torch.Tensor:
    """Ten smooth 28x28 patterns in [0, 1], one per class (blurred random blobs, fixed by the seed)."""
    # a shared silhouette plus a class-specific part, so classes overlap like clothes do
    coarse = 0.55 * torch.rand(1, 1, 7, 7, generator=generator) + 0.45 * torch.rand(10, 1, 7, 7, generator=generator)
    smooth = F.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=False)
    smooth = smooth - smooth.amin(dim=(2, 3), keepdim=True)
    return (smooth / smooth.amax(dim=(2, 3), keepdim=True)).clamp(0, 1)


class SyntheticFashionMNIST(Dataset):
    """A learnable stand-in for FashionMNIST: each image is its class's pattern, shifted and noisy.

    >>> data = SyntheticFashionMNIST(100, seed=0)
    >>> image, label = data[0]
    >>> tuple(image.shape), image.dtype, 0 <= label < 10
    ((1, 28, 28), torch.float32, True)

    Values are normalised like the tutorial's ``Normalize((0.5,), (0.5,))``,
    so they lie in about [-1, 1]. The patterns depend only on ``seed``;
    ``train=False`` draws other samples of the same classes.
    """

    def __init__(self, size: int, seed: int = 0, train: bool = True) -> None:
        if size < 1:
            raise ValueError(f"SyntheticFashionMNIST: size must be >= 1, got {size}")
        prototypes = _prototypes(torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed * 2 + (0 if train else 1) + 1)
        self.targets = torch.randint(0, 10, (size,), generator=generator)
        images = prototypes[self.targets]
        shifts = torch.randint(-2, 3, (size, 2), generator=generator)  # up to two pixels each way
        padded = F.pad(images, (2, 2, 2, 2))
        rows = (torch.arange(28).view(1, 28, 1) + 2 - shifts[:, 0].view(-1, 1, 1)).expand(size, 28, 28)
        cols = (torch.arange(28).view(1, 1, 28) + 2 - shifts[:, 1].view(-1, 1, 1)).expand(size, 28, 28)
        shifted = padded[torch.arange(size).view(-1, 1, 1), 0, rows, cols].unsqueeze(1)
        noisy = shifted * (0.7 + 0.6 * torch.rand(size, 1, 1, 1, generator=generator))
        noisy = noisy + 0.35 * torch.randn(noisy.shape, generator=generator)
        self.data = ((noisy.clamp(0, 1) - 0.5) / 0.5).contiguous()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.data[index], int(self.targets[index])


def tutorial_step(
    net: nn.Module, optimizer: torch.optim.Optimizer | None, criterion: Callable[..., torch.Tensor] = F.cross_entropy
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The tutorial's training step: zero_grad, loss, backward, optimizer step (``optimizer=None``: the loss only).

    >>> step = tutorial_step(TutorialNet(), None)
    >>> step(torch.zeros(2, 1, 28, 28), torch.tensor([0, 1])).shape
    torch.Size([])
    """

    def step(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if optimizer is None:
            return criterion(net(inputs), labels)
        optimizer.zero_grad()
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()
        return loss

    return step


def fashion_mnist_datasets(
    data_dir: str = "./data", download: bool = False, train_size: int = 12_000, test_size: int = 2_000, seed: int = 0
) -> tuple[Dataset, Dataset, str]:
    """``(trainset, testset, description)``: the real FashionMNIST if present (or downloaded), else synthetic."""
    try:
        import torchvision
        from torchvision import transforms

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
        trainset = torchvision.datasets.FashionMNIST(data_dir, train=True, download=download, transform=transform)
        testset = torchvision.datasets.FashionMNIST(data_dir, train=False, download=download, transform=transform)
        return trainset, testset, f"FashionMNIST from {data_dir} ({len(trainset)} train, {len(testset)} test images)"
    except (RuntimeError, OSError) as error:
        if download:
            raise RuntimeError(f"could not download FashionMNIST into {data_dir}: {error}") from error
    return (
        SyntheticFashionMNIST(train_size, seed, train=True),
        SyntheticFashionMNIST(test_size, seed, train=False),
        f"FashionMNIST not found in {data_dir}: using a synthetic 28x28 10-class data set "
        f"({train_size} train, {test_size} test images; pass --download to fetch the real one)",
    )


def demo_callbacks(log_every: int, optimizer: torch.optim.Optimizer, hparams: dict) -> list:
    """What the demo logs: everything the tutorial does by hand, and a little more."""
    from callbacks import (
        ActivationStats,
        Embedding,
        GradientStats,
        GraphTrace,
        HParams,
        ImageGrid,
        LearningRate,
        LossLogger,
        NonFiniteSentinel,
        ParameterHistograms,
        PRCurves,
        PredictionFigure,
        TextLogger,
    )

    classes = list(CLASSES)
    return [
        LossLogger(every_n_steps=log_every),
        PredictionFigure(classes, every_n_steps=log_every * 4),
        ImageGrid(tag="four_fashion_mnist_images", n=4),
        GraphTrace(),
        ParameterHistograms(every_n_steps=log_every * 2),
        ActivationStats(every_n_steps=log_every * 2),
        GradientStats(every_n_steps=log_every * 2),
        NonFiniteSentinel(every_n_steps=log_every),
        LearningRate(optimizer, every_n_steps=log_every),
        PRCurves(classes=classes),
        Embedding(n=200, layer="fc2", classes=classes),
        TextLogger(tag="model"),
        HParams(hparams),
    ]


def fresh_log_dir(path: str) -> str:
    """``path``, or the next free ``<path>_<n>`` beside it if a run is already there (runs are not mixed)."""
    return free_run_dir(path, holds_events)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="looptrack demo",
        description="Train the PyTorch TensorBoard tutorial's FashionMNIST CNN through looptrack and log it "
        "for TensorBoard.",
    )
    parser.add_argument("--epochs", type=int, default=2, help="passes over the training set (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    parser.add_argument("--train-size", type=int, default=12_000, help="synthetic training images (default 12000)")
    parser.add_argument("--test-size", type=int, default=2_000, help="synthetic test images (default 2000)")
    parser.add_argument("--log-every", type=int, default=50, help="log the loss every N steps (default 50)")
    parser.add_argument(
        "--logdir",
        default="runs/fashion_mnist_experiment_1",
        help="where the run is written (default runs/fashion_mnist_experiment_1)",
    )
    parser.add_argument("--data-dir", default="./data", help="where FashionMNIST is looked for (default ./data)")
    parser.add_argument("--download", action="store_true", help="download the real FashionMNIST (needs a network)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "train_size", "test_size", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    from tqdm import tqdm

    from trackers.core.tracker import Tracker
    from trackers.writers.logdir import view_command

    args = parse_args(argv)
    torch.manual_seed(args.seed)
    trainset, testset, description = fashion_mnist_datasets(
        args.data_dir, args.download, args.train_size, args.test_size, args.seed
    )
    print(description)
    trainloader = DataLoader(trainset, batch_size=args.batch_size, shuffle=True, num_workers=0)
    testloader = DataLoader(testset, batch_size=256, shuffle=False, num_workers=0)
    log_dir = fresh_log_dir(args.logdir)
    if log_dir != args.logdir:
        print(f"{args.logdir} already holds a run; writing this one to {log_dir}")
    net = TutorialNet()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
    started = time.perf_counter()

    hparams = {"lr": args.lr, "batch_size": args.batch_size, "epochs": args.epochs, "optimizer": "SGD(momentum=0.9)"}
    with Tracker(net, callbacks=demo_callbacks(args.log_every, optimizer, hparams), writer=log_dir) as tracker:
        train_step = tracker.train_step(tutorial_step(net, optimizer, criterion))

        @tracker.eval_step
        def eval_step(inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.no_grad():
                outputs = net(inputs)
            return {"loss": criterion(outputs, labels), "outputs": outputs}

        for epoch in tracker.epochs(args.epochs):
            net.train()
            running = torch.zeros(())
            bar = tqdm(
                trainloader,
                desc=f"epoch {epoch + 1}/{args.epochs}",
                disable=args.no_progress,
                leave=True,
                dynamic_ncols=True,
            )
            for i, (inputs, labels) in enumerate(bar):
                running += train_step(inputs, labels).detach()
                if (i + 1) % args.log_every == 0:  # read the loss back only when showing it
                    bar.set_postfix(loss=f"{running.item() / args.log_every:.3f}")
                    running.zero_()
            net.eval()
            correct, seen = torch.zeros((), dtype=torch.long), 0
            with tracker.validation():
                for inputs, labels in testloader:
                    result = eval_step(inputs, labels)
                    correct += (result["outputs"].argmax(1) == labels).sum()
                    seen += labels.numel()
            print(f"epoch {epoch + 1}: validation accuracy {correct.item() / max(seen, 1):.1%}")

    elapsed = time.perf_counter() - started
    print(f"finished in {elapsed:.1f} s; the run is in {tracker.log_dir}")
    if tracker.log_dir is not None:
        print(f"view it with:  {view_command(tracker.log_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
