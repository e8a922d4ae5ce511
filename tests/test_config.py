"""Tracker.from_config: YAML, TOML and dicts; every mistake named before anything runs."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest
import torch
from conftest import TinyNet, scalar_series

from callbacks import Callback, LossLogger, ParameterHistograms, PRCurves
from trackers import LooptrackWarning, MemorySink, TensorBoardSink, Tracker
from trackers.core.config import ConfigError
from trackers.registry import register_callback


def test_yaml_config_builds_callbacks_and_writer(tmp_path):
    config = tmp_path / "tracking.yaml"
    config.write_text(
        textwrap.dedent(f"""
        writer: {{backend: tensorboard, log_dir: {tmp_path / "run"}}}
        callbacks:
          - loss: {{every_n_steps: 2}}
          - parameter_histograms: {{every_n_steps: 500, include: [fc1]}}
          - pr_curves: {{classes: [a, b, c]}}
    """)
    )
    tracker = Tracker.from_config(config, TinyNet())
    assert [type(c) for c in tracker.callbacks.callbacks] == [LossLogger, ParameterHistograms, PRCurves]
    assert isinstance(tracker.writer.sinks[0], TensorBoardSink) and tracker.log_dir == str(tmp_path / "run")
    step = tracker.train_step(lambda v: torch.tensor(v))
    for v in (1.0, 3.0):
        step(v)
    with pytest.warns(LooptrackWarning, match="PRCurves: no validation batch"):
        tracker.close()
    assert scalar_series(tmp_path / "run", "train/loss") == [(1, 2.0)]


def test_toml_config_and_dict(tmp_path):
    config = tmp_path / "tracking.toml"
    config.write_text(
        textwrap.dedent("""
        strict = true
        [writer]
        backend = "memory"
        [[callbacks]]
        loss = { every_n_steps = 10, tag = "loss/train" }
    """)
    )
    tracker = Tracker.from_config(config)
    assert tracker.strict and isinstance(tracker.writer.sinks[0], MemorySink)
    assert tracker.callbacks.callbacks[0].tag == "loss/train"
    tracker.close()
    tracker = Tracker.from_config({"writer": "memory", "callbacks": ["loss"]})
    assert tracker.callbacks.callbacks[0].every_n_steps == 50
    tracker.close()
    tracker = Tracker.from_config({"writer": "memory"})  # no callbacks key: the defaults
    assert [type(c) for c in tracker.callbacks.callbacks] == [
        type(c) for c in __import__("trackers").default_callbacks()
    ]
    tracker.close()


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"callbacks": [{"los": {}}]},
            r"callbacks\[0\] \(los\): unknown callback 'los'; did you mean 'loss'\? \(known: .*loss",
        ),
        (
            {"callbacks": [{"loss": {"every_n_step": 5}}]},
            r"callbacks\[0\] \(loss\): unknown key 'every_n_step'; did you mean 'every_n_steps'\?",
        ),
        (
            {"callbacks": [{"loss": {"every_n_steps": "often"}}]},
            r"callbacks\[0\] \(loss\): 'every_n_steps' must be int, got 'often' \(str\)",
        ),
        ({"callbacks": ["loss", {"pr_curves": {}}]}, r"callbacks\[1\] \(pr_curves\): missing required key 'classes'"),
        ({"callbacks": [{"pr_curves": {"classes": "abc"}}]}, r"callbacks\[0\] \(pr_curves\): 'classes' must be"),
        ({"callbacks": [{"loss": {"every_n_steps": 0}}]}, r"callbacks\[0\] \(loss\): LossLogger: every_n_steps must"),
        ({"writer": {"backend": "tensorbord"}}, r"unknown sink 'tensorbord'; did you mean 'tensorboard'"),
        (
            {"writer": {"backend": "tensorboard", "logdir": "x"}},
            r"writer \(tensorboard\): unknown key 'logdir'; did you",
        ),
        ({"callback": []}, r"unknown top-level key 'callback'; did you mean 'callbacks'"),
        ({"callbacks": {"loss": {}}}, r"'callbacks' must be a list"),
    ],
)
def test_mistakes_are_named_before_anything_runs(tmp_path, config, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        Tracker.from_config(config)
    assert not (tmp_path / "runs").exists()  # nothing was built


def test_import_paths_need_an_explicit_opt_in(tmp_path):
    module = types.ModuleType("my_plugin_callbacks")

    class Shout(Callback):
        def __init__(self, word: str = "hi") -> None:
            self.word = word

    module.Shout = Shout
    sys.modules["my_plugin_callbacks"] = module
    try:
        config = {"writer": "memory", "callbacks": [{"my_plugin_callbacks:Shout": {"word": "yo"}}]}
        with pytest.raises(ConfigError, match="allow_imports=True"):
            Tracker.from_config(config)
        tracker = Tracker.from_config(config, allow_imports=True)
        assert tracker.callbacks.callbacks[0].word == "yo"
        tracker.close()
    finally:
        del sys.modules["my_plugin_callbacks"]


def test_registered_names_are_usable():
    class Ping(Callback):
        def __init__(self, times: int = 1) -> None:
            self.times = times

    register_callback("ping", Ping)
    tracker = Tracker.from_config({"writer": "memory", "callbacks": [{"ping": {"times": 3}}]})
    assert tracker.callbacks.callbacks[0].times == 3
    tracker.close()
    with pytest.raises(ConfigError, match="'times' must be int"):
        Tracker.from_config({"callbacks": [{"ping": {"times": 1.5}}]})


def test_entry_point_group_is_read(monkeypatch):
    from importlib.metadata import EntryPoint

    import trackers.registry as registry

    point = EntryPoint(name="loss_again", value="callbacks.loss:LossLogger", group=registry.CALLBACK_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [point] if group == registry.CALLBACK_GROUP else [])
    tracker = Tracker.from_config({"writer": "memory", "callbacks": [{"loss_again": {"every_n_steps": 7}}]})
    assert tracker.callbacks.callbacks[0].every_n_steps == 7
    tracker.close()


def test_yaml_is_loaded_safely(tmp_path):
    config = tmp_path / "evil.yaml"
    config.write_text("callbacks: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="can't be parsed"):
        Tracker.from_config(config)


def test_learning_rate_is_selectable_without_an_optimizer(tmp_path):
    """The optimizer is made after the config is read (or inside a framework): LearningRate finds it."""
    import torch
    from conftest import scalar_series

    from trackers import Tracker

    net = torch.nn.Linear(2, 2)
    tracker = Tracker.from_config(
        {
            "writer": {"backend": "tensorboard", "log_dir": str(tmp_path)},
            "callbacks": [{"learning_rate": {"every_n_steps": 1}}],
        },
        net,
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=0.3)
    with tracker:

        @tracker.train_step
        def step(x):
            optimizer.zero_grad()
            loss = net(x).sum()
            loss.backward()
            optimizer.step()
            return loss

        step(torch.ones(1, 2))
        step(torch.ones(1, 2))
    assert [(s, round(v, 6)) for s, v in scalar_series(tmp_path, "lr")] == [(0, 0.3), (1, 0.3)]
