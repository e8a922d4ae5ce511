"""Real processes under faults: SIGKILL loses at most a flush interval, a full disk never hangs training."""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time

import pytest
from conftest import PYTHON, scalar_series

pytestmark = pytest.mark.slow

KILLED = textwrap.dedent(
    """
    import sys, time, torch
    from trackers import Tracker
    from callbacks import LossLogger

    log_dir, progress = sys.argv[1], open(sys.argv[2], "w", buffering=1)
    with Tracker(None, callbacks=[LossLogger(every_n_steps=1)], writer=log_dir) as tracker:
        step = tracker.train_step(lambda v: torch.tensor(v))
        for i in range(100_000):
            step(float(i))
            progress.write(f"{i} {time.time()}\\n")
            time.sleep(0.005)
    """
)

DISK_FULL = textwrap.dedent(
    """
    import resource, signal, sys, torch
    from trackers import Tracker
    from callbacks import LossLogger, ParameterHistograms

    log_dir, strict = sys.argv[1], sys.argv[2] == "strict"
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    net = torch.nn.Linear(200, 200)
    with Tracker(net, callbacks=[LossLogger(every_n_steps=1), ParameterHistograms(every_n_steps=5)],
                 writer=log_dir, strict=strict) as tracker:
        step = tracker.train_step(lambda x: net(x).square().mean())
        for i in range(400):
            step(torch.randn(4, 200))
            if i % 50 == 0:
                tracker.flush()
    print("training finished", tracker.step)
    """
)


def test_sigkill_loses_at_most_one_flush_interval_and_keeps_a_prefix(tmp_path, subprocess_env):
    script = tmp_path / "child.py"
    script.write_text(KILLED)
    log_dir, progress = tmp_path / "run", tmp_path / "progress.txt"
    child = subprocess.Popen(
        [PYTHON, str(script), str(log_dir), str(progress)],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = progress.read_text().splitlines() if progress.exists() else []
        if len(lines) > 2 and float(lines[-1].split()[1]) - float(lines[0].split()[1]) > 4.0:
            break
        time.sleep(0.1)
    killed_at = time.time()
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    done = [(int(s), float(t)) for s, t in (line.split() for line in progress.read_text().splitlines() if " " in line)]
    logged = [step for step, _ in scalar_series(log_dir, "train/loss")]
    assert logged == list(range(len(logged)))  # an unbroken prefix of steps
    flush_interval = 2.0
    must_have = [step for step, t in done if t < killed_at - flush_interval - 1.0]  # 1 s for a loaded machine
    assert must_have and set(must_have) <= set(logged)


@pytest.mark.parametrize("mode", ["lenient", "strict"])
def test_a_full_disk_never_hangs_training(tmp_path, subprocess_env, mode):
    script = tmp_path / "child.py"
    script.write_text(DISK_FULL)
    log_dir = tmp_path / "run"
    result = subprocess.run(
        [PYTHON, str(script), str(log_dir), mode], env=subprocess_env, capture_output=True, text=True, timeout=120
    )
    if mode == "lenient":
        assert result.returncode == 0, result.stderr[-2000:]
        assert "training finished 399" in result.stdout
        assert f"TensorBoardSink({str(log_dir)!r}) could not write" in result.stderr
        assert "File too large" in result.stderr
        assert "record(s) could not be written during this run" in result.stderr
        assert result.stderr.count("could not write") == 1  # reported once, then counted
    else:
        assert result.returncode != 0
        assert "LoggingError" in result.stderr and "File too large" in result.stderr
