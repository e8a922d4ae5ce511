"""How to fix a missing loss or missing outputs, said in the terms of the loop the user runs.

>>> print(missing_loss_fix("ignite", "train")[:41])
make the trainer's state.output carry the
"""

from __future__ import annotations

_TRAIN_LOSS = {
    "decorator": "return the loss tensor (or {'loss': loss, ...}) from the @tracker.train_step function",
    "lightning": "return the loss (or {'loss': loss, ...}) from training_step",
    "ignite": (
        "make the trainer's state.output carry the loss (create_supervised_trainer's default, a number, "
        "a dict with a 'loss' key, or (loss, y_pred, y)), or say where it is: "
        "tracker.attach(trainer, output_transform=lambda output: output['my loss'])"
    ),
    "transformers": "give the model labels so its forward returns a loss (or override Trainer.compute_loss)",
}
_EVAL_LOSS = {
    "decorator": (
        "return {'loss': loss, ...} from the @tracker.eval_step function, or let looptrack compute it: "
        "Tracker(..., loss_fn=criterion)"
    ),
    "lightning": (
        "call self.log('val_loss', loss) in validation_step (or return the loss), or pass "
        "tracker.attach(trainer, loss_fn=criterion); a loss logged under another name: "
        "tracker.attach(trainer, val_loss_key='my_val_loss')"
    ),
    "ignite": (
        "attach a Loss metric to the evaluator (create_supervised_evaluator(model, metrics={'loss': "
        "Loss(criterion)})) or pass tracker.attach(trainer, evaluator=evaluator, loss_fn=criterion)"
    ),
    "transformers": (
        "give the evaluation data labels so the Trainer reports eval_loss, or pass "
        "tracker.attach(trainer, loss_fn=criterion)"
    ),
}
_OUTPUTS = {
    "decorator": (
        "call the model inside the decorated step (the forward hook sees it) or return {'outputs': logits, ...}"
    ),
    "lightning": (
        "call self(x) (the LightningModule's forward) in the step, or return {'loss': loss, 'outputs': logits}"
    ),
    "ignite": (
        "make state.output carry them: output_transform=lambda x, y, y_pred, loss: "
        "{'loss': loss, 'y_pred': y_pred, 'y': y} for the trainer; the evaluator's (y_pred, y) is read as is"
    ),
    "transformers": "the model's forward must return logits",
}

_TARGETS = {
    "decorator": "call the step as step(inputs, targets) or return {'targets': ...}",
    "lightning": "make the batch an (inputs, targets) pair or a dict with a 'labels'/'targets' key",
    "ignite": "make the batch an (x, y) pair or state.output carry 'y'",
    "transformers": "give the data a 'labels' column",
}


def missing_targets_fix(loop: str) -> str:
    """What to change so batches under ``loop`` carry their targets."""
    return _TARGETS.get(loop, _TARGETS["decorator"])


def missing_loss_fix(loop: str, stage: str) -> str:
    """What to change so the ``stage`` (``"train"`` or an evaluation stage) has a loss under ``loop``."""
    table = _TRAIN_LOSS if stage == "train" else _EVAL_LOSS
    return table.get(loop, table["decorator"])


def no_scores_in(raw: object) -> str:
    """Why a structured forward output gave callbacks no class scores, and the fix."""
    return (
        f"the model's {type(raw).__name__} output holds no tensor of class scores; "
        "name it with Tracker(..., outputs='<key>')"
    )


def missing_outputs_fix(loop: str) -> str:
    """What to change so batches under ``loop`` carry the model's outputs."""
    return _OUTPUTS.get(loop, _OUTPUTS["decorator"])
