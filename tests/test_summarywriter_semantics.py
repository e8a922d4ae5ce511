"""What SummaryWriter's calls mean beyond the bytes they write: figures closed or drawn at the call, one HParams
session per trial of a sweep, walltime 0 kept, a model's graph from ``graph(model, input)``, sinks other than
TensorBoard given the new kinds."""

from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import load_run
from PIL import Image
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

from trackers import LooptrackWarning, TensorBoardWriter
from trackers.writers.sinks.jsonl import JsonlWriter
from trackers.writers.sinks.memory import MemoryWriter


def _decoded(event):
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))


def _pixels(run, tag):
    (event,) = run.Images(tag)
    return _decoded(event)


def _figure(value: float):
    figure, axes = plt.subplots(figsize=(2, 2))
    axes.plot([0, value, 1])
    return figure


@pytest.fixture(autouse=True)
def _no_open_figures():
    plt.close("all")
    yield
    plt.close("all")


def test_figures_are_closed_in_pyplot_by_default_and_a_loop_does_not_pile_them_up(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    for step in range(30):
        writer.figure("curve", _figure(step), step)
        writer.figure("pair", [_figure(step), _figure(-step)], step)
    writer.close()
    assert plt.get_fignums() == []
    run = load_run(writer.log_dir)
    assert [e.step for e in run.Images("curve")] == list(range(30))
    single, pair = (_decoded(run.Images(tag)[-1]) for tag in ("curve", "pair"))
    assert pair.shape == (single.shape[0], 2 * single.shape[1], 3)  # side by side, as add_figure lays a list


def test_close_false_leaves_the_figure_open_and_logs_it_as_it_was_at_the_call(tmp_path):
    figure = _figure(0.0)
    before = _render(figure)
    writer = TensorBoardWriter(tmp_path)
    writer.figure("reused", figure, 0, close=False)
    figure.axes[0].plot([1, 0, 1], linewidth=8)  # the loop changes the figure right after logging it
    writer.close()
    assert plt.fignum_exists(figure.number)
    logged = _pixels(load_run(writer.log_dir), "reused")
    assert np.array_equal(logged, before) and not np.array_equal(logged, _render(figure))


def _render(figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def test_figures_of_different_sizes_are_reported_not_raised(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    small, large = plt.figure(figsize=(2, 2)), plt.figure(figsize=(3, 2))
    with pytest.warns(LooptrackWarning, match=r"figures of different sizes .* same figsize and dpi"):
        writer.figure("mixed", [small, large], 0)
        writer.close()
    assert "mixed" not in load_run(writer.log_dir).Tags()["images"]


def _sessions(log_dir):
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(log_dir))
    multiplexer.Reload()
    out = {}
    for run, content in multiplexer.PluginRunToTagToContent("hparams").items():
        if "_hparams_/session_start_info" in content:
            data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
            out[run] = {k: v.number_value for k, v in data.session_start_info.hparams.items()}
    return out, multiplexer


def test_a_sweep_of_four_trials_into_one_writer_is_four_sessions(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    for trial in range(4):
        writer.hparams({"lr": 0.1 * (trial + 1)}, {"hparam/accuracy": 0.5 + trial / 10})
    writer.close()
    sessions, multiplexer = _sessions(writer.log_dir)
    assert sorted(v["lr"] for v in sessions.values()) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert "." in sessions  # the first session is the run itself
    accuracy = {run: multiplexer.Scalars(run, "hparam/accuracy")[0].value for run in sessions}
    assert sorted(accuracy.values()) == pytest.approx([0.5, 0.6, 0.7, 0.8])


def test_run_name_and_discrete_domains_go_where_add_hparams_puts_them(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    for name, optimizer in (("adam", 1.0), ("sgd", 2.0)):
        writer.hparams(
            {"optimizer": optimizer},
            {"hparam/loss": optimizer},
            run_name=name,
            hparam_domain_discrete={"optimizer": [1.0, 2.0]},
        )
    writer.close()
    sessions, multiplexer = _sessions(writer.log_dir)
    assert sessions == {"adam": {"optimizer": 1.0}, "sgd": {"optimizer": 2.0}}
    content = multiplexer.PluginRunToTagToContent("hparams")["adam"]["_hparams_/experiment"]
    (info,) = plugin_data_pb2.HParamsPluginData.FromString(content).experiment.hparam_infos
    assert [v.number_value for v in info.domain_discrete.values] == [1.0, 2.0]


def test_walltime_zero_is_kept_in_the_event_and_in_the_export(tmp_path):
    writer = TensorBoardWriter(tmp_path / "run")
    writer.scalar("x", 1.0, 0, walltime=0)
    writer.scalar("x", 2.0, 1, walltime=0.0)
    writer.scalar("x", 3.0, 2)
    writer.export_scalars(tmp_path / "scalars.json")
    writer.close()
    assert [e.wall_time for e in load_run(writer.log_dir).Scalars("x")][:2] == [0.0, 0.0]
    exported = json.loads((tmp_path / "scalars.json").read_text())["x"]
    assert [row[0] for row in exported][:2] == [0.0, 0.0] and exported[2][0] > 1e9


def test_graph_of_a_model_and_its_input_as_add_graph_takes_it(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    writer = TensorBoardWriter(tmp_path)
    writer.graph(net, torch.zeros(1, 1, 4, 4))
    writer.close()
    from tensorboard.compat.proto.graph_pb2 import GraphDef

    graph = GraphDef.FromString(load_run(writer.log_dir).Graph().SerializeToString())
    ops = [node.op for node in graph.node]
    assert ["Conv2d", "ReLU", "Flatten", "Linear"] == [op for op in ops if op != "IO Node"]


def test_graph_of_a_model_that_cannot_be_traced_is_reported_once(tmp_path):
    net = torch.nn.Linear(3, 2)
    writer = TensorBoardWriter(tmp_path)
    with pytest.warns(LooptrackWarning, match=r"graph: could not trace Linear on inputs of shape \(1, 5\)"):
        writer.graph(net, torch.zeros(1, 5))
    writer.close()
    assert not load_run(writer.log_dir).Tags()["graph"]


def test_other_sinks_take_tensors_and_sessions(tmp_path):
    jsonl = JsonlWriter(log_dir=tmp_path)
    memory = MemoryWriter()
    for writer in (jsonl, memory):
        writer.tensor("t", np.arange(6).reshape(2, 3), 1)
        writer.hparams({"lr": 0.1}, {"acc": 0.5})
        writer.hparams({"lr": 0.2}, {"acc": 0.6}, run_name="trial_2")
        writer.close()
    lines = [json.loads(line) for line in open(jsonl.sink.path, encoding="utf-8")]
    tensor = next(line for line in lines if line["kind"] == "tensor")
    assert tensor["values"] == [[0, 1, 2], [3, 4, 5]] and tensor["shape"] == [2, 3]
    assert [line.get("run") for line in lines if line["kind"] == "hparams"] == [None, "trial_2"]
    assert [r.run for r in memory.records if r.kind == "hparams"] == [None, "trial_2"]
