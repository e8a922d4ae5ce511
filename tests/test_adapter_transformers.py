"""Tracker.attach(transformers.Trainer), driven the way transformers' own docs drive a Trainer.

``trainer.train()``, then ``trainer.evaluate()``, then ``trainer.predict()``; the run ends at ``tracker.close()``.
What the Tracker writes is checked against what the Trainer itself reports (``trainer.state.log_history``, the
metrics ``evaluate``/``predict`` return), read back with TensorBoard's reader.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from adapter_runs import BATCH, EPOCHS, TRAIN_BATCHES, VAL_BATCHES, callbacks, decorator_run, written
from conftest import load_run

from callbacks import Callback, LearningRate, LossLogger, ParameterHistograms
from trackers import Tracker

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

CONFIG = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=3,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


class TokenData(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, 100, (n, 8), generator=generator)
        self.labels = self.ids[:, 0] % 3

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def bert():
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(transformers.BertConfig(**CONFIG))


def make_trainer(tmp_path, model, *, n_train=24, n_eval=10, batch=4, **overrides):
    options = dict(
        output_dir=str(tmp_path / "hf_out"),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=2,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    options.update(overrides)
    args = transformers.TrainingArguments(**options)
    return transformers.Trainer(
        model=model, args=args, train_dataset=TokenData(n_train, 0), eval_dataset=TokenData(n_eval, 1)
    )


def logged(trainer, key):
    """``[(step, value)]`` of ``key`` in the Trainer's own log."""
    return [(entry["step"], entry[key]) for entry in trainer.state.log_history if key in entry]


def series(run, tag):
    return [(e.step, e.value) for e in run.Scalars(tag)]


# --------------------------------------------------------------------------- the decorator run, on a shifted axis
class Batches(Callback):
    """What the adapter hands over per batch: the loss of the forward, the logits and the labels."""

    def __init__(self):
        self.losses, self.validation_shapes = [], []

    def on_train_batch_end(self, state, batch):
        self.losses.append(batch.loss)

    def on_validation_batch_end(self, state, batch):
        self.validation_shapes.append((tuple(batch.outputs.shape), tuple(batch.targets.shape)))


def test_transformers_run_matches_the_decorator_run_one_step_later(tmp_path):
    reference = decorator_run(tmp_path / "decorator")
    model = bert()
    trainer = make_trainer(
        tmp_path, model, n_train=TRAIN_BATCHES * BATCH, n_eval=VAL_BATCHES * BATCH, batch=BATCH, logging_strategy="no"
    )
    cbs, recorder = callbacks()
    batches = Batches()
    tracker = Tracker(model, callbacks=[*cbs, batches], writer=str(tmp_path / "transformers"))
    assert tracker.attach(trainer) is tracker
    trainer.train()
    assert not tracker.closed  # train() no longer ends the run
    tracker.close()
    assert tracker.closed

    ours, theirs = written(tmp_path / "transformers"), written(tmp_path / "decorator")
    assert set(ours) == set(theirs)
    assert {tag: len(steps) for tag, steps in ours.items()} == {tag: len(steps) for tag, steps in theirs.items()}
    # the decorator counts steps from 0, the Trainer's global_step from 1: the same points, one step later
    assert ours == {tag: [step + 1 for step in steps] for tag, steps in theirs.items()}
    assert ours["train/loss"] == [2, 4, 6] and ours["val/loss"] == [3, 6]
    # the same hooks in the same order (the end-of-epoch evaluation falls inside its epoch), steps shifted by one
    assert [name for name, _ in recorder.calls] == [name for name, _ in reference.calls]
    assert [step for _, step in recorder.calls] == [step + 1 if step >= 0 else step for _, step in reference.calls]
    assert all(isinstance(loss, torch.Tensor) and loss.ndim == 0 for loss in batches.losses)
    assert len(batches.losses) == EPOCHS * TRAIN_BATCHES
    assert batches.validation_shapes == [((BATCH, 3), (BATCH,))] * (EPOCHS * VAL_BATCHES)


# ----------------------------------------------------------------------------------- the axis and the train loss
@pytest.mark.parametrize(
    "accumulation, n_train, logging_steps",
    [
        pytest.param(1, 16, 2, id="no-accumulation"),
        pytest.param(2, 16, 2, id="accumulate-2"),
        pytest.param(2, 12, 1, id="accumulate-2-uneven-epoch-log-every-step"),
        pytest.param(2, 12, 2, id="accumulate-2-uneven-epoch"),
    ],
)
def test_train_loss_is_the_trainers_logged_loss_on_its_global_step(tmp_path, accumulation, n_train, logging_steps):
    """``LossLogger(every_n_steps=N)`` logs where ``logging_steps=N`` would log ``loss``: the mean of every micro-batch.

    The Trainer logs every step here (its per-step ``loss`` is the mean of that step's micro-batches); a window
    of N steps is their mean weighted by micro-batches. Batch 4: 16 samples are 4 micro-batches an epoch; 12 are
    3, so with accumulation 2 each epoch's last optimizer step has a single micro-batch (where the mean over
    micro-batches and the Trainer's mean over steps differ; looptrack takes the former).
    """
    model = bert()
    trainer = make_trainer(tmp_path, model, n_train=n_train, gradient_accumulation_steps=accumulation, logging_steps=1)
    tracker = Tracker(model, callbacks=[LossLogger(every_n_steps=logging_steps)], writer=str(tmp_path / "run"))
    tracker.attach(trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    tracker.close()
    assert not [w for w in caught if "step_on" in str(w.message)]  # the plain loop's advice is not the Trainer's

    micro_batches = -(-n_train // 4)
    steps_per_epoch = -(-micro_batches // accumulation)
    assert trainer.state.global_step == EPOCHS * steps_per_epoch
    per_step = logged(trainer, "loss")
    assert [step for step, _ in per_step] == list(range(1, trainer.state.global_step + 1))
    sizes = [min(accumulation, micro_batches - i * accumulation) for i in range(steps_per_epoch)] * EPOCHS
    expected = []
    for end in range(logging_steps, len(per_step) + 1, logging_steps):
        window = range(end - logging_steps, end)
        expected.append((end, sum(per_step[i][1] * sizes[i] for i in window) / sum(sizes[i] for i in window)))
    ours = series(load_run(tmp_path / "run"), "train/loss")
    assert [step for step, _ in ours] == [step for step, _ in expected]  # the Trainer's axis, 1-based
    assert [value for _, value in ours] == pytest.approx([value for _, value in expected], rel=1e-4)


# --------------------------------------------------------------------------------- evaluate() and predict() after
def test_evaluate_and_predict_after_train_are_passes_of_the_same_run(tmp_path):
    model = bert()
    # 10 evaluation samples at batch 4: batches of 4, 4 and 2
    trainer = make_trainer(tmp_path, model, n_eval=10)
    test_data = TokenData(7, 2)  # batches of 4 and 3
    with Tracker(model, callbacks=[LossLogger(every_n_steps=2)], writer=str(tmp_path / "run")) as tracker:
        tracker.attach(trainer)
        trainer.train()
        assert not tracker.closed
        metrics = trainer.evaluate()
        prediction = trainer.predict(test_data)
        assert not tracker.closed
    assert tracker.closed
    last = trainer.state.global_step
    assert last == EPOCHS * 6

    run = load_run(tmp_path / "run")
    in_training = logged(trainer, "eval_loss")[:EPOCHS]
    assert [step for step, _ in in_training] == [6, 12]
    # the epochs' evaluations, then evaluate() after train() at the final global step: the Trainer's values exactly
    assert series(run, "val/loss") == [*in_training, (last, metrics["eval_loss"])]
    # predict() is a test pass: test/loss, the Trainer's test_loss exactly
    assert series(run, "test/loss") == [(last, prediction.metrics["test_loss"])]
    # and the logged value is the sample-weighted mean over the uneven batches, not the mean of batch means
    model.eval()
    with torch.no_grad():
        ids, labels = trainer.eval_dataset.ids, trainer.eval_dataset.labels
        per_sample = torch.nn.functional.cross_entropy(model(input_ids=ids).logits, labels, reduction="none")
    batch_means = torch.stack([chunk.mean() for chunk in per_sample.split(4)])
    assert metrics["eval_loss"] == pytest.approx(per_sample.mean().item(), rel=1e-5)
    assert batch_means.mean().item() != pytest.approx(per_sample.mean().item(), rel=1e-5)
    assert series(run, "val/loss")[-1][1] == pytest.approx(per_sample.mean().item(), rel=1e-5)


# ------------------------------------------------------------------------------------- gradients and parameters
class Reference(transformers.TrainerCallback):
    """The gradients just before each optimizer step and the weights after it, from transformers' own hooks."""

    def __init__(self, model):
        self.model = model
        self.gradients, self.parameters = {}, {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.gradients[state.global_step + 1] = {
            name: p.grad.detach().clone() for name, p in self.model.named_parameters() if p.grad is not None
        }

    def on_step_end(self, args, state, control, **kwargs):
        self.parameters[state.global_step] = {name: p.detach().clone() for name, p in self.model.named_parameters()}


def test_gradient_histograms_of_every_trainable_parameter_before_the_optimizer_step(tmp_path):
    model = bert()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    trainer = make_trainer(tmp_path, model, n_train=16, n_eval=4, gradient_accumulation_steps=2)
    reference = Reference(model)
    trainer.add_callback(reference)
    tracker = Tracker(model, callbacks=[ParameterHistograms(every_n_steps=1)], writer=str(tmp_path / "run"))
    tracker.attach(trainer)
    trainer.train()
    tracker.close()

    steps = list(range(1, trainer.state.global_step + 1))
    assert steps == [1, 2, 3, 4]
    run = load_run(tmp_path / "run")
    histograms = run.Tags()["histograms"]
    gradient_tags = sorted(tag for tag in histograms if tag.startswith("gradients/"))
    assert len(gradient_tags) == len(trainable)
    assert gradient_tags == sorted(f"gradients/{name}" for name in trainable)
    assert sorted(tag for tag in histograms if tag.startswith("parameters/")) == sorted(
        f"parameters/{name}" for name, _ in model.named_parameters()
    )
    assert all(set(reference.gradients[step]) == set(trainable) for step in steps)
    for name in trainable:
        gradients = run.Histograms(f"gradients/{name}")
        assert [e.step for e in gradients] == steps  # one per optimizer step, on global_step
        for event in gradients:
            expected = reference.gradients[event.step][name]  # the accumulated gradient the optimizer used
            value = event.histogram_value
            assert value.num == expected.numel()
            assert value.sum == pytest.approx(expected.double().sum().item(), rel=1e-4, abs=1e-7)
            assert value.sum_squares == pytest.approx(expected.double().square().sum().item(), rel=1e-4, abs=1e-12)
        parameters = run.Histograms(f"parameters/{name}")
        assert [e.step for e in parameters] == steps
        for event in parameters:
            expected = reference.parameters[event.step][name]  # the weights after that step
            assert event.histogram_value.sum_squares == pytest.approx(expected.double().square().sum().item(), rel=1e-5)


# --------------------------------------------------------------------------------------------------- learning rate
def test_learning_rate_without_an_optimizer_takes_the_trainers(tmp_path):
    model = bert()
    trainer = make_trainer(tmp_path, model, n_train=16, n_eval=4, logging_steps=1)
    tracker = Tracker(model, callbacks=[LearningRate(every_n_steps=1)], writer=str(tmp_path / "run"))
    tracker.attach(trainer)
    trainer.train()
    tracker.close()

    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps the torch one
    groups = optimizer.param_groups
    expected_tags = {"lr"} if len(groups) == 1 else {f"lr/group{i}" for i in range(len(groups))}
    run = load_run(tmp_path / "run")
    lr_tags = {tag for tag in run.Tags()["scalars"] if tag.split("/")[0] == "lr"}
    assert lr_tags == expected_tags  # one optimizer (not also accelerate's wrapper), its groups
    steps = list(range(1, trainer.state.global_step + 1))
    for tag in expected_tags:
        assert [e.step for e in run.Scalars(tag)] == steps
    # the first point is the rate the first update used (the scheduler moves it only after the step)
    for tag, group in zip(sorted(expected_tags), groups):
        assert run.Scalars(tag)[0].value == pytest.approx(group["initial_lr"], rel=1e-6)


def test_learning_rate_is_the_trainers_logged_learning_rate_at_each_step(tmp_path):
    """The Trainer logs, at global step s, the rate optimizer step s used; so must ``lr`` at step s."""
    model = bert()
    trainer = make_trainer(tmp_path, model, n_train=16, n_eval=4, logging_steps=1, lr_scheduler_type="linear")
    tracker = Tracker(model, callbacks=[LearningRate(every_n_steps=1)], writer=str(tmp_path / "run"))
    tracker.attach(trainer)
    trainer.train()
    tracker.close()

    run = load_run(tmp_path / "run")
    tag = sorted(tag for tag in run.Tags()["scalars"] if tag.split("/")[0] == "lr")[0]
    expected = logged(trainer, "learning_rate")
    assert [step for step, _ in expected] == list(range(1, 9))  # 16 samples at batch 4: 4 steps an epoch
    ours = series(run, tag)
    assert [step for step, _ in ours] == [step for step, _ in expected]
    assert [value for _, value in ours] == pytest.approx([value for _, value in expected], rel=1e-6)


# ---------------------------------------------------------------------------------------------------- attach twice
def test_attaching_the_same_tracker_twice_raises(tmp_path):
    model = bert()
    trainer = make_trainer(tmp_path, model, n_train=16, n_eval=4)
    tracker = Tracker(model, callbacks=[LossLogger(every_n_steps=2)], writer=str(tmp_path / "run"))
    tracker.attach(trainer)
    handlers = list(trainer.callback_handler.callbacks)
    with pytest.raises(ValueError, match="already follows"):
        tracker.attach(trainer)
    with pytest.raises(ValueError, match="already follows"):
        tracker.attach(make_trainer(tmp_path, model, n_train=16, n_eval=4))
    assert trainer.callback_handler.callbacks == handlers  # the failed attach added nothing
    trainer.train()
    tracker.close()
    # steps counted once: the Trainer's own loss, at its own steps
    ours, expected = series(load_run(tmp_path / "run"), "train/loss"), logged(trainer, "loss")
    assert [step for step, _ in ours] == [step for step, _ in expected] == [2, 4, 6, 8]
    assert [value for _, value in ours] == pytest.approx([value for _, value in expected], rel=1e-5)
