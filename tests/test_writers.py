"""Writers: every kind read back through TensorBoard's reader, flush semantics, bad log dirs."""

from __future__ import annotations

import os
import re
import socket
import time

import numpy as np
import pytest
import torch
from conftest import load_run, scalar_series
from matplotlib.figure import Figure

from trackers import (
    LogDirError,
    LoggingError,
    LooptrackWarning,
    MemorySink,
    MemoryWriter,
    Sink,
    TensorBoardWriter,
    Tracker,
    Writer,
)
from trackers.writers import resolve_writer


def test_every_kind_reaches_tensorboard_with_the_plugin_it_expects(tmp_path):
    from tensorboard.compat.proto.graph_pb2 import GraphDef
    from tensorboard.compat.proto.node_def_pb2 import NodeDef

    writer = TensorBoardWriter(tmp_path)
    writer.scalar("s", torch.tensor(1.5), 1)
    writer.histogram("h", torch.arange(100.0), 2)
    writer.image("i", torch.rand(3, 8, 8), 3)

    def build_figure():
        figure = Figure(figsize=(2, 2))
        figure.add_subplot().plot([0, 1], [1, 0])
        return figure

    writer.figure("f", build_figure, 4)
    writer.text("t", "hello **world**", 5)
    writer.pr_curve("p", torch.tensor([0, 1, 1, 0]), torch.tensor([0.1, 0.9, 0.7, 0.3]), 6)
    writer.graph(GraphDef(node=[NodeDef(name="a", op="Placeholder"), NodeDef(name="b", op="Relu", input=["a"])]))
    writer.embedding(torch.randn(5, 3), metadata=list("abcde"), step=7)
    writer.hparams({"lr": 0.01, "optimizer": "sgd"}, {"hparam/accuracy": torch.tensor(0.75)})
    writer.close()

    run = load_run(tmp_path)
    assert run.Scalars("s")[0].value == 1.5 and run.Scalars("s")[0].step == 1
    histogram = run.Histograms("h")[0]
    assert histogram.step == 2 and histogram.histogram_value.num == 100
    assert {e.step for e in run.Images("i")} == {3}
    assert {e.step for e in run.Images("f")} == {4}
    assert "t/text_summary" in run.PluginTagToContent("text")
    assert "p" in run.PluginTagToContent("pr_curves")
    assert "_hparams_/experiment" in run.PluginTagToContent("hparams")
    assert run.Scalars("hparam/accuracy")[0].value == 0.75
    assert [n.name for n in run.Graph().node] == ["a", "b"]
    assert os.path.exists(tmp_path / "projector_config.pbtxt")


def test_flush_returns_only_when_everything_before_it_is_on_disk(tmp_path):
    writer = TensorBoardWriter(tmp_path, flush_secs=3600)
    for step in range(500):
        writer.scalar("loss", float(step), step)
    writer.flush()
    assert len(scalar_series(tmp_path, "loss")) == 500
    writer.close()


def test_flush_on_an_interval_without_being_asked(tmp_path):
    writer = TensorBoardWriter(tmp_path, flush_secs=0.2)
    writer.scalar("loss", 1.0, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not load_run(tmp_path).Tags()["scalars"]:
        time.sleep(0.1)
    assert scalar_series(tmp_path, "loss") == [(0, 1.0)]
    writer.close()


def test_default_log_dir_follows_summary_writer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    writer = TensorBoardWriter(comment="_lr0.1")
    writer.close()
    assert re.fullmatch(
        rf"runs/[A-Z][a-z]{{2}}\d\d_\d\d-\d\d-\d\d_{re.escape(socket.gethostname())}_lr0\.1", writer.log_dir
    )
    assert os.path.isdir(writer.log_dir)


def test_purge_step_is_written_for_tensorboard(tmp_path):
    first = TensorBoardWriter(tmp_path)
    for step in range(10):
        first.scalar("loss", 1.0, step)
    first.close()
    time.sleep(1.1)  # a new event file name needs a new second
    second = TensorBoardWriter(tmp_path, purge_step=5)
    for step in range(5, 8):
        second.scalar("loss", 2.0, step)
    second.close()
    assert scalar_series(tmp_path, "loss") == [(s, 1.0) for s in range(5)] + [(s, 2.0) for s in range(5, 8)]


def test_uncreatable_log_dir_fails_at_construction_naming_the_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    bad = blocker / "run"
    model = torch.nn.Linear(2, 2)
    with pytest.raises(LogDirError, match=re.escape(repr(str(bad)))):
        Tracker(model, writer=str(bad))
    assert not model._forward_hooks and not model._forward_pre_hooks


def test_writer_names_and_instances():
    memory = MemoryWriter()
    assert resolve_writer(memory) is memory
    assert isinstance(resolve_writer("memory").sinks[0], MemorySink)
    with pytest.raises(TypeError, match="a sink name"):
        resolve_writer(42)
    memory.close()


def test_logging_after_close_warns_once_and_drops():
    writer = MemoryWriter()
    writer.close()
    with pytest.warns(LooptrackWarning, match="is closed"):
        writer.scalar("x", 1.0, 0)
    writer.scalar("x", 2.0, 1)
    assert writer.series("x") == []


def test_bad_tag_and_step_are_reported_not_raised():
    writer = MemoryWriter()
    with pytest.warns(LooptrackWarning, match="tag must be a string"):
        writer.scalar(3, 1.0, 0)
    with pytest.warns(LooptrackWarning, match="step must be an integer"):
        writer.scalar("x", 1.0, 1.5)
    writer.scalar("x", 1.0, np.int64(2))
    writer.close()
    assert writer.series("x") == [(2, 1.0)]


def test_strict_writer_raises_on_bad_input():
    writer = MemoryWriter(strict=True)
    with pytest.raises(LoggingError, match="tag must be a string"):
        writer.scalar(None, 1.0, 0)
    writer.close()


class FailingSink(Sink):
    def write_scalar(self, record):
        raise OSError(28, "No space left on device")


def test_a_failing_backend_is_reported_once_and_counted():
    writer = Writer(FailingSink())
    with pytest.warns(LooptrackWarning) as caught:
        for step in range(5):
            writer.scalar("x", 1.0, step)
        writer.close()
    messages = [str(w.message) for w in caught]
    assert any("could not write scalar 'x' at step 0" in m and "No space left" in m for m in messages)
    assert any("5 record(s) could not be written" in m for m in messages)
    assert writer.errors == 5


def test_a_failing_backend_raises_on_the_training_thread_in_strict_mode():
    writer = Writer(FailingSink(), strict=True)
    writer.scalar("x", 1.0, 0)
    with pytest.raises(LoggingError, match="No space left"):
        writer.flush()
    writer.close()


def test_a_backend_without_a_kind_reports_it_once():
    class ScalarsOnly(Sink):
        def write_scalar(self, record):
            pass

    writer = Writer(ScalarsOnly())
    with pytest.warns(LooptrackWarning, match="cannot show histogram"):
        writer.histogram("h", torch.ones(3), 0)
        writer.histogram("h", torch.ones(3), 1)
        writer.close()


def test_snapshots_do_not_see_later_in_place_changes():
    writer = MemoryWriter(flush_secs=3600)
    value = torch.tensor(1.0)
    writer.scalar("x", value, 0)
    value.add_(10)
    writer.close()
    assert writer.series("x") == [(0, 1.0)]


def test_memory_writer_keeps_cpu_copies():
    writer = MemoryWriter()
    writer.image("i", torch.ones(1, 2, 2), 0)
    writer.histogram("h", torch.arange(4.0), 0)
    writer.close()
    image, histogram = writer.records
    assert torch.equal(image.image, torch.ones(1, 2, 2))
    assert histogram.num == 4 and sum(histogram.bucket_counts) == 4 and writer.tags("histogram_raw") == {"h"}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # TensorBoard's own thread
def test_a_deleted_log_dir_is_noticed_and_recreated(tmp_path):
    import shutil

    log_dir = tmp_path / "run"
    writer = TensorBoardWriter(log_dir, flush_secs=3600)
    writer.scalar("x", 1.0, 0)
    writer.flush()
    shutil.rmtree(log_dir)
    with pytest.warns(LooptrackWarning, match="was deleted during the run; it is created again"):
        writer.scalar("x", 2.0, 1)
        writer.flush()  # notices
        writer.scalar("x", 3.0, 2)
        writer.close()
    assert writer.sink.recreated == 1
    assert scalar_series(log_dir, "x") == [(1, 2.0), (2, 3.0)]  # step 0 went with the directory; nothing after


class FatalSink(Sink):
    """Raises what no ``except Exception`` catches: the writer thread dies of it."""

    def write_scalar(self, record):
        raise SystemExit("fatal")


def _killed(writer: Writer) -> Writer:
    writer.scalar("fatal", 1.0, 0)
    deadline = time.monotonic() + 10
    while writer.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    return writer


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_writer_thread_is_surfaced_not_swallowed():
    writer = _killed(Writer(FatalSink()))
    with pytest.warns(LooptrackWarning, match="the writer thread has stopped"):
        writer.scalar("x", 1.0, 0)
    strict = _killed(Writer(FatalSink(), strict=True))
    with pytest.raises(LoggingError, match="the writer thread has stopped"):
        strict.scalar("x", 1.0, 0)
