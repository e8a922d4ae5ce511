"""Module hooks inside FSDP2: two real gloo processes run fsdp_inside_script.py, where models sharded with
``fully_shard`` (each layer, then the root) train a few steps through ``@tracker.train_step``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import PYTHON, ROOT, load_run

from callbacks.activation_stats import STATS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
        reason="needs torch.distributed with gloo",
    ),
]

SCRIPT = ROOT / "tests" / "fsdp_inside_script.py"
MODULES = ["conv1", "pool", "conv2", "fc1", "fc2", "fc3"]  # TutorialNet's leaf modules, in the order they run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, dict[str, Any]]]:
    """Both ranks' reports (``rank -> scenario -> what it saw``) and the directory of the runs rank 0 wrote."""
    pytest.importorskip("torch.distributed.fsdp", reason="needs FSDP2")
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip("needs FSDP2's torch.distributed.fsdp.fully_shard")
    out = tmp_path_factory.mktemp("fsdp")
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",  # two processes on a small machine: one thread each
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE="2",
    )
    processes = [
        subprocess.Popen(
            [PYTHON, str(SCRIPT), str(out)],
            env=dict(env, RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    errors = []
    try:
        for process in processes:
            # a rank left waiting in a collective fails after the script's 30 s process-group timeout
            _, err = process.communicate(timeout=180)
            errors.append(err)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for rank, (process, err) in enumerate(zip(processes, errors)):
        assert process.returncode == 0, f"rank {rank}:\n{err[-4000:]}"
    return out, {rank: json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)}


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    run = load_run(log_dir)
    return {tag: [(e.step, e.value) for e in run.Scalars(tag)] for tag in run.Tags()["scalars"]}


def _texts(log_dir: Path) -> dict[str, list[tuple[int, str]]]:
    run = load_run(log_dir)
    return {
        tag.removesuffix("/text_summary"): [(e.step, e.tensor_proto.string_val[0].decode()) for e in run.Tensors(tag)]
        for tag in run.Tags()["tensors"]
    }


def _events(log_dir: Path) -> list[Path]:
    return list(log_dir.rglob("events.out.tfevents.*"))


def _scenario(reports: dict[int, dict[str, Any]], name: str) -> dict[int, dict[str, Any]]:
    """What each rank saw in scenario ``name`` (which raised on neither)."""
    for rank, report in reports.items():
        assert "error" not in report[name], f"rank {rank}, {name}:\n{report[name]['error']}"
    return {rank: report[name] for rank, report in reports.items()}


def test_activation_stats_logs_the_models_own_names_with_the_writing_ranks_own_values(fsdp_run):
    out, reports = fsdp_run
    for seen in _scenario(reports, "activations").values():
        assert seen["model"] == "FSDPTutorialNet" and seen["layer"] == "FSDPLinear"  # fully_shard swapped the classes
        assert seen["named_modules"] == ["", *MODULES]  # the names are the bare model's
        assert seen["measured"] == MODULES  # the hooks ran on each rank, every leaf (the twice-called pool once)
        assert seen["warnings"] == []
        # forward hooks below the root: FSDP's (before and after each sharded layer), then one per leaf more
        # while the Tracker is open, then FSDP's again
        assert seen["hooks"] == [10, 10 + len(MODULES), 10]

    log_dir = out / "activations"
    assert len(_events(log_dir)) == 1  # one run, written by rank 0 only
    logged = _scalars(log_dir)
    assert sorted(logged) == sorted(f"activations/{module}/{stat}" for module in MODULES for stat in STATS)
    assert not any("_fsdp" in tag or "_orig_mod" in tag or "module." in tag for tag in logged)

    # rank 0 logs what its own forwards produced: equal to its reference (an unsharded copy of the weights run on
    # its batch), and not to rank 1's, whose batches differ
    ours, theirs = reports[0]["activations"]["references"], reports[1]["activations"]["references"]
    assert sorted(ours) == ["1", "3"]
    for module in MODULES:
        for stat in STATS:
            series = logged[f"activations/{module}/{stat}"]
            assert [step for step, _ in series] == [1, 3]
            for step, value in series:
                assert value == pytest.approx(ours[str(step)][module][stat], rel=1e-6, abs=1e-9), (module, stat, step)
        for step in ("1", "3"):
            assert ours[step][module]["mean"] != pytest.approx(theirs[step][module]["mean"], rel=1e-3)
    # the values are not trivial: the ReLU before the pool leaves zeros (and a dead channel) in its outputs
    pool = ours["1"]["pool"]
    assert 0.05 < pool["zero_fraction"] < 0.9 and pool["dead_fraction"] > 0 and ours["1"]["fc3"]["std"] > 0


def _finding(module: str, step: int, direction: str) -> dict[str, Any]:
    return {
        "module": module,
        "step": step,
        "direction": direction,
        "produced": True,
        "dtype": "torch.float32",
        "unplaced": None,
    }


def _first(report: dict[str, Any]) -> dict[str, Any]:
    first = dict(report["findings"][0])
    first.pop("type_name")
    return first


def test_nonfinite_sentinel_names_a_forward_nan_on_the_rank_where_it_happened(fsdp_run):
    out, reports = fsdp_run
    ranks = _scenario(reports, "forward_nan_on_rank1")  # NonFiniteSentinel(every_n_steps=2)
    assert [ranks[rank]["steps"] for rank in (0, 1)] == [5, 5]  # both ranks trained to the end: no hang
    # rank 1's Fault returned NaN at step 2: its sentinel names it there
    assert _first(ranks[1]) == _finding("fault", 2, "forward")
    assert ranks[1]["findings"][0]["type_name"] == "Fault"
    assert sum("'fault' (Fault) at step 2" in w for w in ranks[1]["warnings"]) == 1
    # the NaN gradients were reduced into every rank's shard of fc1: rank 0's own first NaN is fc1's output at step 3
    assert _first(ranks[0]) == _finding("fc1", 3, "forward")
    assert ranks[0]["findings"][0]["type_name"] == "Linear"  # the user's class, not fully_shard's FSDPLinear
    texts = _texts(out / "forward_nan_on_rank1")  # rank 0 writes the run: its own findings, not rank 1's
    assert [step for step, _ in texts["nonfinite/forward"]] == [3] and "'fc1'" in texts["nonfinite/forward"][0][1]


def test_nonfinite_sentinel_names_a_backward_only_nan_on_the_rank_where_it_happened(fsdp_run):
    out, reports = fsdp_run
    ranks = _scenario(reports, "backward_nan_on_rank0")  # NonFiniteSentinel(every_n_steps=2)
    assert [ranks[rank]["steps"] for rank in (0, 1)] == [5, 5]
    # rank 0's Fault is finite in the forward, its gradient NaN, at step 1
    assert _first(ranks[0]) == _finding("fault", 1, "backward")
    assert _first(ranks[1]) == _finding("fc1", 2, "forward")  # rank 1 saw nothing at step 1
    texts = _texts(out / "backward_nan_on_rank0")
    (backward,) = texts["nonfinite/backward"]
    assert backward[0] == 1 and "backward of module 'fault' (Fault) at step 1" in backward[1]
    assert [step for step, _ in texts["nonfinite/forward"]] == [2]


def test_nonfinite_sentinel_checking_every_step_finds_the_step_and_does_not_hang(fsdp_run):
    """The default (each step checked whole, a non-finite one run again to name the module) cannot run one rank's
    forward again under fully_shard: it must still find the step, and every rank must go on."""
    _, reports = fsdp_run
    ranks = _scenario(reports, "forward_nan_checked_every_step")
    assert [ranks[rank]["steps"] for rank in (0, 1)] == [5, 5]
    first = ranks[1]["findings"][0]
    # found at its step; not placed in a module, and the finding says why and what to use instead
    assert (first["step"], first["module"], first["direction"]) == (2, "", "unknown")
    assert "fully_shard" in first["unplaced"]
    assert ranks[0]["findings"] and 2 <= ranks[0]["findings"][0]["step"] <= 3


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ("gradients_per_layer", "RuntimeError: aten.copy_.default got mixed torch.Tensor and DTensor"),
        ("gradients_global", "AssertionError"),
    ],
)
def test_gradient_stats_under_fully_shard_says_it_failed_once_and_logs_nothing(fsdp_run, scenario, error):
    """What GradientStats does today with DTensor gradients (not what it should do): its logging steps (1 and 3)
    fail as the DTensor norms are copied for the writer; each rank warns once and counts the second failure."""
    out, reports = fsdp_run
    for seen in _scenario(reports, scenario).values():
        assert seen["failures"] == {"GradientStats.on_train_batch_end": 2}
        failed = [w for w in seen["warnings"] if "GradientStats" in w]
        assert len(failed) == 1 and "GradientStats.on_train_batch_end failed at step 1: " + error in failed[0]
    assert not any(tag.startswith("gradients/") for tag in _scalars(out / scenario))
    # the norm a fix must log is the whole gradients' (the same on both ranks), not a rank's shards'
    true, local = (
        [reports[rank][scenario]["true_norms"]["1"] for rank in (0, 1)],
        [reports[rank][scenario]["local_norms"]["1"] for rank in (0, 1)],
    )
    assert true[0] == true[1] and all(norm < true[0] * 0.9 for norm in local)
    assert sum(norm**2 for norm in local) == pytest.approx(true[0] ** 2, rel=1e-5)
