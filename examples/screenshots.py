"""The README's TensorBoard screenshots of ActivationStats, GradientStats and NonFiniteSentinel.

    .venv/bin/python examples/screenshots.py            # runs in runs/inside_the_model, PNGs in examples/images/
    .venv/bin/python examples/screenshots.py --skip-training --out /tmp/shots      # the same runs, new pictures

It trains the tutorial CNN (``trackers.tools.demo.TutorialNet``) on the synthetic
FashionMNIST stand-in, nothing downloaded, in four short runs (about a minute on
a CPU): ``healthy``, ``dead_fc1`` (a large negative bias before fc1's ReLU),
``lr_0.5`` (a learning rate too high: the gradient norm explodes) and
``log_softmax`` (``log(softmax(x))``, whose output turns -inf once the logits
grow). It then serves the runs with TensorBoard on 127.0.0.1, drives a headless
Chromium over the DevTools protocol (stdlib only: ``--remote-debugging-pipe``)
and saves cropped, ~1000 px wide PNGs.

Needs TensorBoard (a dependency of looptrack) and Chromium: ``apt-get install
chromium`` on Debian, or ``--chromium /path/to/chrome``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from callbacks import ActivationStats, GradientStats, LossLogger, NonFiniteSentinel
from trackers import LooptrackWarning, NonFiniteError, Tracker
from trackers.tools.demo import SyntheticFashionMNIST, TutorialNet

IMAGES = Path(__file__).resolve().parent / "images"
LOGDIR = Path("runs/inside_the_model")
WIDTH, HEIGHT = 1000, 900  # the browser's viewport: the images' width, and at least their height


# ---------------------------------------------------------------------------------------------- the four runs
class InspectableNet(TutorialNet):
    """The tutorial CNN with its ReLUs as modules (``relu1`` .. ``relu4``): ActivationStats sees module outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.relu1, self.relu2, self.relu3, self.relu4 = nn.ReLU(), nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.pool(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(x.flatten(1)))
        return self.fc3(self.relu4(self.fc2(x)))


class NaiveLogSoftmax(nn.Module):
    """``log(softmax(x))``: -inf where a probability underflows to 0 (``F.log_softmax`` does not)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.softmax(x, dim=1))


class LogProbsNet(InspectableNet):
    """InspectableNet returning log-probabilities through :class:`NaiveLogSoftmax` (``log_probs``)."""

    def __init__(self) -> None:
        super().__init__()
        self.log_probs = NaiveLogSoftmax()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_probs(super().forward(x))


def dead_fc1() -> nn.Module:
    """A net whose fc1 starts with a bias of -10: relu3 outputs zero for every sample, and no gradient revives it."""
    net = InspectableNet()
    with torch.no_grad():
        net.fc1.bias.fill_(-10.0)
    return net


@dataclass(frozen=True)
class Scenario:
    """One run: its name (its directory, and its name in TensorBoard), SGD's learning rate, the net and the loss."""

    name: str
    lr: float
    make_net: Callable[[], nn.Module] = InspectableNet
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy


SCENARIOS = (
    Scenario("healthy", lr=0.01),
    Scenario("dead_fc1", lr=0.01, make_net=dead_fc1),
    Scenario("lr_0.5", lr=0.5),
    Scenario("log_softmax", lr=0.1, make_net=LogProbsNet, loss=F.nll_loss),
)


def train(scenario: Scenario, log_dir: Path, steps: int, seed: int = 0) -> None:
    """One run: the demo's SGD (momentum 0.9) over ``steps`` batches of 32, stopped by the first NaN/inf."""
    torch.manual_seed(seed)
    loader = DataLoader(SyntheticFashionMNIST(steps * 32, seed), batch_size=32, shuffle=True)
    net = scenario.make_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=scenario.lr, momentum=0.9)
    callbacks = [
        LossLogger(every_n_steps=1),
        ActivationStats(every_n_steps=5),
        GradientStats(every_n_steps=1),  # every step: the lr_0.5 spike lasts a few steps
        NonFiniteSentinel(action="raise"),
    ]
    with warnings.catch_warnings(), Tracker(net, callbacks=callbacks, writer=str(log_dir / scenario.name)) as tracker:
        # the step that goes non-finite logs NaN norms, each with a warning; the NonFiniteError below says it all
        warnings.filterwarnings(
            "ignore", message=r"looptrack: '.*' is (nan|inf|-inf) at step", category=LooptrackWarning
        )

        @tracker.train_step
        def step(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            optimizer.zero_grad()
            loss = scenario.loss(net(inputs), labels)
            loss.backward()
            optimizer.step()
            return loss

        try:
            for inputs, labels in loader:
                step(inputs, labels)
        except NonFiniteError as error:
            print(f"{scenario.name}: stopped at step {error.step}: {error.module!r} produced NaN/inf")


# ---------------------------------------------------------------------------------------------- TensorBoard
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    """The JSON at ``url``; OSError if the server does not answer (yet)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@contextmanager
def tensorboard(log_dir: Path, runs: Sequence[str], timeout: float = 120) -> Iterator[str]:
    """Serve ``log_dir`` on 127.0.0.1 until the block ends; yields the base URL once ``runs`` are all loaded."""
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir), "--host", "127.0.0.1"]
    server = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if set(runs) <= set(get_json(f"{url}/data/runs")):
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"TensorBoard did not serve the runs {list(runs)} at {url}")
            time.sleep(0.5)
        time.sleep(2)  # the runs are listed before every tag's data is read
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ---------------------------------------------------------------------------------------------- Chromium
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


class Browser:
    """A headless Chromium page driven over the DevTools protocol on a pipe (fds 3 and 4 of the browser)."""

    def __init__(self, executable: str, width: int, height: int) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="looptrack-chromium-")
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()

        def pipes_as_3_and_4() -> None:  # in the child, before exec
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self._process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            preexec_fn=pipes_as_3_and_4,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._reader = os.fdopen(self._replies, "rb")
        self._next_id = 0
        self._buffer = b""
        self._session: str | None = None
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.send(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, method: str, **params: Any) -> Any:
        """Send one command (to the page once attached) and return its result; events on the way are dropped."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"Chromium: {method} failed: {reply['error']}")
                return reply.get("result", {})

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = self._reader.read1(1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"Chromium: {expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> None:
        """Poll until the JavaScript ``expression`` is truthy (an error counts as not yet: the page may be loading)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.evaluate(expression):
                    return
                error = None
            except RuntimeError as raised:
                error = raised
            if time.monotonic() > deadline:
                raise RuntimeError(f"Chromium: timed out waiting for {expression} (last error: {error})")
            time.sleep(0.25)

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def screenshot(self) -> Image.Image:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def close(self) -> None:
        os.close(self._commands)
        self._reader.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._profile.cleanup()


def find_chromium() -> str | None:
    """The first Chromium or Chrome on PATH."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


# ---------------------------------------------------------------------------------------------- the screenshots
SETTINGS = {  # TensorBoard's stored settings: no smoothing, outliers shown, no settings pane or step table
    "scalarSmoothing": 0,
    "ignoreOutliers": False,
    "timeSeriesSettingsPaneOpened": False,
    "stepSelectorEnabled": False,
    "sideBarWidthInPercent": 18,
    "autoReload": False,
}

DEEP_ALL = """(selector) => (function all(root) {
    const found = [...root.querySelectorAll(selector)];
    for (const element of root.querySelectorAll('*')) if (element.shadowRoot) found.push(...all(element.shadowRoot));
    return found;
})(document)"""
"""A JavaScript function: the elements matching a CSS selector, inside shadow roots too (the text dashboard)."""

LOG_SCALE = """(async () => {
    const pause = () => new Promise(done => setTimeout(done, 400));
    for (const menu of document.querySelectorAll('scalar-card button[aria-label="More line chart options"]')) {
        menu.click();
        await pause();
        [...document.querySelectorAll('[mat-menu-item]')].find(item => item.textContent.includes('log scale')).click();
        await pause();
    }
    return true;
})()"""

HIDE_CARD_BUTTONS = """(() => {
    const style = document.createElement('style');  // the buttons would cut the tags short
    style.textContent = 'scalar-card .controls { display: none !important; }';
    document.head.append(style);
    return true;
})()"""


@dataclass(frozen=True)
class Shot:
    """One image: a TensorBoard dashboard filtered to ``tags`` (and ``runs``), cropped below ``crop``'s elements."""

    file: str
    dashboard: str  # "timeseries" or "text"
    tags: str
    ready: str  # a JavaScript condition on what the page shows, given DEEP_ALL as `all`
    crop: str  # a CSS selector: the image ends below the lowest element it matches
    runs: str = ""
    log_scale: bool = False

    def url(self, base: str) -> str:
        if self.dashboard == "timeseries":
            return f"{base}/?{urllib.parse.urlencode({'tagFilter': self.tags, 'runFilter': self.runs})}#timeseries"
        return f"{base}/#{self.dashboard}&tagFilter={urllib.parse.quote(self.tags)}"


def cards(n: int) -> str:
    """The ``ready`` condition of a time-series page: ``n`` scalar cards with their charts."""
    return f"all('scalar-card .series-view').length === {n}"


SHOTS = (
    Shot(
        "activations.png",
        "timeseries",
        r"relu3/(abs_max|mean|std|zero_fraction)",
        runs="^(healthy|dead_fc1)$",
        ready=cards(4),
        crop="scalar-card",
    ),
    Shot(
        "dead_layer.png",
        "timeseries",
        r"relu\d/dead_fraction",
        runs="^(healthy|dead_fc1|lr_0.5)$",
        ready=cards(4),
        crop="scalar-card",
    ),
    Shot(
        "gradients.png",
        "timeseries",
        "^(gradients/global_norm|train/loss)$",
        runs="^(healthy|lr_0.5)$",
        ready=cards(2),
        crop="scalar-card",
        log_scale=True,
    ),
    Shot(
        "nonfinite.png",
        "text",
        "nonfinite",
        ready="all('tf-markdown-view').some(view => view.shadowRoot.textContent.includes('NonFiniteSentinel'))",
        crop="tf-category-paginated-view:first-of-type",  # not the same card again in the "nonfinite" group
    ),
)


def take(browser: Browser, base: str, shot: Shot) -> Image.Image:
    """Open the shot's page, wait until it shows what it should, and return it cropped below its content."""
    browser.open(shot.url(base))
    browser.wait_for(f"(all => document.body !== null && ({shot.ready}))({DEEP_ALL})")
    time.sleep(2)  # the lines are drawn after the cards appear
    if shot.log_scale:
        browser.evaluate(LOG_SCALE)
    if shot.dashboard == "timeseries":
        browser.evaluate(HIDE_CARD_BUTTONS)
    time.sleep(1)
    bottom = browser.evaluate(
        f"Math.max(...({DEEP_ALL})({json.dumps(shot.crop)}).map(element => element.getBoundingClientRect().bottom))"
    )
    image = browser.screenshot()
    return image.crop((0, 0, image.width, min(image.height, round(bottom) + 16)))


def save(image: Image.Image, path: Path) -> None:
    """Save ``image`` ``WIDTH`` pixels wide as an optimised PNG."""
    if image.width != WIDTH:
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.Resampling.LANCZOS)
    image.save(path, optimize=True)
    print(f"{path}: {image.width}x{image.height}, {path.stat().st_size // 1024} KB")


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", type=Path, default=LOGDIR, help=f"where the runs go (default {LOGDIR})")
    parser.add_argument("--skip-training", action="store_true", help="take the screenshots of the runs in --logdir")
    parser.add_argument("--out", type=Path, default=IMAGES, help=f"where the PNGs go (default {IMAGES})")
    parser.add_argument("--steps", type=int, default=375, help="steps per run (default 375: 12000 images)")
    parser.add_argument("--chromium", default=find_chromium(), help="the browser (default: chromium on PATH)")
    args = parser.parse_args(argv)
    if args.chromium is None:
        parser.error("Chromium not found: apt-get install chromium, or pass --chromium /path/to/chrome")
    if not args.skip_training and any((args.logdir / scenario.name).exists() for scenario in SCENARIOS):
        parser.error(f"{args.logdir} already holds these runs: delete it, or pass --skip-training to reuse them")
    return args


def train_all(log_dir: Path, steps: int) -> None:
    for scenario in SCENARIOS:
        started = time.perf_counter()
        train(scenario, log_dir, steps)
        print(f"{scenario.name}: {time.perf_counter() - started:.0f} s")


def screenshots(log_dir: Path, chromium: str, out: Path) -> None:
    """Serve ``log_dir`` with TensorBoard and save each of SHOTS into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    runs = [scenario.name for scenario in SCENARIOS]
    with tensorboard(log_dir, runs) as base, Browser(chromium, WIDTH, HEIGHT) as browser:
        browser.open(f"{base}/#timeseries")
        browser.wait_for("document.readyState === 'complete'")
        browser.evaluate(f"localStorage.setItem('_tb_global_settings', {json.dumps(json.dumps(SETTINGS))})")
        for shot in SHOTS:
            save(take(browser, base, shot), out / shot.file)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.skip_training:
        train_all(args.logdir, args.steps)
    screenshots(args.logdir, args.chromium, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
