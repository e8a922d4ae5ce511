"""Tracker.attach(transformers.Trainer): the same tags and steps as the decorator run of the same length."""

from __future__ import annotations

import pytest
import torch

from callbacks import Callback, LossLogger, PRCurves
from conftest import load_run
from trackers import Tracker

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


class Recorder(Callback):
    def __init__(self):
        self.train_steps, self.validation_batches, self.losses = [], 0, []

    def on_train_batch_end(self, state, batch):
        self.train_steps.append(state.step)
        self.losses.append(batch.loss)

    def on_validation_batch_end(self, state, batch):
        self.validation_batches += 1
        assert batch.outputs.shape[1] == 3 and batch.targets.shape == batch.outputs.shape[:1]


class TokenData(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, 100, (n, 12), generator=generator)
        self.labels = self.ids[:, 0] % 3

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def test_transformers_trainer_is_followed(tmp_path):
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, num_labels=3, hidden_dropout_prob=0.0)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=8,
        per_device_eval_batch_size=8, eval_strategy="epoch", save_strategy="no", logging_strategy="no",
        report_to=[], use_cpu=True, disable_tqdm=True, learning_rate=1e-3)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=TokenData(24, 0),
                                   eval_dataset=TokenData(16, 1))
    recorder = Recorder()
    tracker = Tracker(model, callbacks=[LossLogger(every_n_steps=2), PRCurves(classes=["a", "b", "c"]), recorder],
                      writer=str(tmp_path / "run")).attach(trainer)
    trainer.train()
    assert tracker.closed
    assert recorder.train_steps == list(range(6))  # 24 samples / 8, two epochs: steps 0-5
    assert all(isinstance(loss, torch.Tensor) and loss.ndim == 0 for loss in recorder.losses)
    assert recorder.validation_batches == 4  # two evaluations of two batches
    run = load_run(tmp_path / "run")
    assert [e.step for e in run.Scalars("train/loss")] == [1, 3, 5]
    assert [e.step for e in run.Scalars("val/loss")] == [2, 5]
    assert len(run.PluginTagToContent("pr_curves")) == 3
