"""A tiny BERT classifier built from a config (no download), trained by transformers.Trainer, logged by looptrack.

python examples/transformers_tiny.py --epochs 2
tensorboard --logdir runs
"""

from __future__ import annotations

import argparse
import os

import torch
import transformers

from callbacks import GraphTrace, LossLogger, PRCurves
from trackers import Tracker
from trackers.writers.logdir import view_command


class SyntheticTokens(torch.utils.data.Dataset):
    """Token sequences whose class is given by their first token: learnable in a few steps."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(5, 200, (size, 16), generator=generator)
        self.labels = self.input_ids[:, 0] % 3

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--logdir", default="runs/transformers_tiny")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, num_labels=3
    )
    model = transformers.BertForSequenceClassification(config)
    training = transformers.TrainingArguments(
        output_dir=os.path.join(args.logdir, "checkpoints"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=1e-3,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=model,
        args=training,
        train_dataset=SyntheticTokens(args.train_size, 0),
        eval_dataset=SyntheticTokens(128, 1),
    )
    tracker = Tracker(
        model,
        callbacks=[LossLogger(every_n_steps=10), PRCurves(["zero", "one", "two"]), GraphTrace()],
        writer=args.logdir,
    )
    with tracker.attach(trainer):  # points on the Trainer's global_step, val/loss is its eval_loss
        trainer.train()
        print(trainer.evaluate())  # the final evaluation belongs to the run too
    print(f"the run is in {tracker.log_dir}")
    print(f"view it with:  {view_command(tracker.log_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
