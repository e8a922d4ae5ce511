"""The tutorial's pictures: prediction figures, image grids, the projector, text, hparams, learning rate."""

from __future__ import annotations

import gc
import io

import numpy as np
import pytest
import torch
from conftest import load_run
from helpers import fashion_batches, train_tutorial
from PIL import Image as PILImage
from tensorboard.plugins.hparams import plugin_data_pb2

from callbacks import Embedding, HParams, ImageGrid, LearningRate, LossLogger, PredictionFigure, TextLogger
from callbacks.prediction_figure import panel_titles
from trackers import LooptrackWarning, MemoryWriter, Tracker
from trackers.tools.demo import CLASSES, SyntheticFashionMNIST, TutorialNet

DATA = SyntheticFashionMNIST(96, seed=0)


TRAIN, VAL = fashion_batches(DATA, 4, 8), fashion_batches(DATA, 3, 8, start=64)


def _train(tracker: Tracker, net: torch.nn.Module, lr: float = 0.01) -> None:
    """Four tutorial steps of 8 images with SGD at ``lr``, then a validation pass over images 64-87."""
    train_tutorial(tracker, net, TRAIN, optimizer=torch.optim.SGD(net.parameters(), lr=lr), val=VAL)


def test_prediction_figure_titles_and_colours():
    net = TutorialNet()
    writer = MemoryWriter()
    with Tracker(net, callbacks=[PredictionFigure(CLASSES, every_n_steps=2, n=4)], writer=writer) as tracker:
        _train(tracker, net, lr=0.0)  # the net at step 3 is the net now
    figures = [r for r in writer.records if r.kind == "figure"]
    assert [r.step for r in figures] == [1, 3]
    pixels = np.asarray(figures[-1].figure)
    with torch.no_grad():
        probs = torch.softmax(net(DATA.data[24:28]), 1)
    predictions, labels = probs.argmax(1).tolist(), DATA.targets[24:28].tolist()
    titles = panel_titles(predictions, probs.max(1).values.tolist(), labels, CLASSES)
    assert [text.splitlines()[1] for text, _ in titles] == [f"(label: {CLASSES[t]})" for t in labels]
    # each quarter of the title band is written in its panel's colour: pure red or the green (0, 128, 0)
    band = pixels[:45]
    for i, (_, colour) in enumerate(titles):
        quarter = band[:, i * band.shape[1] // 4 : (i + 1) * band.shape[1] // 4].reshape(-1, 3).astype(int)
        red = ((quarter[:, 0] > 150) & (quarter[:, 1] < 100)).sum()
        green = ((quarter[:, 1] > 80) & (quarter[:, 0] < 60) & (quarter[:, 2] < 60)).sum()
        assert (green > 20 and red == 0) if colour == "green" else (red > 20 and green == 0), (i, colour, red, green)


def test_prediction_figure_in_matplotlib_has_the_tutorials_titles():
    net = TutorialNet()
    writer = MemoryWriter()
    with Tracker(
        net, callbacks=[PredictionFigure(CLASSES, every_n_steps=2, n=4, renderer="matplotlib")], writer=writer
    ) as tracker:
        _train(tracker, net, lr=0.0)
    axes = [r for r in writer.records if r.kind == "figure"][-1].figure.axes
    assert len(axes) == 4
    with torch.no_grad():
        probs = torch.softmax(net(DATA.data[24:28]), 1)
    for i, ax in enumerate(axes):
        prediction, label = int(probs[i].argmax()), int(DATA.targets[24 + i])
        title = ax.title.get_text()
        assert title.startswith(f"{CLASSES[prediction]}, ") and title.endswith(f"(label: {CLASSES[label]})")
        assert ax.title.get_color() == ("green" if prediction == label else "red")


def test_prediction_figure_reaches_tensorboard_as_an_image(tmp_path):
    net = TutorialNet()
    with Tracker(net, callbacks=[PredictionFigure(CLASSES, every_n_steps=4)], writer=str(tmp_path)) as tracker:
        _train(tracker, net)
    (event,) = load_run(tmp_path).Images("predictions vs. actuals")
    image = np.asarray(PILImage.open(io.BytesIO(event.encoded_image_string)))
    assert event.step == 3 and image.shape[1] > image.shape[0] > 100 and image.std() > 10


@pytest.mark.slow
def test_no_pyplot_figures_leak_over_many_steps(tmp_path):
    import matplotlib.figure

    net = TutorialNet()
    images, labels = DATA.data[:2], DATA.targets[:2]
    with Tracker(
        net, callbacks=[PredictionFigure(CLASSES, every_n_steps=500, n=2, renderer="matplotlib")], writer=str(tmp_path)
    ) as tracker:
        step = tracker.train_step(lambda x, y: net(x).sum())
        with torch.no_grad():
            for _ in range(10_000):
                step(images, labels)
    gc.collect()
    pyplot = __import__("sys").modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []
    alive = [o for o in gc.get_objects() if type(o) is matplotlib.figure.Figure]
    assert len(alive) < 3  # 20 figures were drawn and written
    assert len(load_run(tmp_path).Images("predictions vs. actuals")) == 20


def test_prediction_figure_turns_itself_off_for_non_images():
    tabular = torch.nn.Linear(8, 10)
    with pytest.warns(LooptrackWarning, match="PredictionFigure: the batch's inputs have shape \\(4, 8\\)"):
        with Tracker(tabular, callbacks=[PredictionFigure(CLASSES, every_n_steps=1)], writer="memory") as tracker:
            step = tracker.train_step(lambda x, y: torch.nn.functional.cross_entropy(tabular(x), y))
            for _ in range(3):
                step(torch.randn(4, 8), torch.tensor([0, 1, 2, 3]))
    assert tracker.callbacks.callbacks[0].disabled


def test_image_grid_once_and_every_n(tmp_path):
    net = TutorialNet()
    callbacks = [ImageGrid(tag="four_fashion_mnist_images", n=4), ImageGrid(every_n_steps=2, tag="grid")]
    with Tracker(net, callbacks=callbacks, writer=str(tmp_path)) as tracker:
        _train(tracker, net)
    run = load_run(tmp_path)
    (first,) = run.Images("four_fashion_mnist_images")
    assert first.step == 0 and first.width == 4 * 28 + 5 * 2
    assert [e.step for e in run.Images("grid")] == [1, 3]


def test_embedding_from_inputs_and_from_a_layer(tmp_path):
    net = TutorialNet()
    callbacks = [Embedding(n=20, classes=list(CLASSES), tag="inputs"), Embedding(n=10, layer="fc2", tag="fc2")]
    with Tracker(net, callbacks=callbacks, writer=str(tmp_path)) as tracker:
        _train(tracker, net)
    config = (tmp_path / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "inputs:00003"' in config and 'tensor_name: "fc2:00003"' in config
    inputs_dir = tmp_path / "00003" / "inputs"
    metadata = (inputs_dir / "metadata.tsv").read_text().splitlines()
    assert metadata == [CLASSES[int(t)] for t in DATA.targets[64:84]]  # the validation pass's first 20
    tensors = np.loadtxt(inputs_dir / "tensors.tsv")
    assert tensors.shape == (20, 784)
    assert (inputs_dir / "sprite.png").exists()
    fc2_dir = tmp_path / "00003" / "fc2"
    assert np.loadtxt(fc2_dir / "tensors.tsv").shape == (10, 84)


def test_embedding_unknown_layer_names_close_matches(net):
    with pytest.warns(LooptrackWarning) as caught:
        with Tracker(TutorialNet(), callbacks=[Embedding(layer="fc_2")], writer="memory"):
            pass
    assert any("the model has no layer 'fc_2'; did you mean 'fc2'" in str(w.message) for w in caught)


def test_text_fixed_function_and_model(tmp_path):
    net = TutorialNet()
    callbacks = [
        TextLogger("lr 0.01, **SGD**", tag="note"),
        TextLogger(lambda s: f"step {s.step}", every_n_steps=2, tag="progress"),
        TextLogger(tag="model"),
    ]
    with Tracker(net, callbacks=callbacks, writer=str(tmp_path)) as tracker:
        _train(tracker, net)
    run = load_run(tmp_path)
    texts = run.PluginTagToContent("text")
    assert {"note/text_summary", "progress/text_summary", "model/text_summary"} <= set(texts)
    progress = run.Tensors("progress/text_summary")
    assert [e.step for e in progress] == [1, 3]
    assert progress[-1].tensor_proto.string_val[0] == b"step 3"
    assert b"Conv2d" in run.Tensors("model/text_summary")[0].tensor_proto.string_val[0]


def test_hparams_with_final_metrics(tmp_path):
    net = TutorialNet()
    callbacks = [LossLogger(every_n_steps=2), HParams({"lr": 0.01, "optimizer": "sgd", "batch_size": 8})]
    with Tracker(net, callbacks=callbacks, writer=str(tmp_path)) as tracker:
        _train(tracker, net)
    run = load_run(tmp_path)
    content = run.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {h.name for h in experiment.hparam_infos} == {"lr", "optimizer", "batch_size"}
    assert {m.name.tag for m in experiment.metric_infos} == {"val/loss", "train/loss"}
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["optimizer"].string_value == "sgd" and session.hparams["lr"].number_value == 0.01
    assert len(run.Scalars("train/loss")) == 2  # the metric series is the logged one, not a copy


def test_hparams_checks_its_input():
    with pytest.raises(ValueError, match="HParams: values must be numbers, strings or booleans"):
        HParams({"layers": [1, 2]})


def test_learning_rate_follows_a_scheduler(tmp_path):
    net = TutorialNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    with Tracker(net, callbacks=[LearningRate(optimizer, every_n_steps=1)], writer=str(tmp_path)) as tracker:
        step = tracker.train_step(lambda: None)
        for _ in range(3):
            step()
            optimizer.step()
            scheduler.step()
    run = load_run(tmp_path)
    assert [(e.step, round(e.value, 6)) for e in run.Scalars("lr")] == [(0, 0.1), (1, 0.05), (2, 0.025)]
    assert [round(e.value, 6) for e in run.Scalars("momentum")] == [0.9, 0.9, 0.9]
