"""Tracker.attach(transformers.Trainer) writes the tags and steps, and calls the hooks, of the decorator run."""

from __future__ import annotations

import pytest
import torch

from adapter_runs import BATCH, EPOCHS, TRAIN_BATCHES, VAL_BATCHES, callbacks, decorator_run, written
from callbacks import Callback
from trackers import Tracker

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


class Batches(Callback):
    """What the adapter hands over per batch: the loss of the forward, the logits and the labels."""

    def __init__(self):
        self.losses, self.validation_shapes = [], []

    def on_train_batch_end(self, state, batch):
        self.losses.append(batch.loss)

    def on_validation_batch_end(self, state, batch):
        self.validation_shapes.append((tuple(batch.outputs.shape), tuple(batch.targets.shape)))


class TokenData(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, 100, (n, 12), generator=generator)
        self.labels = self.ids[:, 0] % 3

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def test_transformers_run_equals_the_decorator_run(tmp_path):
    reference = decorator_run(tmp_path / "decorator")
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, num_labels=3, hidden_dropout_prob=0.0)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH, eval_strategy="epoch", save_strategy="no", logging_strategy="no",
        report_to=[], use_cpu=True, disable_tqdm=True, learning_rate=1e-3)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=TokenData(TRAIN_BATCHES * BATCH, 0),
                                   eval_dataset=TokenData(VAL_BATCHES * BATCH, 1))
    cbs, recorder = callbacks()
    batches = Batches()
    tracker = Tracker(model, callbacks=[*cbs, batches], writer=str(tmp_path / "transformers"))
    assert tracker.attach(trainer) is tracker
    trainer.train()
    assert tracker.closed
    assert written(tmp_path / "transformers") == written(tmp_path / "decorator")
    assert recorder.calls == reference.calls  # the Trainer's end-of-epoch evaluation falls inside the epoch
    assert all(isinstance(loss, torch.Tensor) and loss.ndim == 0 for loss in batches.losses)
    assert len(batches.losses) == EPOCHS * TRAIN_BATCHES
    assert batches.validation_shapes == [((BATCH, 3), (BATCH,))] * (EPOCHS * VAL_BATCHES)
