"""Statistics of each module's output every N steps (mean, std, largest magnitude, zeros, dead units, non-finite
values), accumulated on the device over every training forward of the window and read back once per logging step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from typing_extensions import override

from callbacks.base import Callback, every_step
from trackers.core.module_hooks import ModuleHooks, unwrap
from trackers.core.schedule import Every
from trackers.core.state import BatchRecord, RunState
from trackers.errors import OnceReporter

STATS = ("mean", "std", "abs_max", "zero_fraction", "dead_fraction", "nonfinite")
"""What is logged per module, as ``activations/<module>/<stat>``, in this order."""

# one module's window totals: a small tensor on the output's device, updated in place. The squares are of the
# distances to a shift (the previous window's mean, the first output's for the first window), so that the variance
# keeps its precision when the mean is large next to the spread.
_ELEMENTS, _SUM, _SQUARES, _NONZERO, _FINITE, _ABS_MAX, _SHIFT = range(7)


def output_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module's output is measured by: the output itself, or the first tensor of a tuple or list.

    >>> output_tensor((None, torch.ones(2), torch.zeros(3))).tolist()
    [1.0, 1.0]
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((item for item in output if isinstance(item, torch.Tensor)), None)
    return None


def unit_count(output: torch.Tensor) -> int:
    """How many units (channels, features) ``output`` has: its dim 1 when it has two dims or more, else 1.

    >>> unit_count(torch.zeros(8, 16, 5, 5)), unit_count(torch.zeros(8, 120)), unit_count(torch.zeros(8))
    (16, 120, 1)
    """
    return output.shape[1] if output.ndim >= 2 else 1


class _Units:
    """Which of a module's ``size`` units were ever nonzero in the window (a bool tensor), and whether any output
    of that many units was seen in it (a module called with outputs of several widths keeps one mask for each)."""

    __slots__ = ("alive", "seen")

    def __init__(self, size: int, device: torch.device) -> None:
        self.alive = torch.zeros(size, dtype=torch.bool, device=device)
        self.seen = False


class _Slot:
    """One module's window, on the device of its output: its totals (elements, sum, sum of squared distances to the
    shift, nonzero, finite, largest magnitude, the shift) and its per-unit masks."""

    __slots__ = ("histogram_due", "kept", "name", "totals", "units")

    def __init__(self, name: str, first: torch.Tensor) -> None:
        self.name = name
        dtype = torch.float32 if first.device.type == "mps" else torch.float64  # mps has no float64
        self.totals = torch.zeros(7, dtype=dtype, device=first.device)
        self.units: dict[int, _Units] = {}
        self.histogram_due = False  # keep the next output for a histogram (the first of a logging step)
        self.kept: torch.Tensor | None = None  # a copy of it, logged as the step ends
        # the first window's shift: the mean of the first output's finite values (0 if none)
        x = _real(first)
        finite = torch.isfinite(x)
        total = torch.sum(torch.where(finite, x, 0), dtype=_reduced_as(x))
        self.totals[_SHIFT].copy_(total / finite.sum().clamp_min(1))

    def add(self, output: torch.Tensor) -> None:
        """Add one output to the window: a few reductions over it and one-element in-place updates; no sync."""
        x = _real(output)
        reduce_as = _reduced_as(x)
        totals = self.totals
        finite = torch.isfinite(x)
        clean = torch.where(finite, x, 0)
        nonzero = x != 0
        totals[_ELEMENTS].add_(x.numel())  # the shape's size: known without reading the device
        totals[_SUM].add_(torch.sum(clean, dtype=reduce_as))
        norm = torch.linalg.vector_norm(torch.where(finite, x - totals[_SHIFT], 0), 2, dtype=reduce_as)
        totals[_SQUARES].addcmul_(norm, norm)
        totals[_NONZERO].add_(nonzero.sum())
        totals[_FINITE].add_(finite.sum())
        torch.maximum(
            totals[_ABS_MAX], torch.linalg.vector_norm(clean, math.inf, dtype=reduce_as), out=totals[_ABS_MAX]
        )
        size = unit_count(x)
        units = self.units.get(size)
        if units is None:
            units = self.units[size] = _Units(size, totals.device)
        units.seen = True
        if x.ndim >= 2:
            units.alive |= nonzero.any(dim=[d for d in range(x.ndim) if d != 1])
        else:
            units.alive |= nonzero.any().reshape(1)

    def dead_fraction(self) -> torch.Tensor:
        """Units zero everywhere in every output of the window / units, over the widths seen (NaN if none)."""
        seen = [units for units in self.units.values() if units.seen]
        if not seen:
            return self.totals.new_full((), math.nan)
        dead = torch.stack([(~units.alive).sum() for units in seen]).sum()
        return dead.to(self.totals.dtype) / sum(units.alive.numel() for units in seen)

    def reset(self) -> None:
        """Start a new window: the totals zeroed, the shift set to this window's mean (kept if it had no value)."""
        totals = self.totals
        mean = totals[_SUM] / totals[_FINITE]
        totals[_SHIFT].copy_(torch.where(torch.isfinite(mean), mean, totals[_SHIFT]))
        totals[:_SHIFT].zero_()
        for units in self.units.values():
            units.alive.zero_()
            units.seen = False


def window_values(totals: torch.Tensor, dead_fraction: torch.Tensor) -> torch.Tensor:
    """``[modules, len(STATS)]`` from the window totals ``[modules, 7]`` and dead fractions ``[modules]``, on their
    device: NaN for a module that saw no output in the window (and mean/std for one whose values were all non-finite).

    >>> x = torch.tensor([[0.0, 2.0], [-4.0, float("nan")]])
    >>> slot = _Slot("demo", x)
    >>> slot.add(x)
    >>> values = window_values(slot.totals[None], slot.dead_fraction()[None])[0].tolist()
    >>> {stat: round(value, 4) for stat, value in zip(STATS, values)}
    {'mean': -0.6667, 'std': 2.4944, 'abs_max': 4.0, 'zero_fraction': 0.25, 'dead_fraction': 0.0, 'nonfinite': 1.0}
    """
    elements, finite = totals[:, _ELEMENTS], totals[:, _FINITE]
    mean = totals[:, _SUM] / finite
    offset = mean - totals[:, _SHIFT]  # the mean's distance to the shift the squares are taken about
    variance = (totals[:, _SQUARES] / finite - offset * offset).clamp_min(0)
    values = torch.stack(
        [
            mean,
            variance.sqrt(),
            totals[:, _ABS_MAX],
            (elements - totals[:, _NONZERO]) / elements,
            dead_fraction,
            elements - finite,
        ],
        dim=1,
    )
    return torch.where((elements > 0).unsqueeze(1), values, math.nan)


def _real(output: torch.Tensor) -> torch.Tensor:
    x = output.detach()
    return x if x.is_floating_point() else x.float()  # integer or bool outputs


def _reduced_as(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32  # half types are reduced in float32


class ActivationStats(Callback):
    """Statistics of what each module outputs, every N steps, as ``activations/<module>/<stat>``.

    >>> tracker = Tracker(net, callbacks=[ActivationStats(every_n_steps=100)])              # doctest: +SKIP
    >>> tracker = Tracker(resnet, callbacks=[ActivationStats(depth=2, histograms=True)])    # doctest: +SKIP

    Which modules: by default every leaf module of the model (one without
    children, parameter-less ones such as ReLU, GELU, Dropout and MaxPool
    included), named as ``named_modules()`` names them in the bare model
    (inside DDP, FSDP1 or ``torch.compile``). ``depth=k`` takes instead the
    modules whose name has exactly ``k`` dotted parts (``layer1.0`` for
    ``depth=2``): a summary of each block's output. ``include`` and
    ``exclude`` are glob lists (``["layer1.*"]``, ``["*.drop"]``) that filter
    those; a module name-matched by ``include`` that is not a leaf (nor at
    ``depth``) is not taken.

    What is measured: the module's output, or the first tensor of a tuple
    output, in the *training* forwards of the window: by default
    (``window=1``) the logging step's own forwards; ``window=k`` the last
    ``k`` steps up to the logging step; ``window=None`` every step since
    the last log (on a CPU that doubles the tutorial CNN's step time; the
    default adds nothing measurable on the steps in between). Training
    forwards are those run while ``torch.is_grad_enabled()`` (validation under
    ``torch.no_grad()``/``inference_mode``, as the frameworks run it, is
    left out; a module put in ``eval()`` mode inside a training forward, such
    as a frozen BatchNorm, is still measured). Over all the elements of all
    those outputs:

    - ``mean``, ``std``: over the finite values (``std`` with no correction:
      the root of the mean squared distance to the mean), from sums reduced
      in float32 at least and totalled in float64 (float32 on mps). The
      squares are taken about the previous window's mean (the first
      output's, in the first window), so ``std`` keeps its precision when
      the mean is large next to it;
    - ``abs_max``: the largest finite magnitude;
    - ``zero_fraction``: elements exactly zero / elements;
    - ``dead_fraction``: units that were exactly zero for every sample (and
      every position) of every forward of the window / units. Units are dim
      1 of the output (channels of N×C×H×W, features of N×F, and dim 1 of
      any other output of two dims or more); an output of fewer dims is one
      unit. A module whose outputs differ in width (one MaxPool reused on
      6 then 16 channels) counts the units of each width;
    - ``nonfinite``: how many elements were NaN or ±inf (left out of the
      others).

    A module that ran no training forward in a window logs NaN for it.

    What it costs: on every measured training forward, per selected module, a few
    passes over its output on its device (a finite mask, two masked copies,
    five reductions, a nonzero mask reduced per unit: eager mode runs about a
    dozen small kernels, ``torch.compile`` fuses them) and one-element
    in-place updates of its totals; temporaries the size of the output are
    freed at once. No host sync, no Python work per element, nothing created
    from values read back, no branch on the data, so it traces under
    ``torch.compile`` without graph breaks (it recompiles once after the
    first forward, and once more for histograms). The module hooks sit on
    every module the globs select; the leaf and depth tests are made once
    per module name, in the hook. At a logging step all the modules' values
    are computed on the device into one stacked tensor that travels to the
    host once, read by the writer thread; the totals are then zeroed in
    place. With ``histograms=True`` the first output of each module in the
    logging step's forward is also logged as a histogram
    ``activations/<module>``: it is copied on its device in the forward
    (a later in-place op could change it) and binned as the step ends, on
    the device or, for CPU tensors, on the writer thread.

    In a distributed run each process measures its own forwards and the
    writing process logs its own. Needs the model: ``Tracker(model, ...)``.
    """

    reads_outputs = False

    every: Every

    def __init__(
        self,
        every_n_steps: int = 100,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        histograms: bool = False,
        depth: int | None = None,
        window: int | None = 1,
    ) -> None:
        self.every = Every(every_n_steps, owner="ActivationStats")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or not 1 <= window):
            raise ValueError(
                f"ActivationStats: window must be a positive number of steps or None (every step since the last "
                f"log), got {window!r}"
            )
        self.window = None if window is None or window >= every_n_steps else window
        self._measuring = self.window is None  # whether this step's forwards are measured
        for argument, value in (("include", include), ("exclude", exclude)):
            if value is not None and (isinstance(value, str) or not all(isinstance(p, str) for p in value)):
                raise TypeError(
                    f"ActivationStats: {argument} must be a list of glob patterns over module names "
                    f"(e.g. ['layer1.*', 'fc*']), got {value!r}"
                )
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
            raise ValueError(
                f"ActivationStats: depth must be a positive integer or None, got {depth!r}; depth=2 takes the "
                "modules named like 'layer1.0', None every leaf module"
            )
        if not isinstance(histograms, bool):
            raise TypeError(f"ActivationStats: histograms must be True or False, got {histograms!r}")
        self.include = None if include is None else tuple(include)
        self.exclude = None if exclude is None else tuple(exclude)
        self.histograms = histograms
        self.depth = depth
        self._hooks = ModuleHooks(
            include=self.include if self.include is not None else ("*",),
            exclude=self.exclude or (),
            forward=self._forward,
        )
        self._taken: dict[str, bool] = {}  # module name -> whether it is measured (leaf or at depth)
        self._slots: dict[str, _Slot] = {}  # in the order the modules first ran
        self._histograms_due = False  # a logging step with histograms is running
        self._measures = False  # the run's model has modules this measures
        self._reporter = OnceReporter()

    @override
    def module_hooks(self) -> Sequence[ModuleHooks]:
        return [self._hooks]

    @property
    def modules(self) -> list[str]:
        """The names of the modules measured so far, in the order they first ran."""
        return list(self._slots)

    def takes(self, name: str, module: torch.nn.Module) -> bool:
        """Whether the module ``name`` is measured (given the globs select it): a leaf, or at ``depth``.

        >>> ActivationStats(depth=2).takes("layer1.0", torch.nn.Sequential())
        True
        """
        if self.depth is not None:
            return bool(name) and name.count(".") == self.depth - 1
        return next(module.children(), None) is None

    @override
    def on_train_start(self, state: RunState) -> None:
        if state.model is None:
            self._reporter.warn(
                "no-model",
                "ActivationStats needs the model to hook its modules: Tracker(model, callbacks=[ActivationStats()]); "
                "it logs nothing",
            )
            return
        model = unwrap(state.model)
        named = [(name, module) for name, module in model.named_modules() if self._hooks.selects(name)]
        self._measures = any(self.takes(name, module) for name, module in named)
        if named and not self._measures:  # (globs that match no name at all: the Tracker said so)
            what = f"depth={self.depth}" if self.depth is not None else "leaf module"
            deepest = max((name.count(".") + 1 for name, _ in model.named_modules() if name), default=1)
            self._reporter.warn(
                "none-taken",
                f"ActivationStats: include={list(self._hooks.include)} exclude={list(self._hooks.exclude)} select "
                f"{[name for name, _ in named][:4]} of {type(model).__name__}, but no {what} among them, so nothing "
                f"is logged; select leaf modules (e.g. '{named[0][0]}.*') or pass depth=1..{deepest} for block "
                "outputs",
            )

    @override
    @every_step
    def on_train_batch_start(self, state: RunState, batch: BatchRecord) -> None:
        if self.window is not None:  # only the last `window` steps before each logging step are measured
            self._measuring = state.step_index % self.every.n >= self.every.n - self.window
        # tell the forward hooks to log histograms in a logging step
        if self.histograms and self.every.fires(state.step_index):
            self._histograms_due = True
            for slot in self._slots.values():
                slot.histogram_due = True

    @override
    def on_train_batch_end(self, state: RunState, batch: BatchRecord) -> None:
        self._histograms_due = False
        self._measuring = self.window is None  # the window ends here (validation then runs with the flag off)
        slots = list(self._slots.values())
        for slot in slots:
            slot.histogram_due = False
            if slot.kept is not None:
                state.writer.histogram(f"activations/{slot.name}", slot.kept, state.step)
                slot.kept = None
        if not slots:
            if self._measures:
                self._reporter.warn(
                    "no-forward",
                    f"ActivationStats: none of the selected modules ran a forward with gradients enabled by step "
                    f"{state.step}, so nothing is logged; it measures training forwards: run the model inside the "
                    "tracked training step, outside torch.no_grad()/inference_mode",
                )
            return
        device = slots[0].totals.device
        totals = torch.stack([slot.totals.to(device) for slot in slots])
        dead = torch.stack([slot.dead_fraction().to(device) for slot in slots])
        # the one read-back of the step: on an accelerator window_values is queued now and its result travels; CPU
        # tensors are copied and it runs on the writer thread. (It makes a new tensor: a function returning its
        # argument would hand back the writer's pooled copy, which the next logging step may overwrite.)
        whole = state.writer.on_device(window_values, totals, dead)
        for row, slot in enumerate(slots):
            for column, stat in enumerate(STATS):
                state.writer.scalar(f"activations/{slot.name}/{stat}", whole.part((row, column)), state.step)
        for slot in slots:
            slot.reset()

    @override
    def on_train_end(self, state: RunState) -> None:
        self._histograms_due = False
        for slot in self._slots.values():
            slot.histogram_due, slot.kept = False, None

    def _forward(self, name: str, module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if not self._measuring or not torch.is_grad_enabled():
            return  # a step outside the window; validation, test, or a forward under no_grad
        taken = self._taken.get(name)
        if taken is None:
            taken = self._taken[name] = self.takes(name, module)
        if not taken:
            return
        tensor = output_tensor(output)
        if tensor is None or tensor.is_complex():
            return
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = _Slot(name, tensor)
            slot.histogram_due = self._histograms_due
        slot.add(tensor)
        if slot.histogram_due:  # a bool flag (not the step number), so torch.compile keeps one graph per value
            slot.histogram_due = False  # the first output of the logging step only
            slot.kept = tensor.detach().clone()  # as it is now: a later in-place op (ReLU(inplace=True)) may change it

    def __repr__(self) -> str:
        return (
            f"ActivationStats(every_n_steps={self.every.n}, include={self.include!r}, exclude={self.exclude!r}, "
            f"histograms={self.histograms}, depth={self.depth}, window={self.window})"
        )
