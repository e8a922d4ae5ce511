"""ActivationStats against statistics computed here from outputs captured independently, through real loops: dead
units, non-finite values, no host sync on the training thread, module selection, histograms, torch.compile."""

from __future__ import annotations

import pytest
import torch
from conftest import make_batches
from helpers import fashion_batches, train_tutorial

from callbacks import ActivationStats
from callbacks.activation_stats import STATS
from trackers import LooptrackWarning, MemoryWriter, Tracker
from trackers.tools.demo import SyntheticFashionMNIST, TutorialNet
from trackers.tools.syncs import SyncCounter

TUTORIAL_MODULES = ["conv1", "pool", "conv2", "fc1", "fc2", "fc3"]


class Capture:
    """Every output of the named modules, copied as it is made, with the tracker's step and the grad mode."""

    def __init__(self, net: torch.nn.Module, tracker: Tracker, names: list[str]) -> None:
        self.outputs: list[tuple[int, str, bool, torch.Tensor]] = []
        modules = dict(net.named_modules())
        self.handles = [modules[name].register_forward_hook(self._hook(name, tracker)) for name in names]

    def _hook(self, name: str, tracker: Tracker):
        def hook(module, inputs, output) -> None:
            self.outputs.append((tracker.state.step, name, torch.is_grad_enabled(), output.detach().clone()))

        return hook

    def window(self, name: str, steps: range) -> list[torch.Tensor]:
        """The training outputs of module ``name`` in ``steps``."""
        return [out for step, n, grad, out in self.outputs if n == name and grad and step in steps]


def reference(outputs: list[torch.Tensor]) -> dict[str, float]:
    """The statistics of ``outputs`` computed directly, in float64."""
    flat = torch.cat([o.double().reshape(-1) for o in outputs])
    finite = flat[torch.isfinite(flat)]
    alive: dict[int, torch.Tensor] = {}
    for out in outputs:
        seen = (out != 0).transpose(0, 1).reshape(out.shape[1], -1).any(dim=1)
        alive[out.shape[1]] = alive.get(out.shape[1], torch.zeros_like(seen)) | seen
    return {
        "mean": finite.mean().item(),
        "std": finite.std(correction=0).item(),
        "abs_max": finite.abs().max().item(),
        "zero_fraction": ((flat == 0).sum() / flat.numel()).item(),
        "dead_fraction": sum(int((~a).sum()) for a in alive.values()) / sum(a.numel() for a in alive.values()),
        "nonfinite": float((~torch.isfinite(flat)).sum()),
    }


def logged(writer: MemoryWriter, name: str, step: int) -> dict[str, float]:
    writer.flush()
    return {stat: dict(writer.series(f"activations/{name}/{stat}"))[step] for stat in STATS}


def _tutorial(seed: int = 0) -> tuple[TutorialNet, SyntheticFashionMNIST]:
    torch.manual_seed(seed)
    return TutorialNet(), SyntheticFashionMNIST(96, seed=1)


# -------------------------------------------------------------------------------------------------- the values
def test_every_stat_equals_the_reference_over_each_windows_training_forwards():
    net, data = _tutorial()
    writer = MemoryWriter()
    tracker = Tracker(net, callbacks=[ActivationStats(every_n_steps=3, window=None)], writer=writer)
    capture = Capture(net, tracker, TUTORIAL_MODULES)
    train_tutorial(
        tracker,
        net,
        fashion_batches(data, 3, 8),
        optimizer=torch.optim.SGD(net.parameters(), lr=0.05),
        epochs=2,
        val=fashion_batches(data, 2, 8, start=48),
    )
    tracker.close()
    assert writer.tags("scalar") == {f"activations/{name}/{stat}" for name in TUTORIAL_MODULES for stat in STATS}
    assert {step for step, *_ in writer.series("activations/fc1/mean")} == {2, 5}
    assert any(not grad for _, _, grad, _ in capture.outputs)  # validation ran, under no_grad: left out
    for step, window in ((2, range(0, 3)), (5, range(3, 6))):
        for name in TUTORIAL_MODULES:
            outputs = capture.window(name, window)
            assert len(outputs) == (6 if name == "pool" else 3)  # the pool is called twice a forward
            expected = reference(outputs)
            assert logged(writer, name, step) == pytest.approx(expected, rel=1e-5, abs=1e-12), (step, name)
    # the pool's units: 6 channels after conv1 and 16 after conv2; the ReLU before it zeroes about half
    assert 0.1 < logged(writer, "pool", 5)["zero_fraction"] < 0.9


@pytest.mark.parametrize(("window", "first"), [(1, 0), (2, 1)])
def test_by_default_only_the_logging_step_is_measured_and_window_widens_it(window, first):
    net, data = _tutorial()
    writer = MemoryWriter()
    stats = ActivationStats(every_n_steps=3) if window == 1 else ActivationStats(every_n_steps=3, window=window)
    tracker = Tracker(net, callbacks=[stats], writer=writer)
    capture = Capture(net, tracker, TUTORIAL_MODULES)
    train_tutorial(tracker, net, fashion_batches(data, 6, 8), optimizer=torch.optim.SGD(net.parameters(), lr=0.05))
    tracker.close()
    for step in (2, 5):
        for name in TUTORIAL_MODULES:
            expected = reference(capture.window(name, range(step - first, step + 1)))
            assert logged(writer, name, step) == pytest.approx(expected, rel=1e-5, abs=1e-12), (step, name)


def test_std_keeps_its_precision_when_the_mean_is_large_next_to_it():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    with torch.no_grad():
        net[0].bias.fill_(1000.0)  # outputs about 1000 +- 1: float32 sums of squares would lose the spread
    writer = MemoryWriter()
    tracker = Tracker(net, callbacks=[ActivationStats(every_n_steps=2, window=None)], writer=writer)
    capture = Capture(net, tracker, ["0"])
    train_tutorial(tracker, net, make_batches(4, seed=1), optimizer=None)
    tracker.close()
    for step, window in ((1, range(0, 2)), (3, range(2, 4))):
        expected = reference(capture.window("0", window))
        assert 0.3 < expected["std"] < 3
        assert logged(writer, "0", step) == pytest.approx(expected, rel=1e-5)


def test_a_dead_layer_shows_dead_units_and_zeros_and_the_others_do_not():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
    )
    with torch.no_grad():
        net[2].bias.fill_(-1e3)  # every input of the second ReLU is negative: it outputs zeros only
    writer = MemoryWriter()
    with Tracker(net, callbacks=[ActivationStats(every_n_steps=2)], writer=writer) as tracker:
        train_tutorial(tracker, net, make_batches(4, seed=1), optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    for step in (1, 3):
        dead = logged(writer, "3", step)
        assert dead["dead_fraction"] == 1.0 and dead["zero_fraction"] == 1.0
        assert dead["mean"] == 0.0 and dead["std"] == 0.0 and dead["abs_max"] == 0.0
        alive = logged(writer, "1", step)
        assert alive["dead_fraction"] <= 0.05
        assert 0.2 < alive["zero_fraction"] < 0.8  # a ReLU of centred values zeroes about half
        for linear in ("0", "2", "4"):
            assert logged(writer, linear, step)["dead_fraction"] == 0.0
            assert logged(writer, linear, step)["zero_fraction"] == 0.0


def test_a_nan_at_a_known_step_is_counted_in_its_window_only_and_left_out_of_the_rest():
    net, data = _tutorial()
    batches = fashion_batches(data, 6, 8)
    poisoned = batches[3][0].clone()
    poisoned[0, 0, 10, 10] = float("nan")  # one pixel of one image of step 3
    batches[3] = (poisoned, batches[3][1])
    writer = MemoryWriter()
    tracker = Tracker(net, callbacks=[ActivationStats(every_n_steps=2, window=None)], writer=writer)
    capture = Capture(net, tracker, TUTORIAL_MODULES)
    train_tutorial(tracker, net, batches, optimizer=None)  # no optimizer step: the NaN stays in step 3
    tracker.close()
    assert [v for _, v in writer.series("activations/conv1/nonfinite")] == [0.0, 6 * 25, 0.0]  # 6 channels x 5x5
    for name in TUTORIAL_MODULES:
        values = logged(writer, name, 3)
        expected = reference(capture.window(name, range(2, 4)))
        assert values["nonfinite"] == expected["nonfinite"] > 0
        assert values == pytest.approx(expected, rel=1e-5, abs=1e-12)
        assert all(torch.isfinite(torch.tensor(values[stat])) for stat in ("mean", "std", "abs_max"))


# ------------------------------------------------------------------------------------------------ host syncs
@pytest.mark.parametrize("histograms", [False, True])
def test_no_host_sync_on_the_training_thread_and_one_read_back_per_logging_step(histograms):
    net, data = _tutorial()
    writer = MemoryWriter()
    tracker = Tracker(net, callbacks=[ActivationStats(every_n_steps=5, histograms=histograms)], writer=writer)
    read_backs = []
    on_device = writer.on_device

    def counted(fn, *args):
        read_backs.append(tracker.state.step)
        return on_device(fn, *args)

    writer.on_device = counted  # type: ignore[method-assign]
    with SyncCounter() as counter:  # every step, the logging ones included: the writer thread reads back
        train_tutorial(tracker, net, fashion_batches(data, 10, 8), optimizer=torch.optim.SGD(net.parameters(), lr=0.01))
    tracker.close()
    assert counter.syncs == 0
    assert read_backs == [4, 9]  # one stacked tensor per logging step for every scalar of the step
    assert len(writer.tags("scalar")) == len(TUTORIAL_MODULES) * len(STATS)
    assert all([s for s, _ in writer.series(tag)] == [4, 9] for tag in writer.tags("scalar"))
    histograms_written = {(r.tag, r.step) for r in writer.records if r.kind == "histogram_raw"}
    expected = {(f"activations/{name}", s) for name in TUTORIAL_MODULES for s in (4, 9)} if histograms else set()
    assert histograms_written == expected


# ------------------------------------------------------------------------------------------------- selection
class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)
        self.act = torch.nn.ReLU(inplace=True)
        self.drop = torch.nn.Dropout(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.linear(x)))


class Blocks(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = torch.nn.Sequential(Block(), Block())
        self.layer2 = torch.nn.Sequential(Block())
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer2(self.layer1(x)))


def _modules_logged(stats: ActivationStats, net: torch.nn.Module | None = None) -> set[str]:
    torch.manual_seed(0)
    net = net if net is not None else Blocks()
    writer = MemoryWriter()
    with Tracker(net, callbacks=[stats], writer=writer) as tracker:
        if isinstance(net, TutorialNet):
            batches = fashion_batches(SyntheticFashionMNIST(16, seed=1), 2, 8)
        else:
            batches = make_batches(2, seed=1)
        train_tutorial(tracker, net, batches, optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    return {tag.split("/")[1] for tag in writer.tags("scalar")}


def test_leaves_by_default_blocks_with_depth_and_globs_filter_them():
    blocks = [f"layer1.{i}" for i in (0, 1)] + ["layer2.0"]
    leaves = {f"{b}.{part}" for b in blocks for part in ("linear", "act", "drop")} | {"head"}
    assert _modules_logged(ActivationStats(every_n_steps=1)) == leaves  # ReLU and Dropout included
    assert _modules_logged(ActivationStats(every_n_steps=1, depth=1)) == {"layer1", "layer2", "head"}
    assert _modules_logged(ActivationStats(every_n_steps=1, depth=2)) == set(blocks)
    selected = _modules_logged(ActivationStats(every_n_steps=1, include=["layer1.*"], exclude=["*.drop"]))
    assert selected == {"layer1.0.linear", "layer1.0.act", "layer1.1.linear", "layer1.1.act"}
    assert _modules_logged(ActivationStats(every_n_steps=1, depth=2, exclude=["layer2.*"])) == set(blocks[:2])
    assert _modules_logged(ActivationStats(every_n_steps=1, depth=1), TutorialNet()) == set(TUTORIAL_MODULES)


def test_an_in_place_op_after_a_module_does_not_change_what_it_output():
    torch.manual_seed(0)
    net = Blocks()
    writer = MemoryWriter()
    tracker = Tracker(net, callbacks=[ActivationStats(every_n_steps=2, histograms=True, window=None)], writer=writer)
    capture = Capture(net, tracker, ["layer1.0.linear"])
    train_tutorial(tracker, net, make_batches(4, seed=1), optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    tracker.close()
    # ReLU(inplace=True) overwrites the Linear's output tensor after its hook ran
    values = logged(writer, "layer1.0.linear", 3)
    assert values == pytest.approx(reference(capture.window("layer1.0.linear", range(2, 4))), rel=1e-5, abs=1e-12)
    assert values["zero_fraction"] == 0.0
    histogram = next(r for r in writer.records if r.kind == "histogram_raw" and r.tag == "activations/layer1.0.linear")
    first = capture.window("layer1.0.linear", range(1, 2))[0]
    assert (histogram.step, histogram.num) == (1, first.numel())  # the logging step's forward
    assert histogram.min == pytest.approx(first.min().item()) and histogram.min < 0  # as it was, before the ReLU


def test_selections_that_measure_nothing_and_a_missing_model_are_said_with_the_fix():
    with pytest.warns(LooptrackWarning, match=r"ActivationStats: include=\['layer1'\].*no leaf module.*depth=1\.\.3"):
        assert _modules_logged(ActivationStats(every_n_steps=1, include=["layer1"])) == set()
    with pytest.warns(LooptrackWarning, match=r"ActivationStats: .*but no depth=4 among them"):
        assert _modules_logged(ActivationStats(every_n_steps=1, depth=4)) == set()
    with pytest.warns(LooptrackWarning, match=r"ActivationStats needs the model.*Tracker\(model"):
        with Tracker(callbacks=[ActivationStats(every_n_steps=1)], writer="memory") as tracker:
            tracker.train_step(lambda: torch.tensor(0.0))()
    with pytest.raises(TypeError, match=r"ActivationStats: include must be a list of glob patterns"):
        ActivationStats(include="layer1.*")
    with pytest.raises(ValueError, match=r"ActivationStats: depth must be a positive integer"):
        ActivationStats(depth=0)


def test_compiled_models_log_what_eager_ones_do():
    def run(compiled: bool) -> tuple[dict[str, list[tuple[int | None, float]]], set[tuple[str, int, float]]]:
        torch.manual_seed(0)
        net = Blocks()
        model = torch.compile(net, backend="eager") if compiled else net
        writer = MemoryWriter()
        with Tracker(model, callbacks=[ActivationStats(every_n_steps=2, histograms=True)], writer=writer) as tracker:
            train_tutorial(tracker, model, make_batches(4, seed=1), optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
        histograms = {(r.tag, r.step, r.num) for r in writer.records if r.kind == "histogram_raw"}
        return {tag: writer.series(tag) for tag in writer.tags("scalar")}, histograms

    eager, eager_histograms = run(compiled=False)
    compiled, compiled_histograms = run(compiled=True)
    assert compiled.keys() == eager.keys() and len(eager) == 10 * len(STATS)
    for tag, series in eager.items():
        assert [step for step, _ in compiled[tag]] == [step for step, _ in series] == [1, 3]
        assert [v for _, v in compiled[tag]] == pytest.approx([v for _, v in series], rel=1e-6, abs=1e-12), tag
    assert compiled_histograms == eager_histograms and len(eager_histograms) == 20


# ------------------------------------------------------------------------------------------------- Lightning
@pytest.mark.slow
def test_lightning_logs_what_the_decorator_logs_without_the_validation_forwards():
    pl = pytest.importorskip("lightning.pytorch")
    import torch.nn.functional as F
    from adapter_runs import EPOCHS, data, lightning_trainer, loader, tiny_net

    train, val = data()
    net = tiny_net()
    decorator = MemoryWriter()
    with Tracker(net, callbacks=[ActivationStats(every_n_steps=2)], writer=decorator) as tracker:
        train_tutorial(tracker, net, train, optimizer=torch.optim.SGD(net.parameters(), lr=0.1), epochs=EPOCHS, val=val)

    class Lit(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = Lit()
    lightning = MemoryWriter()
    tracker = Tracker(module, callbacks=[ActivationStats(every_n_steps=2)], writer=lightning)
    trainer = lightning_trainer(num_sanity_val_steps=2)
    tracker.attach(trainer)
    trainer.fit(module, loader(train), loader(val))
    tracker.close()
    assert lightning.tags("scalar") == {f"activations/net.{name}/{stat}" for name in ("fc1", "fc2") for stat in STATS}
    for name in ("fc1", "fc2"):
        for stat in STATS:
            expected = decorator.series(f"activations/{name}/{stat}")
            got = lightning.series(f"activations/net.{name}/{stat}")
            assert [s for s, _ in got] == [s for s, _ in expected] == [1, 3, 5]
            assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-5, abs=1e-12), (name, stat)
