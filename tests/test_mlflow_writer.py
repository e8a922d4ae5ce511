"""The MLflow backend against a real MLflow tracking server on 127.0.0.1 with a sqlite store."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import PYTHON
from helpers import fashion_batches, train_tutorial

from trackers import Tracker
from trackers.tools.demo import CLASSES, SyntheticFashionMNIST, TutorialNet

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path, subprocess_env):
    port = _free_port()
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a loaded machine (CI runs beside other work) starts it slowly
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=1)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"mlflow server did not start: {server.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.5)
    yield uri
    server.terminate()
    server.wait(timeout=30)


def test_a_run_lands_in_mlflow(mlflow_server, tmp_path):
    net = TutorialNet()
    data = SyntheticFashionMNIST(32)
    classes = list(CLASSES)
    config = {
        "writer": {
            "backend": "mlflow",
            "tracking_uri": mlflow_server,
            "experiment": "looptrack-test",
            "run_name": "fashion",
        },
        "callbacks": [
            {"loss": {"every_n_steps": 2}},
            {"prediction_figure": {"classes": classes, "every_n_steps": 4}},
            {"pr_curves": {"classes": classes}},
            {"hparams": {"hparams": {"lr": 0.1, "optimizer": "sgd"}}},
        ],
    }
    with Tracker.from_config(config, net) as tracker:
        train_tutorial(tracker, net, fashion_batches(data, 4, 8), optimizer=None, val=fashion_batches(data, 1, 16))
    client = mlflow.tracking.MlflowClient(mlflow_server)
    run = client.get_run(tracker.writer.sinks[0].run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 3]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [3]
    assert run.data.params == {"lr": "0.1", "optimizer": "sgd"}
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"images", "pr_curves"}
    assert len(client.list_artifacts(run.info.run_id, "pr_curves/pr_curve")) == 10
    local = client.download_artifacts(run.info.run_id, "pr_curves/pr_curve/Bag/step_3.json", str(tmp_path))
    assert set(json.load(open(local))) >= {"precision", "recall", "true_positives"}
    figure = client.list_artifacts(run.info.run_id, "images/predictions vs. actuals")
    assert [a.path.rsplit("/", 1)[-1] for a in figure] == ["step_3.png"]
