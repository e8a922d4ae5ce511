"""Tracker.from_config: YAML, TOML and dicts; every mistake named before anything runs."""

from __future__ import annotations

import sys
import textwrap
import time
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


# ------------------------------------------------------------ bounded input, bounded messages


def _alias_bomb(levels: int, under: str, indent: str, size: int) -> str:
    """A "billion laughs" YAML document: ``a: &a ["x", ...]``, ``b: &b [*a, ...]``, ... nine wide, padded to ``size``.

    Loaded, it shares one list per level; printed or walked, it holds 9**levels strings.
    """
    names = "abcdefghijklmnopqrstuvwxyz"
    strings = ",".join(['"x"'] * 9)
    lines = [under, f"{indent}a: &a [{strings}]"]
    for level in range(1, levels):
        lines.append(f"{indent}{names[level]}: &{names[level]} [{','.join(['*' + names[level - 1]] * 9)}]")
    body = "\n".join(lines) + "\n"
    assert len(body) < size
    text = ("# billion laughs" + " " * size)[: size - len(body) - 1] + "\n" + body
    assert len(text.encode()) == size
    return text


@pytest.mark.parametrize(
    "text",
    [
        _alias_bomb(9, "strict:", "  ", size=430),  # 9**9 strings: a 351 MB error message before
        _alias_bomb(10, "callbacks:\n- loss:\n   every_n_steps:", "    ", size=472),  # 9**10: a MemoryError before
    ],
    ids=["430-byte", "472-byte"],
)
def test_yaml_alias_bombs_are_refused_quickly_with_a_short_message(tmp_path, text):
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb") as raised:
        Tracker.from_config(config)
    assert time.perf_counter() - started < 2.0
    assert len(str(raised.value)) < 300, str(raised.value)
    assert not isinstance(raised.value.__cause__, MemoryError)


@pytest.mark.parametrize(
    "text, message",
    [
        ("strict: &a [*a, *a]\n", "refers to a value that contains it"),
        ("strict: " + "[" * 150 + "]" * 150 + "\n", "nested deeper than 100 levels"),
        ("strict: *" + "n" * 100_000 + "\n", "can't be parsed"),  # an undefined alias with a huge name
    ],
    ids=["recursive alias", "too deep", "huge undefined alias"],
)
def test_other_unbounded_yaml_is_refused_with_a_short_message(tmp_path, text, message):
    config = tmp_path / "odd.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message) as raised:
        Tracker.from_config(config)
    assert len(str(raised.value)) < 1000


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_files_over_one_mib_are_refused_unparsed(tmp_path, suffix):
    config = tmp_path / f"big{suffix}"
    config.write_text("# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match=r"larger than 1,048,576 bytes") as raised:
        Tracker.from_config(config)
    assert len(str(raised.value)) < 300


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("strict: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        Tracker.from_config(config)


def test_huge_values_in_messages_are_cut_short(tmp_path):
    row = list(range(1000))
    huge = [[row] * 1000] * 1000  # a billion shared ints: valid data, a wrong type for every_n_steps
    cases = [
        ({"callbacks": [{"loss": {"every_n_steps": huge}}]}, r"'every_n_steps' must be int, got \[\[\[0, 1, "),
        ({"callbacks": [{"pr_curves": {"classes": [row] * 1000}}]}, r"'classes' must be"),
        ({"strict": huge}, r"'strict' must be true or false, got \[\["),
        ({"callbacks": [{"loss": {"x" * 100_000: 1}}]}, r"unknown key 'xxx"),
        ({"callbacks": [{"y" * 100_000: {}}]}, r"callbacks\[0\] \(yyy.*\.\.\.\): unknown callback"),
        ({"callbacks": [{"loss": huge}]}, r"arguments must be a mapping"),
        ({"callbacks": [huge]}, r"each entry is a name or a one-key mapping"),
        ({"writer": huge}, r"'writer' must be a mapping"),
        ({"z" * 100_000: 1}, r"unknown top-level key 'zzz"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigError, match=message) as raised:
            Tracker.from_config(config)
        assert len(str(raised.value)) < 600, str(raised.value)[:2000]
    text = "callbacks:\n- loss:\n    every_n_steps: [" + ", ".join(["[1, 2, 3]"] * 5_000) + "]\n"  # 20,001 values
    config = tmp_path / "wide.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match="'every_n_steps' must be int") as raised:
        Tracker.from_config(config)
    assert len(str(raised.value)) < 600


# ------------------------------------------------------------ allow_imports names classes, never runs functions


@pytest.mark.parametrize(
    "path, arguments, found",
    [
        ("os.system", {"command": "touch {marker}"}, "a builtin_function_or_method, not a class"),
        ("os:system", {"command": "touch {marker}"}, "a builtin_function_or_method, not a class"),
        ("subprocess.call", {"args": ["touch", "{marker}"]}, "a function, not a class"),
        ("builtins.eval", {"source": "open({marker!r}, 'w')"}, "a builtin_function_or_method, not a class"),
        ("collections.OrderedDict", {"touch": "{marker}"}, "the class OrderedDict, not a Callback subclass"),
        ("trackers.writers.sinks.memory:MemorySink", {}, "the class MemorySink, not a Callback subclass"),
    ],
)
def test_import_paths_may_only_name_callback_classes(tmp_path, path, arguments, found):
    marker = str(tmp_path / "pwned")
    arguments = {
        key: [v.format(marker=marker) for v in value] if isinstance(value, list) else value.format(marker=marker)
        for key, value in arguments.items()
    }
    config = {"writer": "memory", "callbacks": ["loss", {path: arguments}]}
    with pytest.raises(ConfigError) as raised:
        Tracker.from_config(config, allow_imports=True)
    message = str(raised.value)
    assert message.startswith(f"callbacks[1] ({path}): {path!r} is {found}; ")
    assert "must name a callbacks.Callback subclass; nothing was called" in message
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "path, found",
    [
        ("os.system", "a builtin_function_or_method, not a class"),
        ("collections.OrderedDict", "the class OrderedDict, not a Sink subclass"),
        ("callbacks.loss:LossLogger", "the class LossLogger, not a Sink subclass"),
    ],
)
def test_a_writer_backend_import_path_must_name_a_sink_class(tmp_path, path, found):
    config = {"writer": {"backend": path, "command": f"touch {tmp_path / 'pwned'}"}}
    with pytest.raises(ConfigError) as raised:
        Tracker.from_config(config, allow_imports=True)
    assert str(raised.value).startswith(f"writer ({path}): {path!r} is {found}; ")
    assert "must name a trackers.Sink subclass (a sink class)" in str(raised.value)
    assert not (tmp_path / "pwned").exists()


def test_import_paths_to_sink_classes_and_missing_modules():
    tracker = Tracker.from_config(
        {"writer": {"backend": "trackers.writers.sinks.memory:MemorySink"}}, allow_imports=True
    )
    assert isinstance(tracker.writer.sinks[0], MemorySink)
    tracker.close()
    with pytest.raises(ConfigError, match=r"can't import 'no_such_module_xyz\.Thing': ModuleNotFoundError"):
        Tracker.from_config({"callbacks": ["no_such_module_xyz.Thing"]}, allow_imports=True)
    with pytest.raises(ConfigError, match=r"can't import 'os:no_such_name': AttributeError"):
        Tracker.from_config({"callbacks": ["os:no_such_name"]}, allow_imports=True)


def test_a_yaml_file_with_too_many_values_is_refused_while_parsing(tmp_path, monkeypatch):
    import trackers.core.config_file as config_file

    monkeypatch.setattr(config_file, "MAX_NODES", 1_000)  # 100,000 takes PyYAML seconds to reach
    config = tmp_path / "long.yaml"
    config.write_text("strict: [" + "1," * 200_000 + "1]\n")  # 400 KB, no aliases, 200,002 values
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"more than 1,000 values") as raised:
        Tracker.from_config(config)
    assert time.perf_counter() - started < 2.0  # refused after 1,000 values, not after parsing all
    assert len(str(raised.value)) < 300
