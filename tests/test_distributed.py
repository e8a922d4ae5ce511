"""Two real processes on the gloo backend: one run from rank zero, reductions only where asked."""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap

import numpy as np
import pytest
import torch
from conftest import PYTHON, load_run, scalar_series
from torch.utils.tensorboard import SummaryWriter

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist
    from trackers import Tracker
    from callbacks import LossLogger, PRCurves

    log_dir, report = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    calls = {"all_reduce": 0}
    real_all_reduce = dist.all_reduce
    def counting_all_reduce(*args, **kwargs):
        calls["all_reduce"] += 1
        return real_all_reduce(*args, **kwargs)
    dist.all_reduce = counting_all_reduce

    callbacks = [LossLogger(every_n_steps=5, reduce="mean"), PRCurves(classes=["a", "b", "c"])]
    with Tracker(None, callbacks=callbacks, writer=log_dir) as tracker:
        train = tracker.train_step(lambda v: torch.tensor(v))
        evaluate = tracker.eval_step(lambda out, y: {"outputs": out, "targets": y, "loss": torch.tensor(1.0 + rank)})
        for step in range(12):
            train(float(rank * 10 + step))
            if step == 5:
                collectives_after_6_steps = calls["all_reduce"]
        generator = torch.Generator().manual_seed(rank)
        with tracker.validation():
            for _ in range(3):
                evaluate(torch.randn(16, 3, generator=generator), torch.randint(0, 3, (16,), generator=generator))
    json.dump({"rank": rank, "after_6_steps": collectives_after_6_steps, "total": calls["all_reduce"],
               "writer": [type(s).__name__ for s in tracker.writer.sinks]}, open(report, "w"))
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_write_one_run_with_reduced_values(tmp_path, subprocess_env):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    log_dir = tmp_path / "run"
    env = dict(subprocess_env, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    processes = [
        subprocess.Popen(
            [PYTHON, str(script), str(log_dir), str(tmp_path / f"rank{rank}.json")],
            env=dict(env, RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [r["writer"] for r in reports] == [["TensorBoardSink"], []]  # rank 1: a writer with no sinks
    for report in reports:
        assert report["after_6_steps"] == 1  # one all-reduce at the logged step 4, none on the other steps
        assert report["total"] == 2 + 1 + 1  # steps 4 and 9, the validation loss, the PR counts (one packed sum)

    event_files = [p for p in log_dir.rglob("events.out.tfevents.*")]
    assert len(event_files) == 1  # one run, from rank zero
    # rank r's loss at step s is 10r + s: the mean over both ranks of steps 0-4 is 5 + 2
    assert scalar_series(log_dir, "train/loss") == [(4, 7.0), (9, 12.0)]
    assert scalar_series(log_dir, "val/loss") == [(11, 1.5)]

    # the curves cover both ranks' validation data, as if computed in one process
    outputs, targets = [], []
    for rank in range(2):
        generator = torch.Generator().manual_seed(rank)
        for _ in range(3):
            outputs.append(torch.randn(16, 3, generator=generator))
            targets.append(torch.randint(0, 3, (16,), generator=generator))
    probs, targets = torch.softmax(torch.cat(outputs), 1), torch.cat(targets)
    reference = SummaryWriter(str(tmp_path / "reference"))
    for i, name in enumerate("abc"):
        reference.add_pr_curve(name, targets == i, probs[:, i], 11)
    reference.close()
    ours, expected = load_run(log_dir), load_run(tmp_path / "reference")
    for name in "abc":
        np.testing.assert_array_equal(
            np.array(ours.Tensors(f"pr_curve/{name}")[0].tensor_proto.float_val),
            np.array(expected.Tensors(name)[0].tensor_proto.float_val),
        )


def test_lightning_ddp_strategy_writes_one_run(tmp_path, subprocess_env):
    pytest.importorskip("lightning.pytorch")
    from conftest import ROOT

    log_dir = tmp_path / "run"
    result = subprocess.run(
        [PYTHON, str(ROOT / "tests" / "lightning_ddp_script.py"), str(log_dir), str(tmp_path / "report")],
        env=subprocess_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PRCurves" not in result.stderr  # the outputs were found on both ranks
    reports = {r: json.loads((tmp_path / f"report.{r}").read_text()) for r in (0, 1)}
    assert reports[0]["writer"] == ["TensorBoardSink"] and reports[1]["writer"] == []
    assert len(list(log_dir.rglob("events.out.tfevents.*"))) == 1
    run = load_run(log_dir)
    assert [e.step for e in run.Scalars("train/loss")] == [1, 3]  # 64 samples, 2 ranks, batches of 8: 4 steps
    assert sorted(run.PluginTagToContent("pr_curves")) == ["pr_curve/a", "pr_curve/b", "pr_curve/c"]
    (curve,) = run.Tensors("pr_curve/a")
    tp_fp_at_zero = np.array(curve.tensor_proto.float_val).reshape(6, -1)[:2, 0]
    assert tp_fp_at_zero.sum() == 64  # every validation sample of both ranks counted once
