"""The looptrack command's edges in real processes (missing paths, event files, strict JSON, a reader that stops
early) and models looptrack can only partly watch (TorchScript, the meta device)."""

from __future__ import annotations

import json
import math
import subprocess
import warnings

import pytest
import torch
from conftest import PYTHON, TinyNet, load_run, make_batches
from helpers import train_tutorial

from callbacks import GraphTrace, LossLogger
from trackers import TensorBoardWriter, Tracker
from trackers.errors import LooptrackWarning
from trackers.tools.cli import EXIT_OUTPUT_CLOSED


def looptrack(*args, env, timeout=120):
    return subprocess.run(
        [PYTHON, "-m", "trackers", *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout
    )


def one_run(path, values=(1.0, 2.0, 3.0), tag="train/loss"):
    writer = TensorBoardWriter(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LooptrackWarning)  # non-finite values are reported, and logged as they are
        for step, value in enumerate(values):
            writer.scalar(tag, value, step)
        writer.close()
    (events,) = path.glob("events.out.tfevents.*")
    return events


# ------------------------------------------------------------------ the command


@pytest.mark.parametrize("command", ["inspect", "export", "doctor"])
def test_a_missing_path_is_exit_2_with_the_reason_on_stderr_for_every_command(command, tmp_path, subprocess_env):
    missing = tmp_path / "nope"
    result = looptrack(command, missing, env=subprocess_env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"looptrack {command}: no such log dir or event file: {str(missing)!r}" in result.stderr
    assert "pass a run directory, a directory of runs" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("command", ["inspect", "export", "doctor"])
def test_a_file_that_is_no_event_file_says_what_to_pass(command, tmp_path, subprocess_env):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a run\n")
    result = looptrack(command, notes, env=subprocess_env)
    assert result.returncode == 2
    assert f"{str(notes)!r} is a file but not a TensorBoard event file" in result.stderr
    assert "or an event file (events.out.tfevents.*)" in result.stderr


def test_inspect_export_and_doctor_read_one_event_file(tmp_path, subprocess_env):
    events = one_run(tmp_path / "runs" / "a")
    one_run(tmp_path / "runs" / "b", values=(9.0,))  # a sibling run that must not be read
    inspected = looptrack("inspect", events, env=subprocess_env)
    assert inspected.returncode == 0, inspected.stderr
    rows = [line.split() for line in inspected.stdout.splitlines()[2:]]
    assert rows == [[events.name, "train/loss", "scalar", "3", "0", "2", "3"]]

    exported = looptrack("export", events, "--format", "json", env=subprocess_env)
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert list(data) == [events.name]
    assert [point[1:] for point in data[events.name]["train/loss"]] == [[0, 1.0], [1, 2.0], [2, 3.0]]

    checked = looptrack("doctor", events, env=subprocess_env)
    assert checked.returncode == 0, checked.stderr
    assert f"{events}: 4 good records" in checked.stdout and "1 file(s) checked, 0 with problems" in checked.stdout


def test_doctor_salvages_one_event_file_and_never_over_itself(tmp_path, subprocess_env):
    events = one_run(tmp_path / "run", values=[float(s) for s in range(20)])
    events.write_bytes(events.read_bytes()[:-5])  # the last record cut short
    salvaged = looptrack("doctor", events, "--salvage", tmp_path / "fixed", env=subprocess_env)
    assert salvaged.returncode == 1  # damage was found
    assert "truncated" in salvaged.stdout
    assert [e.step for e in load_run(tmp_path / "fixed").Scalars("train/loss")] == list(range(19))

    over_itself = looptrack("doctor", events, "--salvage", tmp_path / "run", env=subprocess_env)
    assert over_itself.returncode == 2
    assert "would overwrite the run; write the copy to another directory (e.g. --salvage run-salvaged)" in (
        over_itself.stderr
    )
    assert len(events.read_bytes()) > 0


def test_export_json_is_strict_json_with_non_finite_values_as_strings(tmp_path, subprocess_env):
    one_run(tmp_path / "runs" / "a", values=(0.5, float("nan"), float("inf"), float("-inf")))
    result = looptrack("export", tmp_path / "runs", "--format", "json", env=subprocess_env)
    assert result.returncode == 0, result.stderr

    def no_bare_constants(name):  # what JSON.parse and other strict parsers reject
        raise AssertionError(f"bare {name} in the JSON output")

    data = json.loads(result.stdout, parse_constant=no_bare_constants)
    values = [point[2] for point in data["a"]["train/loss"]]
    assert values == [0.5, "NaN", "Infinity", "-Infinity"]
    back = [float(v) for v in values]
    assert back[0] == 0.5 and math.isnan(back[1]) and back[2] == math.inf and back[3] == -math.inf

    helped = looptrack("export", "--help", env=subprocess_env)
    assert '"NaN", "Infinity" or "-Infinity"' in " ".join(helped.stdout.split())


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    """A run whose inspect table and export are each several pipe buffers long (3000 tags of 120 characters)."""
    root = tmp_path_factory.mktemp("big")
    writer = TensorBoardWriter(root / "run")
    for index in range(3000):
        writer.scalar(f"metrics/{'x' * 110}/{index:05d}", float(index), 0)
    writer.close()
    return root


@pytest.mark.parametrize(
    "command", [["inspect"], ["export"], ["export", "--format", "json"]], ids=["inspect", "csv", "json"]
)
def test_a_reader_that_stops_after_one_line_gets_no_traceback(command, big_run, subprocess_env):
    process = subprocess.Popen(
        [PYTHON, "-m", "trackers", command[0], str(big_run), *command[1:]],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = process.stdout.readline()  # like `looptrack inspect runs | head -1`
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    status = process.wait(timeout=120)
    assert first.strip() in (b"{", b"run,tag,step,wall_time,value") or first.split()[:2] == [b"run", b"tag"]
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert status == EXIT_OUTPUT_CLOSED == 1  # Python's own status on EPIPE, as its docs on SIGPIPE recommend


def test_the_whole_output_still_arrives_when_it_is_all_read(big_run, subprocess_env):
    result = looptrack("export", big_run, env=subprocess_env)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 3001  # the header and every scalar: writing line by line drops none


# ------------------------------------------------------------------ models looptrack can only partly watch


def _scripted(net):
    return torch.jit.script(net)


def _traced(net):
    return torch.jit.trace(net, torch.zeros(2, 8))


@pytest.mark.parametrize("to_torchscript", [_scripted, _traced], ids=["script", "trace"])
def test_a_torchscript_model_is_tracked_without_forward_hooks(to_torchscript, tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still used
        net = to_torchscript(TinyNet())
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, callbacks=[LossLogger(every_n_steps=1), GraphTrace()], writer=str(tmp_path)) as tracker:
            losses = train_tutorial(tracker, net, make_batches(4), optimizer=optimizer, epochs=1)
    ours = [w for w in caught if issubclass(w.category, LooptrackWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]  # said once, at Tracker(...), nothing internal after it
    message = str(ours[0].message)
    assert "TorchScript module" in message and "no Python forward hooks" in message
    assert "GraphTrace(example_input=inputs)" in message  # the fix for the graph
    assert ours[0].filename == __file__  # pointing at the user's Tracker(...) line
    run = load_run(tmp_path)
    assert [(e.step, e.value) for e in run.Scalars("train/loss")] == [
        (step, pytest.approx(loss.item())) for step, loss in enumerate(losses)
    ]
    assert not run.Tags()["graph"]  # no forward call seen, so no graph from the first batch
    assert tracker.first_inputs is None


def test_the_fix_the_torchscript_warning_names_writes_the_graph(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.script(TinyNet())
    inputs, _ = make_batches(1)[0]
    with pytest.warns(LooptrackWarning, match="TorchScript"):
        tracker = Tracker(net, callbacks=[GraphTrace(example_input=inputs)], writer=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.jit.trace of a ScriptModule: a no-op, and deprecated
        warnings.simplefilter("ignore", FutureWarning)
        tracker.start()  # GraphTrace traces example_input here
        tracker.close()
    assert load_run(tmp_path).Tags()["graph"]


def test_a_meta_model_says_it_has_no_values_and_the_graph_is_still_written(tmp_path):
    with torch.device("meta"):
        net = TinyNet()
    batches = [(inputs.to("meta"), labels.to("meta")) for inputs, labels in make_batches(3)]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(net, writer=str(tmp_path)) as tracker:  # the defaults: the loss every 50 steps, the graph
            train_tutorial(tracker, net, batches, optimizer=optimizer, epochs=1)
    ours = [w for w in caught if issubclass(w.category, LooptrackWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    message = str(ours[0].message)
    assert "4 parameter(s)/buffer(s) of the model (TinyNet: fc1.weight, fc1.bias, fc2.weight, ...)" in message
    assert "on the meta device: they have shapes but no values" in message
    assert "model.to_empty(device='cpu')" in message  # the fix
    assert ours[0].filename == __file__
    assert tracker.step == 2  # every step was counted
    assert load_run(tmp_path).Tags()["graph"]  # traced from shapes, which a meta model has


def test_a_materialised_model_gets_no_warning(tmp_path):
    with torch.device("meta"):
        net = TinyNet()
    net = net.to_empty(device="cpu")  # the fix the warning names
    with warnings.catch_warnings():
        warnings.simplefilter("error", LooptrackWarning)
        Tracker(net, callbacks=[], writer="memory").close()
