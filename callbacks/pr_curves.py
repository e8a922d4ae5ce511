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


def _checked_buckets(
    outputs: torch.Tensor, targets: torch.Tensor, num_thresholds: int, already_probabilities: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bucket counts of the valid rows, plus how many rows had a bad target or a non-finite probability."""
    classes = outputs.shape[1]
    probabilities = outputs.float() if already_probabilities else torch.softmax(outputs.float(), dim=1)
    targets = targets.reshape(-1).long()
    bad_target = (targets < 0) | (targets >= classes)
    nonfinite = ~torch.isfinite(probabilities).all(dim=1)
    keep = ~(bad_target | nonfinite)
    # rows left out get a probability outside [0, 1], so no bucket counts them
    probabilities = torch.where(keep.unsqueeze(1), probabilities, -1.0)
    buckets = pr_curve.bucket_counts(probabilities, torch.where(keep, targets, 0), num_thresholds)
    return buckets, bad_target.sum(), nonfinite.sum()


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
        self._outputs.append(outputs.detach())
        self._targets.append(targets.detach())

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
        raw = state.writer.on_device(_checked_buckets, outputs, targets, self.num_thresholds, self.probabilities)
        self._write(state, state.writer.later(self._report_left_out, raw))

    def _write_summed_over_ranks(self, state: RunState) -> None:
        """Every rank counts its own share on its device; the counts are summed (three all-reduces)."""
        if self._outputs:
            outputs, targets = torch.cat(self._outputs), torch.cat(self._targets)
            raw = _checked_buckets(outputs, targets, self.num_thresholds, self.probabilities)
        else:  # still take part in the collectives
            device = (
                torch.device("cuda", torch.cuda.current_device())
                if (torch.distributed.get_backend() == "nccl")
                else torch.device("cpu")
            )
            zero = torch.zeros((), dtype=torch.long, device=device)
            raw = (
                torch.zeros(len(self.classes), 2, self.num_thresholds, dtype=torch.long, device=device),
                zero,
                zero.clone(),
            )
        self._outputs, self._targets = [], []
        summed = tuple(distributed.sum_across_ranks(t) for t in raw)
        if not distributed.is_rank_zero():
            return
        checked = state.writer.later(lambda *parts: self._report_left_out(parts), *summed)  # small: C x 2 x T counts
        self._write(state, checked)

    def _write(self, state: RunState, checked: Any) -> None:
        """One curve per class from the ``[C, 2, T]`` counts, all at one step."""
        for index, name in enumerate(self.classes):
            state.writer.pr_curve_counts(
                self.tag_prefix + name, checked.part(index), max(state.step, 0), num_thresholds=self.num_thresholds
            )

    def _report_left_out(self, raw: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        buckets, bad_targets, nonfinite = raw
        if int(bad_targets):
            self._reporter.warn(
                "targets",
                f"PRCurves: {int(bad_targets)} validation targets are outside "
                f"0..{len(self.classes) - 1} (classes has {len(self.classes)} names); left out",
            )
        if int(nonfinite):
            self._reporter.warn(
                "nonfinite", f"PRCurves: {int(nonfinite)} validation rows have non-finite outputs (NaN/Inf); left out"
            )
        return buckets

    def _problem(self, outputs: object, targets: object, batch: BatchRecord, state: RunState) -> str | None:
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
        if outputs.ndim != 2 or outputs.shape[1] != len(self.classes):
            return (
                f"outputs of shape {tuple(outputs.shape)} don't match {len(self.classes)} classes; "
                "expected [batch, classes] scores"
            )
        if targets.reshape(-1).shape[0] != outputs.shape[0]:
            return f"{targets.numel()} targets for {outputs.shape[0]} outputs"
        if targets.is_floating_point() or targets.dtype == torch.bool:
            return f"targets must be class indices (an integer tensor), got {targets.dtype}"
        return None

    def __repr__(self) -> str:
        return f"PRCurves(classes=[{len(self.classes)} names], num_thresholds={self.num_thresholds})"
