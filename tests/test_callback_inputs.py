"""The picture and PR-curve callbacks on the inputs users really feed them, through a real loop.

uint8 images (ImageGrid, PredictionFigure, Embedding), label images that are
not square or are large (Embedding and the projector), and the targets and
outputs PRCurves gets: one-hot, float, binary, too few or many class names,
duplicate names, logits passed as probabilities.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TinyNet, load_run, make_batches
from helpers import fashion_batches, train_tutorial
from PIL import Image as PILImage
from torch.utils.tensorboard.summary import pr_curve as reference_pr_curve

from callbacks import Embedding, ImageGrid, PRCurves, PredictionFigure
from trackers import LooptrackWarning, MemoryWriter, TensorBoardWriter, Tracker
from trackers.tensorboard import projector
from trackers.tools.demo import CLASSES, SyntheticFashionMNIST, TutorialNet
from trackers.tools.syncs import SyncCounter

DATA = SyntheticFashionMNIST(96, seed=0)
PIXELS = ((DATA.data * 0.5 + 0.5) * 255).round().to(torch.uint8)  # the images as uint8, as a dataset stores them


class PixelNet(torch.nn.Module):
    """The tutorial's net on uint8 pixels: it normalises them as the tutorial's transforms would."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TutorialNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() / 255 - 0.5) / 0.5)


def _pixel_batches(n: int, batch_size: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (PIXELS[s : s + batch_size], DATA.targets[s : s + batch_size])
        for s in range(start, start + n * batch_size, batch_size)
    ]


def _train_on_pixels(tracker: Tracker, net: torch.nn.Module) -> None:
    """Four steps of 8 uint8 images, then a validation pass over images 64-87."""
    train_tutorial(
        tracker,
        net,
        _pixel_batches(4, 8),
        optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
        val=_pixel_batches(3, 8, start=64),
    )


def _png(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"))


def _leftovers(log_dir: object) -> list[str]:
    """Staging folders of the projector left in a log dir."""
    return [name for name in os.listdir(str(log_dir)) if name.startswith(".projector")]


# --- uint8 images -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unnormalize", ["default", None])
def test_image_grid_shows_uint8_pixels_as_they_are(tmp_path, unnormalize):
    net = PixelNet()
    kwargs = {} if unnormalize == "default" else {"unnormalize": None}
    with Tracker(net, callbacks=[ImageGrid(tag="grid", n=4, **kwargs)], writer=str(tmp_path)) as tracker:
        _train_on_pixels(tracker, net)
    (event,) = load_run(tmp_path).Images("grid")
    grid = _png(event.encoded_image_string)
    assert grid.shape == (28 + 4, 4 * 28 + 5 * 2, 3)
    for i in range(4):  # make_grid: 2 pixels of padding around each image
        cell = grid[2:30, 2 + i * 30 : 2 + i * 30 + 28]
        np.testing.assert_array_equal(cell, PIXELS[i, 0, :, :, None].expand(28, 28, 3).numpy())


def test_an_unnormalize_given_for_uint8_pixels_is_applied_and_said():
    net = PixelNet()
    writer = MemoryWriter()
    callback = ImageGrid(tag="grid", n=2, unnormalize=(0.5, 0.5))
    with pytest.warns(LooptrackWarning, match=r"ImageGrid: the inputs are uint8 pixels .* pass unnormalize=None"):
        with Tracker(net, callbacks=[callback], writer=writer) as tracker:
            _train_on_pixels(tracker, net)
    (record,) = [r for r in writer.records if r.kind == "image"]
    expected = (PIXELS[0, 0].float() / 255 * 0.5 + 0.5).clamp(0, 1)
    torch.testing.assert_close(record.image[0, 2:30, 2:30], expected)


def test_prediction_figure_draws_uint8_pixels():
    net = PixelNet()
    writer = MemoryWriter()
    with Tracker(net, callbacks=[PredictionFigure(CLASSES, every_n_steps=4, n=2)], writer=writer) as tracker:
        _train_on_pixels(tracker, net)
    (record,) = [r for r in writer.records if r.kind == "figure"]
    canvas = np.asarray(record.figure)
    panel_width, side = (canvas.shape[1] - 16) // 2, 224  # draw_predictions: 28 pixels scaled 8 times, 8 px margins
    top = canvas.shape[0] - 16 - side
    for i, index in enumerate((24, 25)):  # the fourth step's batch
        left = 8 + i * panel_width + (panel_width - side) // 2
        panel = canvas[top : top + side, left : left + side, 0]
        greys = 255 - PIXELS[index, 0].numpy()  # drawn as matplotlib's 'Greys': 255 is black
        np.testing.assert_array_equal(panel, np.kron(greys, np.ones((8, 8), dtype=np.uint8)))


def test_embedding_of_uint8_images_has_their_pixels_and_features(tmp_path):
    net = PixelNet()
    callbacks = [Embedding(n=16, classes=list(CLASSES)), ImageGrid(every_n_steps=1)]
    with SyncCounter() as counter:
        with Tracker(net, callbacks=callbacks, writer=str(tmp_path)) as tracker:
            _train_on_pixels(tracker, net)
    assert counter.syncs == 0  # uint8 images are converted on their device
    folder = tmp_path / "00003" / "default"
    expected = PIXELS[64:80].float().flatten(1).numpy() / 255
    np.testing.assert_allclose(np.loadtxt(folder / "tensors.tsv"), expected, atol=1e-6)
    sprite = np.asarray(PILImage.open(folder / "sprite.png"))
    assert sprite.shape == (4 * 28, 4 * 28, 3)
    for i in range(16):
        row, column = divmod(i, 4)
        cell = sprite[row * 28 : (row + 1) * 28, column * 28 : (column + 1) * 28]
        np.testing.assert_array_equal(cell, PIXELS[64 + i, 0, :, :, None].expand(28, 28, 3).numpy())
    assert "single_image_dim: 28" in (tmp_path / "projector_config.pbtxt").read_text()


# --- the projector: non-square, large, failing --------------------------------------------------------------------


class _Flat(torch.nn.Module):
    """A linear classifier of whatever images it gets."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(features, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1).float())


@pytest.mark.parametrize("height, width", [(20, 32), (32, 20)])
def test_embedding_of_images_that_are_not_square(tmp_path, height, width):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, height, width, generator=generator) * 2 - 1  # normalised like the tutorial's
    labels = torch.randint(0, 10, (16,), generator=generator)
    net = _Flat(height * width)
    batches = [(images[i : i + 4], labels[i : i + 4]) for i in range(0, 16, 4)]
    with Tracker(net, callbacks=[Embedding(n=10)], writer=str(tmp_path)) as tracker:
        train_tutorial(tracker, net, batches[:2], optimizer=None, val=batches[2:])
    folder = tmp_path / "00001" / "default"
    sprite = np.asarray(PILImage.open(folder / "sprite.png"))
    assert sprite.shape == (3 * 32, 3 * 32, 3)  # the 8 validation images: ceil(sqrt(8)) square cells of 32 a row
    pixels = ((images[8:16] * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    top, left = (32 - height) // 2, (32 - width) // 2
    for i in range(8):
        row, column = divmod(i, 3)
        cell = sprite[row * 32 : (row + 1) * 32, column * 32 : (column + 1) * 32, 0]
        np.testing.assert_array_equal(cell[top : top + height, left : left + width], pixels[i, 0].numpy())
        assert cell.sum() == pixels[i, 0].sum()  # the rest of the cell is the black background
    config = (tmp_path / "projector_config.pbtxt").read_text()
    assert config.count("single_image_dim: 32") == 2
    assert np.loadtxt(folder / "tensors.tsv").shape == (8, height * width)
    assert _leftovers(tmp_path) == []


def test_large_images_are_averaged_down_said_once_and_the_sprite_fits(tmp_path, monkeypatch):
    monkeypatch.setattr(projector, "MAX_SPRITE_PIXELS", 300)  # TensorBoard's 8192, small enough for a test
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 224, 224, generator=generator)
    labels = torch.randint(0, 10, (8,), generator=generator)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 10))
    callback = Embedding(n=4, unnormalize=None)
    with pytest.warns(LooptrackWarning) as caught:
        with Tracker(net, callbacks=[callback], writer=str(tmp_path)) as tracker:
            train_tutorial(tracker, net, [(images[:4], labels[:4]), (images[4:], labels[4:])], optimizer=None)
    messages = [str(w.message) for w in caught if "Embedding" in str(w.message)]
    assert len(messages) == 1, messages
    assert "Embedding: the inputs are 3x224x224 images, 150528 features a point" in messages[0]
    assert "averaged down to 3x36x36 (3888 features)" in messages[0] and "pass layer=" in messages[0]
    folder = tmp_path / "00001" / "default"
    expected = F.adaptive_avg_pool2d(images[:4], (36, 36)).flatten(1).numpy()
    np.testing.assert_allclose(np.loadtxt(folder / "tensors.tsv"), expected, atol=1e-6)
    sprite = np.asarray(PILImage.open(folder / "sprite.png"))
    assert sprite.shape == (300, 300, 3)  # two cells of 150 a row, not 448 x 448
    assert "single_image_dim: 150" in (tmp_path / "projector_config.pbtxt").read_text()
    reference = F.interpolate(images[:4], size=(150, 150), mode="bilinear", antialias=True, align_corners=False)
    first = sprite[:150, :150].astype(int) - (reference[0].permute(1, 2, 0).clamp(0, 1) * 255).round().numpy()
    assert np.abs(first).max() <= 1


def test_the_sprite_limit_is_tensorboards():
    assert projector.MAX_SPRITE_PIXELS == 8192
    assert projector.sprite_cell(10_000, 100, 100) == 81  # 100 cells a row of 81 pixels: 8100 <= 8192


def test_large_inputs_that_are_not_images_are_refused_with_the_fix(tmp_path):
    net = TinyNet(n_in=5000)
    batches = make_batches(2, n_in=5000)
    with pytest.warns(LooptrackWarning, match=r"Embedding: the inputs have 5000 features a point .* Pass layer="):
        with Tracker(net, callbacks=[Embedding(n=8)], writer=str(tmp_path)) as tracker:
            train_tutorial(tracker, net, batches, optimizer=None)
    assert not (tmp_path / "projector_config.pbtxt").exists()
    with Tracker(net, callbacks=[Embedding(n=8, layer="fc1")], writer=str(tmp_path / "layer")) as tracker:
        train_tutorial(tracker, net, batches, optimizer=None)
    assert np.loadtxt(tmp_path / "layer" / "00001" / "default" / "tensors.tsv").shape == (8, 16)


def test_a_failed_embedding_leaves_no_folder(tmp_path, monkeypatch):
    writer = TensorBoardWriter(tmp_path)
    with pytest.warns(LooptrackWarning, match="embedding 'labels': 3 labels for 5 points"):
        writer.embedding(torch.randn(5, 3), metadata=list("abc"), step=1, tag="labels")
        writer.flush()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(PILImage.Image, "save", full_disk)
    with pytest.warns(LooptrackWarning, match="No space left on device"):
        writer.embedding(torch.randn(4, 3), label_img=torch.rand(4, 1, 8, 8), step=2, tag="sprite")
        writer.flush()
    monkeypatch.undo()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(("0", ".projector", "projector"))]
    writer.embedding(torch.randn(4, 3), metadata=list("abcd"), label_img=torch.rand(4, 1, 8, 8), step=2, tag="ok")
    writer.embedding(torch.randn(2, 3), metadata=list("xy"), step=2, tag="ok")  # the same step and tag again
    writer.close()
    assert sorted(os.listdir(tmp_path / "00002")) == ["ok"]
    assert sorted(os.listdir(tmp_path / "00002" / "ok")) == ["metadata.tsv", "tensors.tsv"]
    assert (tmp_path / "projector_config.pbtxt").read_text().count('tensor_name: "ok:00002"') == 1
    assert _leftovers(tmp_path) == []


def test_embedding_labels_from_one_hot_and_float_targets(tmp_path):
    net = TutorialNet()
    train = fashion_batches(DATA, 2, 8)
    one_hot = [(x, F.one_hot(y, 10).float()) for x, y in train]
    with Tracker(net, callbacks=[Embedding(n=8, classes=list(CLASSES), tag="onehot")], writer=str(tmp_path)) as t:
        train_tutorial(t, net, one_hot, optimizer=None)
    with Tracker(net, callbacks=[Embedding(n=8, classes=list(CLASSES), tag="float")], writer=str(tmp_path / "f")) as t:
        step = t.train_step(lambda x, y: F.cross_entropy(net(x), y.long()))
        for x, y in train:
            step(x, y.float())
    expected = [CLASSES[int(c)] for c in DATA.targets[:8]]
    assert (tmp_path / "00001" / "onehot" / "metadata.tsv").read_text().splitlines() == expected
    assert (tmp_path / "f" / "00001" / "float" / "metadata.tsv").read_text().splitlines() == expected


@pytest.mark.parametrize("form", ["one-hot", "float"])
def test_prediction_figure_titles_from_one_hot_and_float_targets(form):
    net = TutorialNet()
    writer = MemoryWriter()
    batches = fashion_batches(DATA, 2, 8)
    callback = PredictionFigure(CLASSES, every_n_steps=1, n=3, renderer="matplotlib")
    with Tracker(net, callbacks=[callback], writer=writer) as tracker:
        step = tracker.train_step(lambda x, y: net(x).sum())
        for x, y in batches:
            step(x, F.one_hot(y, 10).float() if form == "one-hot" else y.float())
    figures = [r.figure for r in writer.records if r.kind == "figure"]
    assert len(figures) == 2
    for axes, label in zip(figures[-1].axes, DATA.targets[8:11].tolist()):
        assert axes.title.get_text().endswith(f"(label: {CLASSES[label]})")


def test_prediction_figure_names_a_fractional_target():
    net = TutorialNet()
    with pytest.warns(LooptrackWarning, match=r"PredictionFigure: target 0.5 is not a class index; give integer"):
        with Tracker(net, callbacks=[PredictionFigure(CLASSES, every_n_steps=1, n=2)], writer="memory") as tracker:
            tracker.train_step(lambda x, y: net(x).sum())(DATA.data[:2], torch.tensor([0.5, 1.0]))


# --- PRCurves -----------------------------------------------------------------------------------------------------

THREE = ["cat", "dog", "bird"]
VAL = make_batches(4, seed=2)


def _curves(callback: PRCurves, net: torch.nn.Module, val: list) -> dict[str, np.ndarray]:
    """The curves ``callback`` writes for validation batches ``val`` (no training), by tag."""
    writer = MemoryWriter()
    with Tracker(net, callbacks=[callback], writer=writer) as tracker:
        train_tutorial(tracker, net, [], optimizer=None, val=val, val_outputs=True)
    return {r.tag: np.asarray(r.data) for r in writer.records if r.kind == "pr_curve"}


def _reference(labels: torch.Tensor, probabilities: torch.Tensor, num_thresholds: int = 127) -> np.ndarray:
    """``add_pr_curve``'s own ``[6, T]`` for one class."""
    summary = reference_pr_curve("x", labels.numpy(), probabilities.numpy(), num_thresholds)
    tensor = summary.value[0].tensor
    return np.asarray(tensor.float_val, dtype=np.float64).reshape(6, num_thresholds)


def _logits(net: torch.nn.Module, batches: list) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(x) for x, _ in batches])


def test_one_hot_and_float_targets_give_the_curves_of_class_indices():
    torch.manual_seed(0)
    net = TinyNet()
    expected = _curves(PRCurves(THREE), net, VAL)
    probabilities = torch.softmax(_logits(net, VAL), 1)
    targets = torch.cat([y for _, y in VAL])
    for i, name in enumerate(THREE):
        np.testing.assert_allclose(
            expected[f"pr_curve/{name}"], _reference(targets == i, probabilities[:, i]), rtol=1e-6
        )
    one_hot = [(x, F.one_hot(y, 3)) for x, y in VAL]
    floats = [(x, y.double()) for x, y in VAL]
    column = [(x, y.reshape(-1, 1)) for x, y in VAL]
    for val in (one_hot, floats, column):
        curves = _curves(PRCurves(THREE), net, val)
        assert curves.keys() == expected.keys()
        for tag in expected:
            np.testing.assert_array_equal(curves[tag], expected[tag])


def test_targets_that_are_not_class_indices_are_left_out_and_said():
    torch.manual_seed(0)
    net = TinyNet()
    smoothed = [(x, F.one_hot(y, 3).float() * 0.9 + 0.1 / 3) for x, y in VAL[:1]]  # label smoothing
    soft = smoothed + [(x, F.one_hot(y, 3)) for x, y in VAL[1:]]
    with pytest.warns(
        LooptrackWarning, match=r"PRCurves: 8 validation target rows .* are not one-hot .*targets\.argmax"
    ):
        curves = _curves(PRCurves(THREE), net, soft)
    without = _curves(PRCurves(THREE), net, VAL[1:])
    assert without.keys() == curves.keys()
    for tag, data in without.items():
        np.testing.assert_array_equal(curves[tag], data)  # the soft batch is left out, the rest counted
    halves = [(x, y.float() + 0.5) for x, y in VAL]
    with pytest.warns(LooptrackWarning, match=r"PRCurves: 32 validation targets are floats that are not whole"):
        curves = _curves(PRCurves(THREE), net, halves)
    assert all(data[0, 0] == 0 and data[1, 0] == 0 for data in curves.values())  # no row counted


class _Binary(torch.nn.Module):
    """One logit a row (or its sigmoid)."""

    def __init__(self, probabilities: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 1)
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(x)
        return torch.sigmoid(logits) if self.probabilities else logits


BINARY_VAL = [(x, (y > 0).float().reshape(-1, 1)) for x, y in VAL]  # BCE's float 0/1 targets, [batch, 1]


@pytest.mark.parametrize("probabilities", [False, True])
def test_a_binary_model_gets_one_curve_or_two(probabilities):
    net = _Binary(probabilities)
    scores = _logits(net, BINARY_VAL).reshape(-1)
    positive = scores if probabilities else torch.sigmoid(scores)
    labels = torch.cat([y for _, y in BINARY_VAL]).reshape(-1).bool()
    one = _curves(PRCurves(["defect"], probabilities=probabilities), net, BINARY_VAL)
    assert list(one) == ["pr_curve/defect"]
    np.testing.assert_allclose(one["pr_curve/defect"], _reference(labels, positive), rtol=1e-6)
    two = _curves(PRCurves(["ok", "defect"], probabilities=probabilities), net, BINARY_VAL)
    assert sorted(two) == ["pr_curve/defect", "pr_curve/ok"]
    np.testing.assert_allclose(two["pr_curve/defect"], _reference(labels, positive), rtol=1e-6)
    np.testing.assert_allclose(two["pr_curve/ok"], _reference(~labels, 1 - positive), rtol=1e-6)


def test_probabilities_true_fed_logits_is_said_and_drawn_from_the_softmax():
    torch.manual_seed(0)
    net = TinyNet()
    expected = _curves(PRCurves(THREE), net, VAL)
    with pytest.warns(
        LooptrackWarning,
        match=r"PRCurves\(probabilities=True\): \d+ validation output values are outside \[0, 1\], so the outputs "
        r"are logits.* Pass PRCurves\(probabilities=False\)",
    ):
        curves = _curves(PRCurves(THREE, probabilities=True), net, VAL)
    for tag in expected:
        np.testing.assert_array_equal(curves[tag], expected[tag])
    with pytest.warns(LooptrackWarning, match=r"PRCurves\(probabilities=True\): .*\(sigmoid for one score"):
        binary = _curves(PRCurves(["defect"], probabilities=True), _Binary(), BINARY_VAL)
    np.testing.assert_array_equal(
        binary["pr_curve/defect"], _curves(PRCurves(["defect"]), _Binary(), BINARY_VAL)["pr_curve/defect"]
    )


def test_no_host_sync_on_validation_batches_whatever_the_targets():
    torch.manual_seed(0)
    net = TinyNet()
    softmax = torch.nn.Sequential(net, torch.nn.Softmax(dim=1))
    for model, callback, val in [
        (softmax, PRCurves(THREE, probabilities=True), [(x, F.one_hot(y, 3).float()) for x, y in VAL]),
        (net, PRCurves(THREE), [(x, y.float()) for x, y in VAL]),
        (_Binary(probabilities=True), PRCurves(["defect"], probabilities=True), BINARY_VAL),
    ]:
        writer = MemoryWriter()
        tracker = Tracker(model, callbacks=[callback], writer=writer)
        with SyncCounter() as counter:
            train_tutorial(tracker, model, [], optimizer=None, val=val, val_outputs=True)
            tracker.close()  # the curves are counted at the end, on the writer thread for CPU tensors
        assert counter.syncs == 0, callback
        assert writer.tags("pr_curve") == {f"pr_curve/{name}" for name in callback.classes}


@pytest.mark.parametrize(
    "classes, outputs, message",
    [
        (["a", "b"], torch.randn(4, 3), r"outputs of shape \(4, 3\) don't match 2 classes: .* \(3 names"),
        (["a", "b", "c", "d"], torch.randn(4, 3), r"don't match 4 classes: .* \(3 names, in the order of the columns"),
        (["a", "b", "c"], torch.randn(4, 1), r"one score a row \(a binary model\) but classes has 3 names; give one"),
    ],
)
def test_class_names_that_do_not_match_the_outputs_are_named_with_the_fix(classes, outputs, message):
    writer = MemoryWriter()
    with pytest.warns(LooptrackWarning) as caught:
        with Tracker(None, callbacks=[PRCurves(classes)], writer=writer) as tracker:
            evaluate = tracker.eval_step(lambda out, y: {"outputs": out, "targets": y})
            with tracker.validation():
                evaluate(outputs, torch.tensor([0, 1, 1, 0]))
    text = " | ".join(str(w.message) for w in caught)
    assert "PRCurves: " in text
    assert re.search(message, text), text
    assert "all left out for the reason reported above" in text
    assert writer.tags("pr_curve") == set()


def test_duplicate_class_names_are_refused():
    with pytest.raises(ValueError, match=r"PRCurves: classes has 'cat' more than once; .* own name"):
        PRCurves(["cat", "dog", "cat"])
