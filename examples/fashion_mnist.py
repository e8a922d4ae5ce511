"""The PyTorch TensorBoard tutorial (FashionMNIST CNN), trained and logged through looptrack.

    python examples/fashion_mnist.py --epochs 2
    tensorboard --logdir runs

The training loop is in ``trackers/demo.py`` (also ``looptrack demo``): the
tutorial's loop with ``@tracker.train_step`` / ``@tracker.eval_step`` instead
of the hand-written ``SummaryWriter`` calls.
"""

from trackers.tools.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
