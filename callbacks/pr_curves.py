"""Per-class precision-recall curves at the end of the run, from the last validation pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback
from trackers.core import distributed, hints
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter
from trackers.tensorboard import pr_curve

NOT_ONE_HOT = -(2**62)
"""The class index :func:`class_indices` gives a target row of one-hot shape that is not one-hot (left out)."""
NOT_WHOLE = NOT_ONE_HOT + 1
"""The class index :func:`class_indices` gives a float target that is not a whole number (left out)."""
TOLERANCE = 1e-6  # probabilities this far outside [0, 1] are still taken as probabilities (rounding)


def class_indices(targets: torch.Tensor, columns: int) -> torch.Tensor:
    """One batch's targets as ``[N]`` class indices (int64), on their device, without a host sync.

    One-hot rows ``[N, columns]`` become their argmax; floats holding whole
    numbers and booleans become integers. Rows that are neither (soft or
    multi-label rows, fractional floats) get :data:`NOT_ONE_HOT` or
    :data:`NOT_WHOLE`, so they can be counted and left out later.

    >>> class_indices(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 2).tolist()
    [1, 0]
    >>> class_indices(torch.tensor([2.0, 0.0, 1.5]), 3).tolist() == [2, 0, NOT_WHOLE]
    True
    """
    if targets.ndim == 2 and columns > 1 and targets.shape[1] == columns:
        rows = targets.float()
        one_hot = ((rows == 0) | (rows == 1)).all(dim=1) & (rows.sum(dim=1) == 1)
        return torch.where(one_hot, rows.argmax(dim=1), NOT_ONE_HOT)
    flat = targets.reshape(-1)
    if flat.is_floating_point():
        whole = torch.isfinite(flat) & (flat == flat.round()) & (flat.abs() < 2**31)
        return torch.where(whole, torch.where(whole, flat, 0.0).long(), NOT_WHOLE)
    return flat.long()


def outside_unit_interval(outputs: torch.Tensor) -> torch.Tensor:
    """How many finite values of ``outputs`` lie outside [0, 1] (beyond rounding): a 0-dim tensor, no host sync."""
    finite = torch.isfinite(outputs)
    return (finite & ((outputs < -TOLERANCE) | (outputs > 1 + TOLERANCE))).sum()


def _checked_buckets(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    num_thresholds: int,
    already_probabilities: bool,
    outside: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Bucket counts ``[K, 2, T]`` of the valid rows, then how many rows were left out and why.

    ``outputs`` is ``[N, C]`` class scores or ``[N, 1]`` binary scores (the
    positive class's; ``K`` is then 2: negative, positive); ``targets`` is
    :func:`class_indices`. With ``already_probabilities`` the outputs are
    used as they are unless ``outside`` (a count of values outside [0, 1])
    says they are logits, in which case they get the softmax (sigmoid) as
    without it. All on the tensors' device: the decision is a ``torch.where``.
    """
    scores = outputs.float()
    binary = scores.shape[1] == 1
    if binary:
        positive = torch.sigmoid(scores)
        probabilities = torch.cat([1 - positive, positive], dim=1)
    else:
        probabilities = torch.softmax(scores, dim=1)
    if already_probabilities:
        given = scores.clamp(0, 1)
        if binary:
            given = torch.cat([1 - given, given], dim=1)
        probabilities = torch.where(outside > 0, probabilities, given)
    classes = probabilities.shape[1]
    not_one_hot = targets == NOT_ONE_HOT
    not_whole = targets == NOT_WHOLE
    bad_target = ((targets < 0) | (targets >= classes)) & ~not_one_hot & ~not_whole
    nonfinite = ~torch.isfinite(probabilities).all(dim=1)
    keep = ~(bad_target | not_one_hot | not_whole | nonfinite)
    # rows left out get a probability outside [0, 1], so no bucket counts them
    probabilities = torch.where(keep.unsqueeze(1), probabilities, -1.0)
    buckets = pr_curve.bucket_counts(probabilities, torch.where(keep, targets, 0), num_thresholds)
    return buckets, bad_target.sum(), nonfinite.sum(), not_one_hot.sum(), not_whole.sum()


def _counted(
    outputs: torch.Tensor, targets: torch.Tensor, num_thresholds: int, already_probabilities: bool
) -> tuple[torch.Tensor, ...]:
    """:func:`_checked_buckets` of one process, with the count of outputs outside [0, 1] last."""
    if already_probabilities:
        outside = outside_unit_interval(outputs)
    else:
        outside = torch.zeros((), dtype=torch.long, device=outputs.device)
    return (*_checked_buckets(outputs, targets, num_thresholds, already_probabilities, outside), outside)


class PRCurves(Callback):
    """One precision-recall curve per class, at the end of the run, from the last validation pass.

    >>> tracker = Tracker(net, callbacks=[PRCurves(classes=classes)],       # doctest: +SKIP
    ...                   writer="runs/fashion_mnist_experiment_1")

    The model's outputs and the targets of each validation batch
    (``@tracker.eval_step`` calls, or the loop's validation) are kept on
    their device; at the end the probabilities (softmax of the outputs,
    unless ``probabilities=True`` says they already are) are counted per
    class in torch — on the device, or on the writer thread for CPU tensors —
    exactly as ``add_pr_curve`` counts them, one curve per class tagged
    ``tag_prefix + class name``. The seeds compare against the predicted
    class; these curves compare against the true targets. In a distributed
    job each rank counts its own validation share and the counts are summed
    across ranks, so rank zero writes the curves of the whole validation set.

    What it takes:

    - outputs ``[batch, classes]`` (one name in ``classes`` per column), or
      one score per row (``[batch]`` or ``[batch, 1]``: a binary model's
      logit, or its positive-class probability with ``probabilities=True``);
      a binary model with one class name gets one curve (the positive
      class's), with two names (negative, positive) a curve for each;
    - targets that are class indices (integers; floats holding whole numbers;
      booleans; ``[batch, 1]``) or one-hot rows ``[batch, classes]``. Rows
      that are none of these (soft or multi-label rows, fractional floats)
      are left out, and said once at the end with the fix;
    - ``probabilities=True`` with outputs outside [0, 1] (logits): said once
      at the end, and the curves are drawn from their softmax (sigmoid), as
      ``probabilities=False`` would. The check runs on the device with the
      counting; nothing is read back while training.

    Duplicate class names raise at construction (one curve would hide the other).
    """

    def __init__(
        self,
        classes: Sequence[str],
        num_thresholds: int = 127,
        probabilities: bool = False,
        tag_prefix: str = "pr_curve/",
    ) -> None:
        if isinstance(classes, str) or not classes or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"PRCurves: classes must be a non-empty list of class names, got {classes!r}")
        duplicates = sorted({name for name in classes if list(classes).count(name) > 1})
        if duplicates:
            raise ValueError(
                f"PRCurves: classes has {', '.join(map(repr, duplicates))} more than once; each class's curve is "
                f"tagged '{tag_prefix}<name>', so one would hide the other. Give every class its own name"
            )
        if (
            isinstance(num_thresholds, bool)
            or not isinstance(num_thresholds, int)
            or not (2 <= num_thresholds <= pr_curve.MAX_THRESHOLDS)
        ):
            raise ValueError(
                f"PRCurves: num_thresholds must be an integer in 2..{pr_curve.MAX_THRESHOLDS} "
                f"(TensorBoard's limit), got {num_thresholds!r}"
            )
        self.classes = list(classes)
        self.num_thresholds = num_thresholds
        self.probabilities = probabilities
        self.tag_prefix = tag_prefix
        self._outputs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._reporter = OnceReporter()
        self._disabled = False
        self._seen = 0

    @override
    def on_validation_start(self, state: RunState) -> None:
        self._outputs, self._targets = [], []
        self._seen = 0

    @override
    def on_validation_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        self._seen += 1
        outputs, targets = batch.outputs, batch.targets
        problem = self._problem(outputs, targets, batch, state)
        if problem:
            self._reporter.warn(("batch", problem), f"PRCurves: {problem}; such batches are left out")
            return
        binary = outputs.ndim == 1 or outputs.shape[1] == 1
        columns = 2 if binary else len(self.classes)
        targets = targets.detach()
        if targets.shape != (outputs.shape[0], columns):  # not one-hot rows: one class index a row
            targets = targets.reshape(-1)
        self._outputs.append(outputs.detach().reshape(-1, 1) if binary else outputs.detach())
        self._targets.append(class_indices(targets, columns))

    @override
    def on_train_end(self, state: RunState) -> None:
        if distributed.world_size() > 1:
            self._write_summed_over_ranks(state)
            return
        if not self._outputs:
            if self._seen:
                self._reporter.warn(
                    "none-usable",
                    f"PRCurves: the last validation pass had {self._seen} batches, "
                    "all left out for the reason reported above, so there are no curves",
                )
            else:
                how = (
                    "decorate the evaluation step with @tracker.eval_step"
                    if state.loop == "decorator"
                    else f"the {state.loop} loop validating"
                )
                self._reporter.warn(
                    "no-validation",
                    f"PRCurves: no validation batch was seen, so there are no curves; run a validation pass ({how})",
                )
            return
        outputs, targets = torch.cat(self._outputs), torch.cat(self._targets)
        self._outputs, self._targets = [], []
        raw = state.writer.on_device(_counted, outputs, targets, self.num_thresholds, self.probabilities)
        self._write(state, state.writer.later(self._report_left_out, raw))

    def _write_summed_over_ranks(self, state: RunState) -> None:
        """Every rank counts its own share on its device; the counts are summed in one all-reduce (two with
        ``probabilities=True``: whether the outputs are logits is decided over all ranks first)."""
        outputs: torch.Tensor | None = None
        targets: torch.Tensor | None = None
        if self._outputs:
            outputs, targets = torch.cat(self._outputs), torch.cat(self._targets)
            device = outputs.device
        else:  # still take part in the collectives
            device = (
                torch.device("cuda", torch.cuda.current_device())
                if (torch.distributed.get_backend() == "nccl")
                else torch.device("cpu")
            )
        self._outputs, self._targets = [], []
        outside = torch.zeros((), dtype=torch.long, device=device)
        if self.probabilities:
            if outputs is not None:
                outside = outside_unit_interval(outputs)
            outside = distributed.sum_across_ranks(outside)
        if outputs is not None and targets is not None:
            raw = _checked_buckets(outputs, targets, self.num_thresholds, self.probabilities, outside)
        else:
            zero = torch.zeros((), dtype=torch.long, device=device)
            raw = (
                torch.zeros(max(2, len(self.classes)), 2, self.num_thresholds, dtype=torch.long, device=device),
                *(zero.clone() for _ in range(4)),
            )
        buckets, counts = raw[0], torch.stack(raw[1:])
        # one all-reduce for all, in one dtype on every rank (an idle rank's zeros included)
        packed = distributed.sum_across_ranks(torch.cat([buckets.reshape(-1).long(), counts.long()]))
        summed = (packed[: buckets.numel()].reshape(buckets.shape), *packed[buckets.numel() :].unbind(), outside)
        if not distributed.is_rank_zero():
            return
        checked = state.writer.later(lambda *parts: self._report_left_out(parts), *summed)  # small: K x 2 x T counts
        self._write(state, checked)

    def _curves(self) -> list[tuple[int, str]]:
        """(row of the ``[K, 2, T]`` counts, class name) of each curve: one name is a binary model's positive class."""
        if len(self.classes) == 1:
            return [(1, self.classes[0])]
        return list(enumerate(self.classes))

    def _write(self, state: RunState, checked: Any) -> None:
        """One curve per class from the ``[K, 2, T]`` counts, all at one step."""
        for index, name in self._curves():
            state.writer.pr_curve_counts(
                self.tag_prefix + name, checked.part(index), max(state.step, 0), num_thresholds=self.num_thresholds
            )

    def _report_left_out(self, raw: Sequence[torch.Tensor]) -> torch.Tensor:
        """On the writer thread: say once what was left out or reinterpreted, and why; the counts."""
        buckets = raw[0]
        bad_targets, nonfinite, not_one_hot, not_whole, outside = (int(t) for t in raw[1:])
        classes = buckets.shape[0]
        if bad_targets:
            binary = " (a binary curve's targets are 0 or 1)" if len(self.classes) < classes else ""
            self._reporter.warn(
                "targets",
                f"PRCurves: {bad_targets} validation targets are outside 0..{classes - 1} "
                f"(classes has {len(self.classes)} name{'s' if len(self.classes) > 1 else ''}){binary}; left out",
            )
        if not_one_hot:
            self._reporter.warn(
                "not-one-hot",
                f"PRCurves: {not_one_hot} validation target rows of shape [batch, {classes}] are not one-hot (soft or "
                "multi-label targets); left out. Give class indices (e.g. targets.argmax(dim=1) for single-label "
                "data); for multi-label data log one binary curve per class with writer.pr_curve",
            )
        if not_whole:
            self._reporter.warn(
                "not-whole",
                f"PRCurves: {not_whole} validation targets are floats that are not whole class indices (e.g. 0.5); "
                "left out. Give class indices (targets.long()), or 0/1 for a binary model",
            )
        if nonfinite:
            self._reporter.warn(
                "nonfinite", f"PRCurves: {nonfinite} validation rows have non-finite outputs (NaN/Inf); left out"
            )
        if outside:
            self._reporter.warn(
                "logits",
                f"PRCurves(probabilities=True): {outside} validation output values are outside [0, 1], so the "
                "outputs are logits, not probabilities; the curves were drawn from their softmax (sigmoid for one "
                "score a row), as with probabilities=False. Pass PRCurves(probabilities=False) for logits",
            )
        return buckets

    def _problem(self, outputs: object, targets: object, batch: BatchRecord, state: RunState) -> str | None:
        """What makes this batch unusable, from shapes and dtypes only (no host sync), or None."""
        if not isinstance(outputs, torch.Tensor):
            if batch.raw_outputs is not None:
                return hints.no_scores_in(batch.raw_outputs)
            return f"no model outputs for a validation batch; {hints.missing_outputs_fix(state.loop)}"
        if not isinstance(targets, torch.Tensor):
            return f"no targets for a validation batch; {hints.missing_targets_fix(state.loop)}"
        if not outputs.is_floating_point():
            return (
                f"outputs are {outputs.dtype}; PRCurves needs class scores (logits, or probabilities with "
                "probabilities=True), not predicted labels"
            )
        names, shape = len(self.classes), tuple(outputs.shape)
        if outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1):
            if names > 2:
                return (
                    f"outputs of shape {shape} hold one score a row (a binary model) but classes has {names} names; "
                    "give one name (one curve, the positive class's) or two (negative, positive)"
                )
            columns = 2
        elif outputs.ndim == 2:
            if outputs.shape[1] != names:
                return (
                    f"outputs of shape {shape} don't match {names} classes: classes needs one name per output "
                    f"column ({outputs.shape[1]} names, in the order of the columns)"
                )
            columns = names
        else:
            return f"outputs of shape {shape} are not [batch, classes] scores (nor [batch] binary scores)"
        rows = outputs.shape[0]
        one_hot = targets.ndim == 2 and targets.shape == (rows, columns)
        if not one_hot and targets.numel() != rows:
            return (
                f"targets of shape {tuple(targets.shape)} for {rows} outputs; give one class index a row ([batch]) "
                f"or one-hot rows ([batch, {columns}])"
            )
        if targets.is_complex():
            return f"targets are {targets.dtype}; give class indices"
        return None

    def __repr__(self) -> str:
        return f"PRCurves(classes=[{len(self.classes)} names], num_thresholds={self.num_thresholds})"
