"""Each framework example runs offline as a real process and writes a run TensorBoard can read."""

from __future__ import annotations

import subprocess

import pytest
from conftest import PYTHON, ROOT, load_run

pytestmark = pytest.mark.slow

EXAMPLES = {
    "lightning_fashion_mnist.py": (["--epochs", "1", "--train-size", "1664"], "lightning.pytorch", 10),
    "ignite_fashion_mnist.py": (["--epochs", "1", "--train-size", "1664"], "ignite", 10),
    "transformers_tiny.py": (["--epochs", "1", "--train-size", "160"], "transformers", 3),
}


@pytest.mark.parametrize("script", list(EXAMPLES))
def test_example_runs(tmp_path, subprocess_env, script):
    arguments, framework, classes = EXAMPLES[script]
    pytest.importorskip(framework)
    log_dir = tmp_path / "runs" / "example"
    result = subprocess.run(
        [PYTHON, str(ROOT / "examples" / script), *arguments, "--logdir", str(log_dir)],
        env=subprocess_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"tensorboard --logdir {tmp_path / 'runs'}" in result.stdout
    run = load_run(log_dir)
    assert run.Scalars("train/loss")
    assert len(run.PluginTagToContent("pr_curves")) == classes
    assert run.Graph().node
