"""The whole SummaryWriter surface through the writer protocol, equal to SummaryWriter's own output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import load_run
from tensorboard.plugins.pr_curve import metadata as pr_metadata
from torch.utils.tensorboard import SummaryWriter

from trackers import LooptrackWarning, MemoryWriter, TensorBoardWriter
from trackers.tensorboard.histogram import TENSORFLOW_EDGES


def _histogram_fields(run, tag):
    (event,) = run.Histograms(tag)
    h = event.histogram_value
    return h.min, h.max, h.num, h.sum, h.sum_squares, list(h.bucket_limit), list(h.bucket)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(torch.randn(10_000), id="normal"),
        pytest.param(torch.randn(5_000) * 1e-9, id="tiny"),
        pytest.param(torch.tensor([0.0, 0.0, 3.0]), id="zeros"),
        pytest.param(
            torch.from_numpy(np.concatenate([TENSORFLOW_EDGES[::3], -TENSORFLOW_EDGES[::4]])).float(), id="on-edges"
        ),
        pytest.param(torch.randn(64, 3, 5, 5).to(torch.float64), id="float64-4d"),
    ],
)
def test_histogram_equals_add_histogram(tmp_path, values):
    reference = SummaryWriter(str(tmp_path / "reference"))
    reference.add_histogram("h", values, 3)
    reference.close()
    writer = TensorBoardWriter(tmp_path / "ours")
    writer.histogram("h", values, 3)
    writer.close()
    ours = _histogram_fields(load_run(tmp_path / "ours"), "h")
    expected = _histogram_fields(load_run(tmp_path / "reference"), "h")
    assert ours[5:] == expected[5:]  # bucket limits and counts, exactly
    low, high, num, total, squares = expected[:5]
    assert (ours[0], ours[1], ours[2], ours[4]) == pytest.approx((low, high, num, squares), rel=1e-12)
    # a sum of huge values of both signs depends on the order of summation: compare within its scale
    assert ours[3] == pytest.approx(total, abs=1e-12 * float(values.double().abs().sum()))


def test_histogram_leaves_out_non_finite_values_and_counts_them(tmp_path):
    values = torch.tensor([1.0, float("nan"), 2.0, float("inf"), -float("inf")])
    writer = TensorBoardWriter(tmp_path)
    writer.histogram("w", values, 0, nonfinite_tag="nonfinite/w")
    writer.histogram("clean", torch.ones(3), 0, nonfinite_tag="nonfinite/clean")
    writer.close()
    run = load_run(tmp_path)
    assert _histogram_fields(run, "w")[2] == 2
    assert [(e.step, e.value) for e in run.Scalars("nonfinite/w")] == [(0, 3.0)]
    assert "nonfinite/clean" not in run.Tags()["scalars"]


def test_all_nan_and_empty_histograms_are_skipped_with_a_warning(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    with pytest.warns(LooptrackWarning) as caught:
        writer.histogram("nan", torch.full((4,), float("nan")), 0)
        writer.histogram("empty", torch.ones(0), 0)
        writer.close()
    text = " ".join(str(w.message) for w in caught)
    assert "'nan' at step 0 has no finite values" in text and "'empty' at step 0: the values are empty" in text
    assert load_run(tmp_path).Tags()["histograms"] == []


def _pr_tensor(run, tag):
    (event,) = run.Tensors(tag)
    return np.array(event.tensor_proto.float_val).reshape(6, -1)


def test_pr_curve_equals_add_pr_curve(tmp_path):
    generator = torch.Generator().manual_seed(1)
    predictions = torch.rand(2_000, generator=generator)
    predictions[:3] = torch.tensor([0.0, 1.0, 0.5])
    labels = torch.rand(2_000, generator=generator) < predictions
    reference = SummaryWriter(str(tmp_path / "reference"))
    reference.add_pr_curve("p", labels, predictions, 2)
    reference.close()
    writer = TensorBoardWriter(tmp_path / "ours")
    writer.pr_curve("p", labels, predictions, 2)
    writer.pr_curve_raw("raw", [3, 1], [2, 0], [0, 2], [0, 2], [0.6, 1.0], [1.0, 0.33], 2, num_thresholds=2)
    writer.close()
    ours_run = load_run(tmp_path / "ours")
    np.testing.assert_array_equal(_pr_tensor(ours_run, "p"), _pr_tensor(load_run(tmp_path / "reference"), "p"))
    content = ours_run.SummaryMetadata("p").plugin_data
    assert content.plugin_name == "pr_curves"
    assert pr_metadata.parse_plugin_metadata(content.content).num_thresholds == 127
    np.testing.assert_allclose(_pr_tensor(ours_run, "raw")[:, 0], [3, 2, 0, 0, 0.6, 1.0], rtol=1e-6)


def test_grouped_and_custom_scalars_images_audio_mesh(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    writer.scalars("loss", {"train": torch.tensor(0.5), "val": 0.75}, 10)
    writer.custom_scalars({"Losses": {"train vs val": ["Multiline", ["loss/train", "loss/val"]]}})
    writer.images("batch", torch.rand(4, 3, 8, 8), 1)
    writer.image_with_boxes("boxed", torch.rand(3, 32, 32), torch.tensor([[2, 2, 20, 20]]), 1, labels=["cat"])
    writer.audio("tone", torch.sin(torch.linspace(0, 100, 8_000)), 1, sample_rate=8_000)
    writer.mesh("cloud", torch.rand(1, 10, 3), step=1)
    writer.close()
    run = load_run(tmp_path)
    assert {e.step for e in run.Images("batch")} == {1}
    assert {e.step for e in run.Images("boxed")} == {1}
    assert run.Audio("tone")[0].sample_rate == 8_000
    assert "cloud_VERTEX" in run.PluginTagToContent("mesh")
    assert "custom_scalars__config__" in run.PluginTagToContent("custom_scalars")
    grouped = load_run(tmp_path / "loss_train")
    assert [(e.step, e.value) for e in grouped.Scalars("loss")] == [(10, 0.5)]


def test_export_scalars_as_json(tmp_path):
    writer = TensorBoardWriter(tmp_path / "run")
    writer.scalar("train/loss", 1.5, 0)
    writer.scalar("train/loss", 0.5, 1)
    writer.scalars("acc", {"val": 0.9}, 1)
    writer.export_scalars(tmp_path / "all.json")
    writer.close()
    exported = json.loads((tmp_path / "all.json").read_text())
    assert [row[1:] for row in exported["train/loss"]] == [[0, 1.5], [1, 0.5]]
    assert [row[1:] for row in exported["acc_val/acc"]] == [[1, pytest.approx(0.9)]]

    memory = MemoryWriter()
    memory.scalar("x", torch.tensor(2.0), 4)
    memory.export_scalars(tmp_path / "memory.json")
    memory.close()
    assert [row[1:] for row in json.loads((tmp_path / "memory.json").read_text())["x"]] == [[4, 2.0]]


def test_histogram_and_pr_curve_do_not_sync_the_caller():
    from trackers.tools.syncs import SyncCounter

    writer = MemoryWriter()
    with SyncCounter() as counter:
        writer.histogram("h", torch.randn(1000), 0)
        writer.pr_curve("p", torch.rand(100) > 0.5, torch.rand(100), 0)
    writer.close()
    assert counter.syncs == 0
    assert writer.tags() == {"h", "p"}


def test_video_without_moviepy_names_the_fix(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "moviepy", None)
    writer = TensorBoardWriter(tmp_path)
    with pytest.warns(LooptrackWarning, match=r"videos need moviepy 1.x: pip install 'looptrack\[video\]'"):
        writer.video("clip", torch.rand(1, 4, 3, 8, 8), 0)
        writer.close()
    memory = MemoryWriter()
    memory.video("clip", torch.rand(1, 4, 3, 8, 8), 0)
    memory.close()
    assert memory.records[0].video.shape == (1, 4, 3, 8, 8)


def test_the_accelerator_path_counts_like_numpy_too():
    """The closed form (log, floor, fix-up, bincount) used on GPUs, checked here on CPU tensors."""
    from trackers.tensorboard.histogram import _bucket_counts_closed_form

    values = np.concatenate(
        [
            np.random.default_rng(0).normal(0, 1, 50_000),
            TENSORFLOW_EDGES[::3],
            -TENSORFLOW_EDGES[::5],
            [0.0, 1e-13, -1e-13, np.nan, np.inf],
        ]
    ).astype(np.float32)
    counts, stats = _bucket_counts_closed_form(torch.from_numpy(values))
    finite = values[np.isfinite(values)].astype(np.float64)
    np.testing.assert_array_equal(counts.numpy(), np.histogram(finite, bins=TENSORFLOW_EDGES)[0])
    assert stats[2].item() == finite.size and stats[5].item() == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32])
def test_the_cpu_path_counts_every_dtype_like_summary_writer(dtype):
    """Counted in numpy without a float64 copy of float32 values: still SummaryWriter's buckets and stats."""
    from trackers.tensorboard.histogram import bucket_counts

    values = torch.cat(
        [torch.randn(20_000, generator=torch.Generator().manual_seed(0)) * 300, torch.tensor([0.0, 1.0, -1.0, 65504.0])]
    ).to(dtype)
    counts, stats = bucket_counts(values)
    as_float64 = values.double().numpy()
    np.testing.assert_array_equal(counts.numpy(), np.histogram(as_float64, bins=TENSORFLOW_EDGES)[0])
    np.testing.assert_allclose(
        stats.numpy()[:5],
        [as_float64.min(), as_float64.max(), as_float64.size, as_float64.sum(), np.square(as_float64).sum()],
        rtol=1e-12,
    )
