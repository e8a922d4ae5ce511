"""GradientStats against norms computed here from what the optimizer saw, through the decorator and the frameworks."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from adapter_runs import lightning_trainer
from conftest import TinyNet, load_run, make_batches
from helpers import train_tutorial

from callbacks import GradientStats
from callbacks.gradient_stats import parameter_names
from trackers import LooptrackWarning, MemoryWriter, Tracker
from trackers.tools.syncs import SyncCounter

NAMES = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def total_norm(parameters) -> float:
    return torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None]).item()


class Reference:
    """What the optimizer saw at each of its steps: gradients and weights before it, weights and moments after it."""

    def __init__(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.net, self.optimizer = net, optimizer
        self.global_norms: list[float] = []
        self.before: list[dict[str, torch.Tensor]] = []
        self.gradients: list[dict[str, torch.Tensor]] = []
        self.after: list[dict[str, torch.Tensor]] = []
        self.moments: list[dict[str, torch.Tensor]] = []
        optimizer.register_step_pre_hook(self._before)
        optimizer.register_step_post_hook(self._after)

    def _before(self, optimizer, args, kwargs) -> None:
        self.global_norms.append(total_norm(self.net.parameters()))
        self.before.append({n: p.detach().clone() for n, p in self.net.named_parameters()})
        self.gradients.append({n: p.grad.clone() for n, p in self.net.named_parameters() if p.grad is not None})

    def _after(self, optimizer, args, kwargs) -> None:
        self.after.append({n: p.detach().clone() for n, p in self.net.named_parameters()})
        moments = {}
        for n, p in self.net.named_parameters():
            for key, value in optimizer.state[p].items():
                if key in ("exp_avg", "exp_avg_sq"):
                    moments[f"{n}/{key}"] = value.clone()
        self.moments.append(moments)


def _series(writer: MemoryWriter, tag: str) -> list[tuple[int | None, float]]:
    writer.flush()
    return writer.series(tag)


# ------------------------------------------------------------------------------------------------ the plain loop
def test_global_norm_equals_torchs_total_norm_of_the_gradients_each_logged_step_used(tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reference = Reference(net, optimizer)
    with Tracker(net, callbacks=[GradientStats(every_n_steps=2, per_layer=False)], writer=str(tmp_path)) as tracker:
        train_tutorial(tracker, net, make_batches(6, seed=1), optimizer=optimizer)
    run = load_run(tmp_path)
    assert run.Tags()["scalars"] == ["gradients/global_norm"]  # per_layer=False: nothing else
    points = [(e.step, e.value) for e in run.Scalars("gradients/global_norm")]
    assert len(reference.global_norms) == 6
    assert points == [(s, pytest.approx(reference.global_norms[s], rel=1e-5)) for s in (1, 3, 5)]
    assert len({round(v, 6) for _, v in points}) == 3  # three different steps, not one value repeated


def test_per_layer_norms_update_ratios_and_adam_moments_equal_the_references():
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    reference = Reference(net, optimizer)
    writer = MemoryWriter()
    with Tracker(net, callbacks=[GradientStats(every_n_steps=3)], writer=writer) as tracker:
        train_tutorial(tracker, net, make_batches(6, seed=1), optimizer=optimizer)
    expected_tags = {"gradients/global_norm"}
    for name in NAMES:
        expected_tags |= {f"gradients/{name}/norm", f"weights/{name}/norm", f"updates/{name}/ratio"}
        expected_tags |= {f"optimizer/{name}/exp_avg_norm", f"optimizer/{name}/exp_avg_sq_norm"}
    assert writer.tags() == expected_tags
    logged = (2, 5)
    assert [s for s, _ in _series(writer, "gradients/global_norm")] == list(logged)
    for name in NAMES:
        gradients = [reference.gradients[s][name].norm().item() for s in logged]
        weights = [reference.after[s][name].norm().item() for s in logged]
        ratios = [
            ((reference.after[s][name] - reference.before[s][name]).norm() / reference.before[s][name].norm()).item()
            for s in logged
        ]
        assert [v for _, v in _series(writer, f"gradients/{name}/norm")] == pytest.approx(gradients, rel=1e-5)
        assert [v for _, v in _series(writer, f"weights/{name}/norm")] == pytest.approx(weights, rel=1e-5)
        assert [v for _, v in _series(writer, f"updates/{name}/ratio")] == pytest.approx(ratios, rel=1e-4)
        assert all(r > 0 for r in ratios)
        for key in ("exp_avg", "exp_avg_sq"):
            moments = [reference.moments[s][f"{name}/{key}"].norm().item() for s in logged]
            assert [v for _, v in _series(writer, f"optimizer/{name}/{key}_norm")] == pytest.approx(moments, rel=1e-5)
    squares = sum(v**2 for name in NAMES for _, v in _series(writer, f"gradients/{name}/norm")[:1])
    assert _series(writer, "gradients/global_norm")[0][1] == pytest.approx(squares**0.5, rel=1e-5)


def test_an_optimizer_without_moments_has_no_optimizer_tags():
    net = TinyNet()
    writer = MemoryWriter()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    with Tracker(net, callbacks=[GradientStats(every_n_steps=1)], writer=writer) as tracker:
        train_tutorial(tracker, net, make_batches(2), optimizer=optimizer)
    tags = writer.tags()
    assert "updates/fc1.weight/ratio" in tags and "gradients/global_norm" in tags
    assert not [tag for tag in tags if tag.startswith("optimizer/")]


def test_the_global_norm_is_of_the_clipped_gradients_the_optimizer_stepped_with():
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reference = Reference(net, optimizer)
    returned_by_clipping = []
    writer = MemoryWriter()
    with Tracker(net, callbacks=[GradientStats(every_n_steps=1, per_layer=False)], writer=writer) as tracker:

        @tracker.train_step
        def step(inputs, labels):
            optimizer.zero_grad()
            loss = F.cross_entropy(net(inputs), labels)
            loss.backward()
            returned_by_clipping.append(torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.05).item())
            optimizer.step()
            return loss

        for inputs, labels in make_batches(3, seed=1):
            step(inputs, labels)
    logged = [v for _, v in _series(writer, "gradients/global_norm")]
    assert logged == pytest.approx(reference.global_norms, rel=1e-5)  # what the optimizer got: after clipping
    assert all(v <= 0.05 * (1 + 1e-5) for v in logged)
    assert all(before > 0.1 for before in returned_by_clipping)  # the norm before clipping, not what is logged


def test_with_accumulation_each_optimizer_step_logs_the_summed_gradients_it_used():
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reference = Reference(net, optimizer)
    writer = MemoryWriter()
    tracker = Tracker(net, callbacks=[GradientStats(every_n_steps=2)], writer=writer, step_on="optimizer")
    with tracker:
        train_tutorial(tracker, net, make_batches(8, seed=1), optimizer=optimizer, accumulate=2)
    assert len(reference.global_norms) == 4  # 8 micro-batches, 4 optimizer steps, logged at the 2nd and 4th
    assert _series(writer, "gradients/global_norm") == [
        (s, pytest.approx(reference.global_norms[s], rel=1e-5)) for s in (1, 3)
    ]
    assert [v for _, v in _series(writer, "gradients/fc2.bias/norm")] == pytest.approx(
        [reference.gradients[s]["fc2.bias"].norm().item() for s in (1, 3)], rel=1e-5
    )


def test_a_logging_step_without_an_optimizer_step_says_how_to_count_optimizer_steps():
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reference = Reference(net, optimizer)
    writer = MemoryWriter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, callbacks=[GradientStats(every_n_steps=1)], writer=writer) as tracker:
            train_tutorial(tracker, net, make_batches(4, seed=1), optimizer=optimizer, accumulate=2)
    ours = [str(w.message) for w in caught if "GradientStats" in str(w.message)]
    assert len(ours) == 1 and "the model's optimizer did not step during step 2" in ours[0]  # not before one stepped
    assert "Tracker(..., step_on='optimizer')" in ours[0]
    # each call is a step: the optimizer stepped in calls 1 and 3 only, and only those are logged
    assert _series(writer, "gradients/global_norm") == [
        (1, pytest.approx(reference.global_norms[0], rel=1e-5)),
        (3, pytest.approx(reference.global_norms[1], rel=1e-5)),
    ]


def _counted_run(optimizer_class: type[torch.optim.Optimizer], tracked: bool) -> tuple[int, list[int], MemoryWriter]:
    """Host syncs on the training thread over 10 steps (logging at 4 and 9), and the steps that read back."""
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = optimizer_class(net.parameters(), lr=0.01)
    writer = MemoryWriter()
    tracker = Tracker(net, callbacks=[GradientStats(every_n_steps=5)] if tracked else [], writer=writer)
    read_backs = []
    on_device = writer.on_device

    def counted(fn, *args):
        read_backs.append(tracker.state.step)
        return on_device(fn, *args)

    writer.on_device = counted  # type: ignore[method-assign]
    with SyncCounter() as counter:
        train_tutorial(tracker, net, make_batches(10, seed=1), optimizer=optimizer)
    tracker.close()
    return counter.syncs, read_backs, writer


def test_no_host_sync_on_the_training_thread_and_one_read_back_per_logging_step():
    syncs, read_backs, writer = _counted_run(torch.optim.SGD, tracked=True)
    assert syncs == 0  # no .item() or the like on any step, logging or not
    assert read_backs == [4, 9]  # one stacked tensor per logging step, for every scalar of the step
    assert len(writer.tags()) == 1 + 4 * 3
    assert all([s for s, _ in writer.series(tag)] == [4, 9] for tag in writer.tags())
    # Adam on the CPU reads its step count with .item() itself; reading its moments adds none
    adam_syncs, read_backs, writer = _counted_run(torch.optim.Adam, tracked=True)
    assert adam_syncs == _counted_run(torch.optim.Adam, tracked=False)[0] > 0
    assert read_backs == [4, 9]
    assert len(writer.tags()) == 1 + 4 * 5


# --------------------------------------------------------------------------------------------------------- names
def test_names_are_the_models_own_through_wrappers_and_unnamed_parameters_are_numbered():
    torch.manual_seed(0)
    net = TinyNet()
    assert set(parameter_names(torch.compile(net)).values()) == set(NAMES)
    wrapped = torch.nn.DataParallel(net)
    temperature = torch.nn.Parameter(torch.ones(()))
    optimizer = torch.optim.SGD([{"params": net.parameters()}, {"params": [temperature]}], lr=0.1)
    writer = MemoryWriter()
    with Tracker(wrapped, callbacks=[GradientStats(every_n_steps=1)], writer=writer) as tracker:

        @tracker.train_step
        def step(inputs, labels):
            optimizer.zero_grad()
            loss = F.cross_entropy(wrapped(inputs) / temperature, labels)
            loss.backward()
            optimizer.step()
            return loss

        step(*make_batches(1)[0])
    tags = writer.tags()
    assert {f"gradients/{name}/norm" for name in [*NAMES, "param_4"]} <= tags
    assert not [tag for tag in tags if "module." in tag]


# ---------------------------------------------------------------------------------------------- what is missing
@pytest.mark.parametrize("steps", [3, 1])  # said at the second logging step, or at the end of a shorter run
def test_a_loop_without_a_torch_optimizer_is_told_what_gradient_stats_needs(steps):
    net = TinyNet()
    writer = MemoryWriter()
    said = rf"GradientStats: no optimizer was seen by step {min(steps - 1, 1)} .*torch\.optim"
    with pytest.warns(LooptrackWarning, match=said) as seen:
        with Tracker(net, callbacks=[GradientStats(every_n_steps=1)], writer=writer) as tracker:

            @tracker.train_step
            def step(inputs, labels):
                net.zero_grad()
                loss = F.cross_entropy(net(inputs), labels)
                loss.backward()
                with torch.no_grad():
                    for p in net.parameters():
                        p -= 0.1 * p.grad  # a hand-written update: no optimizer step hook
                return loss

            for inputs, labels in make_batches(steps):
                step(inputs, labels)
    assert len([w for w in seen if "GradientStats" in str(w.message)]) == 1  # once
    writer.flush()
    assert writer.tags() == set()


def test_an_optimizer_step_without_gradients_is_reported_once():
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    writer = MemoryWriter()
    with pytest.warns(LooptrackWarning, match="GradientStats: the optimizer stepped at step 0 but none") as seen:
        with Tracker(net, callbacks=[GradientStats(every_n_steps=1)], writer=writer) as tracker:
            step = tracker.train_step(lambda: optimizer.step())
            step()
            step()
    assert len([w for w in seen if "GradientStats" in str(w.message)]) == 1
    writer.flush()
    assert writer.tags() == set()


def test_arguments_are_checked_and_the_registry_knows_it():
    with pytest.raises(ValueError, match="GradientStats: every_n_steps must be a positive integer"):
        GradientStats(every_n_steps=0)
    with pytest.raises(TypeError, match="GradientStats: per_layer must be True or False"):
        GradientStats(per_layer="yes")  # type: ignore[arg-type]
    tracker = Tracker.from_config(
        {"writer": "memory", "callbacks": [{"gradient_stats": {"every_n_steps": 7, "per_layer": False}}]}, TinyNet()
    )
    assert repr(tracker.callbacks.callbacks[0]) == "GradientStats(every_n_steps=7, per_layer=False)"
    tracker.close()


# ---------------------------------------------------------------------------------------------------- frameworks
def test_ignite_logs_the_norm_of_each_logged_iteration():
    ignite_engine = pytest.importorskip("ignite.engine")
    torch.manual_seed(0)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reference = Reference(net, optimizer)
    trainer = ignite_engine.create_supervised_trainer(net, optimizer, F.cross_entropy)
    writer = MemoryWriter()
    with Tracker(net, callbacks=[GradientStats(every_n_steps=2)], writer=writer) as tracker:
        tracker.attach(trainer)
        trainer.run(make_batches(4, seed=1), max_epochs=1)
    # on ignite's axis (state.iteration, from 1); the gradients ignite zeroes right after the step
    assert _series(writer, "gradients/global_norm") == [
        (2, pytest.approx(reference.global_norms[1], rel=1e-5)),
        (4, pytest.approx(reference.global_norms[3], rel=1e-5)),
    ]
    assert [v for _, v in _series(writer, "updates/fc1.weight/ratio")] == pytest.approx(
        [
            (
                (reference.after[s]["fc1.weight"] - reference.before[s]["fc1.weight"]).norm()
                / reference.before[s]["fc1.weight"].norm()
            ).item()
            for s in (1, 3)
        ],
        rel=1e-4,
    )


@pytest.mark.slow
def test_lightning_logs_the_gradients_of_the_step_after_its_clipping():
    pl = pytest.importorskip("lightning.pytorch")

    class Lit(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = TinyNet()
            self.clipped: list[tuple[float, float]] = []  # (before, after) Lightning's clipping, per step

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            before = total_norm(self.parameters())
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            self.clipped.append((before, total_norm(self.parameters())))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = Lit()
    trainer = lightning_trainer(max_epochs=None, max_steps=3, gradient_clip_val=0.05)
    writer = MemoryWriter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers
        with Tracker(module, callbacks=[GradientStats(every_n_steps=1)], writer=writer) as tracker:
            tracker.attach(trainer)
            trainer.fit(module, torch.utils.data.DataLoader(make_batches(3, seed=1), batch_size=None))
    assert len(module.clipped) == 3
    # the step's own gradients (Lightning runs forward and backward inside optimizer.step()), after its clipping
    assert _series(writer, "gradients/global_norm") == [
        (s, pytest.approx(after, rel=1e-5)) for s, (_, after) in enumerate(module.clipped)
    ]
    assert all(before > 0.1 for before, _ in module.clipped)
    assert {f"gradients/{name}/norm" for name in ("net.fc1.weight", "net.fc2.bias")} <= writer.tags()


@pytest.mark.slow
def test_transformers_logs_the_clipped_norm_the_optimizer_used_not_the_trainers_grad_norm(tmp_path):
    transformers = pytest.importorskip("transformers")
    from test_adapter_transformers import bert, make_trainer

    class BeforeStep(transformers.TrainerCallback):
        """The Trainer calls on_pre_optimizer_step after its clipping, right before optimizer.step()."""

        def __init__(self, model):
            self.model, self.norms = model, {}

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.norms[state.global_step + 1] = total_norm(self.model.parameters())

    model = bert()
    trainer = make_trainer(
        tmp_path, model, n_train=16, n_eval=4, num_train_epochs=1, max_grad_norm=0.05, logging_steps=1
    )
    before_step = BeforeStep(model)
    trainer.add_callback(before_step)
    writer = MemoryWriter()
    with Tracker(model, callbacks=[GradientStats(every_n_steps=2, per_layer=False)], writer=writer) as tracker:
        tracker.attach(trainer)
        trainer.train()
    assert trainer.state.global_step == 4
    assert _series(writer, "gradients/global_norm") == [
        (s, pytest.approx(before_step.norms[s], rel=1e-5)) for s in (2, 4)
    ]
    trainers_grad_norm = {e["step"]: e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e}
    assert all(trainers_grad_norm[s] > 0.1 > before_step.norms[s] for s in (2, 4))  # the Trainer's is before clipping
