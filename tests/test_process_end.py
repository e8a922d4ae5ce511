"""Real processes: what is logged survives exit, SIGTERM, SIGINT and exceptions."""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import PYTHON, load_run, scalar_series

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    from trackers import Tracker
    from callbacks import Callback, LossLogger, PRCurves

    class EndMarker(Callback):
        def on_train_end(self, state):
            state.writer.scalar("end/marker", 1.0, state.step)

    log_dir, mode = sys.argv[1], sys.argv[2]
    ready = Path(log_dir + ".ready")
    tracker = Tracker(None, callbacks=[LossLogger(every_n_steps=10), PRCurves(["a", "b"]), EndMarker()],
                      writer=log_dir)
    if mode != "no-with":
        tracker.__enter__()
    step = tracker.train_step(lambda v: torch.tensor(v))
    try:
        for i in range(100):
            step(float(i))
        evaluate = tracker.eval_step(lambda: {"outputs": torch.tensor([[2.0, 0.0], [0.0, 1.0]]),
                                              "targets": torch.tensor([0, 1])})
        evaluate()
        ready.write_text("ok")
        if mode == "raise":
            raise RuntimeError("loop died")
        if mode in ("wait", "no-with"):
            if mode == "no-with":
                sys.exit(0)  # never closed: atexit must flush and end the run
            time.sleep(60)
    except BaseException as error:
        tracker.__exit__(type(error), error, None)
        raise
    tracker.__exit__(None, None, None)
    """
)


def _start(tmp_path: Path, env: dict[str, str], mode: str) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log_dir = tmp_path / "run"
    process = subprocess.Popen(
        [PYTHON, str(script), str(log_dir), mode], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return process, log_dir


def _wait_ready(process: subprocess.Popen, log_dir: Path) -> None:
    ready = Path(str(log_dir) + ".ready")
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "child never got ready"
        time.sleep(0.05)


def _logged_everything(log_dir: Path) -> None:
    assert [s for s, _ in scalar_series(log_dir, "train/loss")] == list(range(9, 100, 10))
    assert scalar_series(log_dir, "end/marker") == [(99, 1.0)]
    assert sorted(load_run(log_dir).PluginTagToContent("pr_curves")) == ["pr_curve/a", "pr_curve/b"]


def test_sigterm_flushes_ends_the_run_and_dies_by_the_signal(tmp_path, subprocess_env):
    process, log_dir = _start(tmp_path, subprocess_env, "wait")
    _wait_ready(process, log_dir)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM
    _logged_everything(log_dir)


def test_sigint_flushes_and_raises_keyboard_interrupt(tmp_path, subprocess_env):
    process, log_dir = _start(tmp_path, subprocess_env, "wait")
    _wait_ready(process, log_dir)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "KeyboardInterrupt" in stderr
    _logged_everything(log_dir)


def test_exception_propagates_after_the_run_is_ended(tmp_path, subprocess_env):
    process, log_dir = _start(tmp_path, subprocess_env, "raise")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "RuntimeError: loop died" in stderr
    _logged_everything(log_dir)


def test_a_tracker_never_closed_is_ended_at_exit(tmp_path, subprocess_env):
    process, log_dir = _start(tmp_path, subprocess_env, "no-with")
    process.communicate(timeout=60)
    assert process.returncode == 0
    _logged_everything(log_dir)
