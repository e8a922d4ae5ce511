"""Gradient, weight, update and optimizer-moment norms every N steps, computed on the device, read back once a step.

The gradients are read as the model's optimizer finishes its step: they are
the ones the step used, whatever the loop did to them after backward.
"""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter

MOMENTS = ("exp_avg", "exp_avg_sq")
"""The optimizer state logged per parameter where the optimizer keeps it (Adam, AdamW, NAdam, RAdam...)."""

WRAPPER_PARTS = ("_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")
"""What torch.compile, FSDP and activation checkpointing insert into parameter names; left out of the tags."""

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def parameter_names(model: torch.nn.Module | None) -> dict[int, str]:
    """``id(parameter) -> name`` of ``model``'s parameters, named as in the model the wrappers hold.

    ``DataParallel``/``DistributedDataParallel`` are unwrapped (no ``module.``
    prefix) and the parts compiled, FSDP or checkpointed modules insert are
    left out, so ``torch.compile(net)`` logs ``fc1.weight`` as ``net`` does.

    >>> parameter_names(torch.nn.DataParallel(torch.nn.Linear(2, 1))).values()
    dict_values(['weight', 'bias'])
    """
    names: dict[int, str] = {}
    while isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        model = model.module
    if model is None:
        return names
    for name, parameter in model.named_parameters():
        for part in WRAPPER_PARTS:
            name = name.replace(part, "")
        names.setdefault(id(parameter), name)
    return names


def _norm(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The L2 norm of ``tensor`` as a float32 0-d tensor on ``device``, queued (no host sync); half types in float32."""
    tensor = tensor.detach()
    if tensor.is_sparse:
        tensor = tensor.coalesce().values()
    norm = torch.linalg.vector_norm(tensor, dtype=torch.float32 if tensor.dtype in _LOW_PRECISION else None)
    return norm.to(device=device, dtype=torch.float32)


def _as_is(values: torch.Tensor) -> torch.Tensor:
    return values


class _Step:
    """What one logging step collected: the optimizers about to step (their parameters and weights before), the
    values queued."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.optimizers: list[Any] = []
        self.pending: dict[int, tuple[list[torch.nn.Parameter], list[torch.Tensor | None] | None]] = {}
        self.done: set[int] = set()  # ids of the parameters already measured
        self.gradient_norms: list[torch.Tensor] = []
        self.tags: list[str] = []
        self.values: list[torch.Tensor] = []
        self.measured: set[int] = set()  # ids of the optimizers whose step was measured
        self.device: torch.device | None = None
        self.failed = False


class GradientStats(Callback):
    """The gradient norm (``gradients/global_norm``) and, with ``per_layer``, norms per parameter, every N steps.

    >>> tracker = Tracker(net, callbacks=[GradientStats(every_n_steps=100)])            # doctest: +SKIP

    ``gradients/global_norm`` is the L2 norm over the gradients of every
    parameter of the model's optimizer(s) that has one, as
    ``torch.nn.utils.get_total_norm`` computes it. The gradients are read
    right after the optimizer's ``step()`` (torch's optimizer step hook),
    before the loop can zero them: they are the ones that step used. That
    is *after* whatever the loop did between backward and step: clipping
    (``clip_grad_norm_``, Lightning's ``gradient_clip_val``, transformers'
    ``max_grad_norm``), ``GradScaler``'s ``unscale_``, DDP's averaging; with
    gradient accumulation they are the sum over the step's micro-batches.
    So under clipping the global norm is the clipped one (at most
    ``max_norm``); the norm before clipping is what ``clip_grad_norm_``
    returns (transformers logs it as ``grad_norm``), not this.

    With ``per_layer=True``, for each such parameter (named as in the model:
    ``named_parameters()``; one the optimizer has and the model does not
    name is ``param_<i>``, its index in the optimizer, ``optimizer<o>.param_<i>``
    in a second optimizer): ``gradients/<name>/norm``; ``weights/<name>/norm``
    after the step; ``updates/<name>/ratio``, the step's relative update
    ``‖w_after - w_before‖ / ‖w_before‖`` (``inf``, or ``nan``, where the
    weights were all zero before it); and where the optimizer keeps them
    (Adam, AdamW...) ``optimizer/<name>/exp_avg_norm`` and
    ``optimizer/<name>/exp_avg_sq_norm``, its moment estimates after the
    step. For the update ratio the weights are copied on their device when
    the logging step's optimizer step starts and dropped at its end: one
    copy of the trainable parameters, on logging steps only (under
    Lightning, whose ``optimizer.step()`` runs the step's forward and
    backward, for those too).

    Everything is computed in torch where the tensors are (a few small
    kernels per parameter with ``per_layer``) and stacked into one tensor;
    its values travel to the host once per logging step, read by the
    writer thread: the training thread never waits for the device, and
    does nothing on other steps. The steps are optimizer steps: with
    gradient accumulation use ``Tracker(..., step_on="optimizer")`` (the
    frameworks do), else a logging step on which the optimizer did not step
    logs nothing and says so once.
    """

    reads_outputs = False

    every: Every

    def __init__(self, every_n_steps: int = 100, per_layer: bool = True) -> None:
        self.every = Every(every_n_steps, owner="GradientStats")
        if not isinstance(per_layer, bool):
            raise TypeError(f"GradientStats: per_layer must be True or False, got {per_layer!r}")
        self.per_layer = per_layer
        self._names: dict[int, str] | None = None
        self._unnamed_prefixes: dict[int, str] = {}  # id(optimizer) -> "param_" or "optimizer<o>.param_"
        self._step: _Step | None = None
        self._steps_without_optimizer = 0  # logging steps that ended before any optimizer was seen
        self._reporter = OnceReporter()

    @override
    def on_before_optimizer_step(self, state: RunState, optimizer: Any) -> None:
        step = self._step
        if step is None or step.index != state.step_index:
            step = self._step = _Step(state.step_index)  # (a step that never ended, its loop raised, is dropped)
        if any(seen is optimizer for seen in step.optimizers):
            return  # the same optimizer again in this step: its first step is measured
        step.optimizers.append(optimizer)
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        # The weights before the step, for the update ratio. The gradients are read after the step
        # (on_after_optimizer_step): under Lightning the step's forward and backward run inside optimizer.step().
        before = [p.detach().clone() if p.requires_grad else None for p in parameters] if self.per_layer else None
        step.pending[id(optimizer)] = (parameters, before)

    @override
    def on_after_optimizer_step(self, state: RunState, optimizer: Any) -> None:
        step = self._step
        if step is None or step.index != state.step_index or id(optimizer) not in step.pending:
            return  # not a step seen starting (or its first step was measured already)
        parameters, before = step.pending.pop(id(optimizer))
        step.measured.add(id(optimizer))
        self._measure(state, step, optimizer, parameters, before)

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        step, self._step = self._step, None
        if step is None or step.index != state.step_index or not step.measured:
            self._report_no_step(state)
            return
        if step.failed:
            return  # reported when it failed
        if not step.gradient_norms:
            self._reporter.warn(
                "no-gradients",
                f"GradientStats: the optimizer stepped at step {state.step} but none of its parameters had a "
                "gradient (.grad is None), so nothing is logged for that step; call loss.backward() before "
                "optimizer.step() in the training step",
            )
            return
        global_norm = torch.linalg.vector_norm(torch.stack(step.gradient_norms))
        values = torch.stack([global_norm, *step.values])
        whole = state.writer.on_device(_as_is, values)  # the one read-back of the step, on the writer thread
        for index, tag in enumerate(["gradients/global_norm", *step.tags]):
            state.writer.scalar(tag, whole.part(index), state.step)

    @override
    def on_train_end(self, state: RunState) -> None:
        self._step = None
        if self._steps_without_optimizer and not state.optimizers:
            self._report_no_optimizer(state)

    def _measure(
        self,
        state: RunState,
        step: _Step,
        optimizer: Any,
        parameters: list[torch.nn.Parameter],
        before: list[torch.Tensor | None] | None,
    ) -> None:
        """Queue the norms of ``optimizer``'s step (just after it ran: gradients not yet zeroed)."""
        try:
            self._queue_norms(state, step, optimizer, parameters, before)
        except Exception as error:  # the hook runs inside optimizer.step(): a failure must not stop training
            if state.writer.strict:
                raise
            step.failed = True
            self._reporter.warn(
                ("failed", type(error).__name__),
                f"GradientStats: measuring the optimizer step failed at step {state.step} "
                f"({type(error).__name__}: {error}); that step is not logged and the run goes on",
            )
        finally:
            if before is not None:
                before.clear()  # the copies of the weights are not needed any more

    def _queue_norms(
        self,
        state: RunState,
        step: _Step,
        optimizer: Any,
        parameters: list[torch.nn.Parameter],
        before: list[torch.Tensor | None] | None,
    ) -> None:
        measured = [
            (index, p, p.grad) for index, p in enumerate(parameters) if p.grad is not None and id(p) not in step.done
        ]
        if not measured:
            return
        step.done.update(id(p) for _, p, _ in measured)
        if step.device is None:
            step.device = measured[0][2].device
        device = step.device
        if before is None:  # the global norm only: torch's own (foreach) total of this optimizer's gradients
            total = torch.nn.utils.get_total_norm([grad for _, _, grad in measured])
            step.gradient_norms.append(total.to(device=device, dtype=torch.float32))
            return
        if self._names is None:
            self._names = parameter_names(state.model)
        unnamed = self._unnamed_prefix(optimizer)
        kept_by = optimizer.state
        with torch.no_grad():
            for index, parameter, grad in measured:
                name = self._names.get(id(parameter), f"{unnamed}{index}")
                weights = parameter.detach()
                gradient_norm = _norm(grad, device)
                step.gradient_norms.append(gradient_norm)
                step.tags += [f"gradients/{name}/norm", f"weights/{name}/norm"]
                step.values += [gradient_norm, _norm(weights, device)]
                copy = before[index]
                if copy is not None:
                    copy_norm = _norm(copy, device)
                    step.tags.append(f"updates/{name}/ratio")
                    step.values.append(_norm(copy.sub_(weights), device) / copy_norm)
                kept = kept_by.get(parameter)
                if isinstance(kept, dict):
                    for key in MOMENTS:
                        moment = kept.get(key)
                        if isinstance(moment, torch.Tensor):
                            step.tags.append(f"optimizer/{name}/{key}_norm")
                            step.values.append(_norm(moment, device))

    def _unnamed_prefix(self, optimizer: Any) -> str:
        """``param_`` for the first optimizer measured, ``optimizer<o>.param_`` for the o-th after it."""
        prefix = self._unnamed_prefixes.get(id(optimizer))
        if prefix is None:
            count = len(self._unnamed_prefixes)
            prefix = self._unnamed_prefixes[id(optimizer)] = "param_" if not count else f"optimizer{count}.param_"
        return prefix

    def _report_no_step(self, state: RunState) -> None:
        if state.optimizers:
            self._reporter.warn(
                "no-step",
                f"GradientStats: the model's optimizer did not step during step {state.step}, so that step has no "
                "gradient statistics. The loop accumulates gradients over several tracked calls, or steps the "
                "optimizer outside the tracked step; Tracker(..., step_on='optimizer') makes one step one "
                "optimizer step in both cases",
            )
            return
        # the first logging step may come before an accumulating loop's first optimizer step: say it at the second
        self._steps_without_optimizer += 1
        if self._steps_without_optimizer >= 2:
            self._report_no_optimizer(state)

    def _report_no_optimizer(self, state: RunState) -> None:
        self._reporter.warn(
            "no-optimizer",
            f"GradientStats: no optimizer was seen by step {state.step} (no torch.optim optimizer over the "
            "model's parameters stepped), so there are no gradients to read and nothing is logged; "
            "GradientStats reads them as a torch.optim.Optimizer built over the tracked model's parameters "
            "steps: Tracker(model, ...) with optimizer = torch.optim.SGD(model.parameters(), ...) and "
            "optimizer.step() inside the training step",
        )

    def __repr__(self) -> str:
        return f"GradientStats(every_n_steps={self.every.n}, per_layer={self.per_layer})"
