"""Smoke-test the *installed* looptrack wheel (run by `make wheel-check`).

Run it with a fresh venv's python, in isolated mode, from a directory outside
the source tree, so `import trackers` can only find the installed wheel:

    cd /tmp/somewhere && /tmp/venv/bin/python -I /path/to/.ci/wheel_smoke.py \
        --source /path/to/checkout --wheel dist/looptrack-*.whl --sdist dist/looptrack-*.tar.gz

Checks, each reported as PASS/FAIL/SKIP in a summary at the end (exit 1 on any FAIL):
  * trackers/callbacks are imported from the venv's site-packages, not from the checkout, and
    looptrack is installed as a regular (not editable) distribution;
  * every .py file under the checkout's trackers/ and callbacks/ is in the wheel, the sdist and
    the installed package (so a subpackage left out of the build shows up here);
  * every module of trackers and callbacks imports (pkgutil.walk_packages); a module may be skipped
    only when an optional dependency it needs (mlflow, moviepy) is not installed;
  * a Tracker attached to a real lightning.pytorch.Trainer, ignite trainer+evaluator and
    transformers.Trainer writes a run whose `train/loss` TensorBoard's EventAccumulator reads back;
  * the `looptrack` console script reads one of those runs back (`looptrack inspect`).
No network: data are random tensors, models are built from configs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

PACKAGES = ("trackers", "callbacks")
OPTIONAL = {"mlflow": "mlflow", "moviepy": "video"}  # import name -> looptrack extra
RESULTS: list[tuple[str, str, str]] = []  # (status, check, detail)


def check(name: str) -> Callable[[Callable[[], str | None]], Callable[[], str | None]]:
    """Run the decorated function now; record PASS with its returned detail, or FAIL with the error."""

    def run(fn: Callable[[], str | None]) -> Callable[[], str | None]:
        started = time.perf_counter()
        try:
            detail = fn() or ""
            status = "PASS"
        except Exception as error:  # noqa: BLE001 - every failure goes into the summary
            traceback.print_exc()
            status, detail = "FAIL", f"{type(error).__name__}: {error}"
        RESULTS.append((status, name, f"{detail} ({time.perf_counter() - started:.1f}s)"))
        print(f"[{status}] {name}: {detail}", flush=True)
        return fn

    return run


def source_files(source: Path) -> list[str]:
    """``trackers/adapters/ignite.py`` etc.: every module file of the checkout's packages."""
    files = []
    for package in PACKAGES:
        for path in sorted((source / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files.append(path.relative_to(source).as_posix())
        if (source / package / "py.typed").is_file():
            files.append(f"{package}/py.typed")  # the typing marker ships too
    if not any(f.startswith("trackers/adapters/") for f in files):
        raise AssertionError(f"no trackers/adapters/*.py under {source}: wrong --source?")
    return files


def missing(expected: list[str], present: set[str]) -> list[str]:
    return [f for f in expected if f not in present]


def load_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def assert_run(run_dir: Path) -> str:
    scalars = load_scalars(run_dir)
    points = scalars.get("train/loss", [])
    if not points:
        raise AssertionError(f"no train/loss points in {run_dir}; scalar tags: {sorted(scalars)}")
    tags = ", ".join(f"{tag}={len(v)}" for tag, v in sorted(scalars.items()))
    return f"scalars {tags}; last train/loss {points[-1][1]:.3f} at step {points[-1][0]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="the checkout the wheel was built from (must not be imported)")
    parser.add_argument("--wheel", type=Path, help="the built wheel, to check its file list")
    parser.add_argument("--sdist", type=Path, help="the built sdist, to check its file list")
    parser.add_argument("--workdir", type=Path, help="where runs go (default: a temporary directory)")
    args = parser.parse_args()
    source = args.source.resolve() if args.source else None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="looptrack-smoke-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    started = time.perf_counter()
    print(f"python {sys.executable} ({sys.version.split()[0]}), cwd {os.getcwd()}, runs in {workdir}", flush=True)

    @check("installed, not the checkout")
    def _installed() -> str:
        site = Path(sysconfig.get_paths()["purelib"]).resolve()
        if sys.prefix == sys.base_prefix:
            raise AssertionError(f"not running in a venv: sys.prefix={sys.prefix}")
        lines = []
        for name in PACKAGES:
            module = importlib.import_module(name)
            location = Path(module.__file__).resolve()
            if not location.is_relative_to(site):
                raise AssertionError(f"{name} imported from {location}, not from the venv's {site}")
            if source is not None and location.is_relative_to(source):
                raise AssertionError(f"{name} imported from the checkout: {location}")
            lines.append(f"{name} -> {location}")
        dist = importlib.metadata.distribution("looptrack")
        direct_url = dist.read_text("direct_url.json")
        if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
            raise AssertionError(f"looptrack is an editable install: {direct_url}")
        return f"looptrack {dist.version}; " + "; ".join(lines)

    if source is not None:
        expected = source_files(source)

        if args.wheel is not None:

            @check(f"wheel has every module ({args.wheel.name})")
            def _wheel() -> str:
                with zipfile.ZipFile(args.wheel) as archive:
                    names = set(archive.namelist())
                absent = missing(expected, names)
                if absent:
                    raise AssertionError(f"missing from the wheel: {absent}")
                adapters = sorted(n for n in names if n.startswith("trackers/adapters/"))
                return f"{len(expected)} files, including {', '.join(adapters)}"

        if args.sdist is not None:

            @check(f"sdist has every module ({args.sdist.name})")
            def _sdist() -> str:
                with tarfile.open(args.sdist) as archive:
                    names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
                absent = missing(expected + ["pyproject.toml"], names)
                if absent:
                    raise AssertionError(f"missing from the sdist: {absent}")
                return f"{len(expected)} files + pyproject.toml"

        @check("installed package has every module")
        def _site() -> str:
            site = Path(sysconfig.get_paths()["purelib"])
            absent = [f for f in expected if not (site / f).is_file()]
            if absent:
                raise AssertionError(f"missing from {site}: {absent}")
            return f"{len(expected)} files in {site}"

    imported: list[str] = []
    skipped: list[str] = []

    @check("every module imports")
    def _imports() -> str:
        failures = []
        for package_name in PACKAGES:
            package = importlib.import_module(package_name)
            names = [package_name] + [
                info.name
                for info in pkgutil.walk_packages(package.__path__, package_name + ".", onerror=failures.append)
            ]
            for name in names:
                if name.rsplit(".", 1)[-1] == "__main__":  # runs the CLI when imported; checked below instead
                    skipped.append(f"{name} (entry point: run as `python -m trackers --help` instead)")
                    continue
                try:
                    importlib.import_module(name)
                    imported.append(name)
                except ImportError as error:
                    cause = error if getattr(error, "name", None) else (error.__cause__ or error)
                    root = (getattr(cause, "name", None) or "").split(".")[0]
                    if root in OPTIONAL and importlib.util.find_spec(root) is None:
                        skipped.append(f"{name} (needs {root}: looptrack[{OPTIONAL[root]}] not installed)")
                    else:
                        failures.append(f"{name}: {type(error).__name__}: {error}")
                except Exception as error:  # noqa: BLE001
                    failures.append(f"{name}: {type(error).__name__}: {error}")
        if failures:
            raise AssertionError("; ".join(map(str, failures)))
        return f"{len(imported)} imported, {len(skipped)} skipped"

    @check("python -m trackers --help")
    def _main_module() -> str:
        done = subprocess.run(
            [sys.executable, "-I", "-m", "trackers", "--help"], capture_output=True, text=True, timeout=120, cwd=workdir
        )
        if done.returncode != 0 or "usage: looptrack" not in done.stdout:
            raise AssertionError(f"exit {done.returncode}: {done.stdout[-500:]} {done.stderr[-2000:]}")
        return "usage printed"

    import torch
    import torch.nn.functional as F

    from callbacks import LossLogger
    from trackers import Tracker

    torch.set_num_threads(min(4, torch.get_num_threads()))

    def tracked(model: torch.nn.Module, name: str) -> tuple[Tracker, Path]:
        run_dir = workdir / name
        return Tracker(model, callbacks=[LossLogger(every_n_steps=2)], writer=str(run_dir)), run_dir

    def batches(n: int, seed: int) -> torch.utils.data.TensorDataset:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 8, generator=generator)
        return torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())

    def loader(n: int, seed: int) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(batches(n, seed), batch_size=8, shuffle=False)

    @check("lightning.pytorch.Trainer")
    def _lightning() -> str:
        import lightning.pytorch as pl

        class Tiny(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.net(x)

            def training_step(self, batch, batch_idx):
                x, y = batch
                return F.cross_entropy(self(x), y)

            def validation_step(self, batch, batch_idx):
                x, y = batch
                loss = F.cross_entropy(self(x), y)
                self.log("val_loss", loss)

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        torch.manual_seed(0)
        model = Tiny()
        trainer = pl.Trainer(
            max_epochs=2,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(workdir / "lightning_root"),
        )
        tracker, run_dir = tracked(model, "lightning")
        tracker.attach(trainer)
        trainer.fit(model, loader(48, 0), loader(16, 1))
        tracker.close()
        return assert_run(run_dir)

    @check("ignite create_supervised_trainer + evaluator")
    def _ignite() -> str:
        from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer

        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        trainer = create_supervised_trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), F.cross_entropy)
        evaluator = create_supervised_evaluator(net)
        val = loader(16, 1)

        @trainer.on(Events.EPOCH_COMPLETED)
        def validate(_engine) -> None:
            evaluator.run(val)

        tracker, run_dir = tracked(net, "ignite")
        tracker.attach(trainer, evaluator=evaluator)
        trainer.run(loader(48, 0), max_epochs=2)
        tracker.close()
        return assert_run(run_dir)

    @check("transformers.Trainer")
    def _transformers() -> str:
        import transformers

        class Tokens(torch.utils.data.Dataset):
            def __init__(self, size: int, seed: int) -> None:
                generator = torch.Generator().manual_seed(seed)
                self.input_ids = torch.randint(5, 100, (size, 12), generator=generator)
                self.labels = self.input_ids[:, 0] % 3

            def __len__(self) -> int:
                return len(self.labels)

            def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
                return {"input_ids": self.input_ids[index], "labels": self.labels[index]}

        torch.manual_seed(0)
        config = transformers.BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=3,
        )
        model = transformers.BertForSequenceClassification(config)
        arguments = transformers.TrainingArguments(
            output_dir=str(workdir / "transformers_out"),
            num_train_epochs=2,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=16,
            learning_rate=1e-3,
            eval_strategy="epoch",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = transformers.Trainer(
            model=model, args=arguments, train_dataset=Tokens(48, 0), eval_dataset=Tokens(16, 1)
        )
        tracker, run_dir = tracked(model, "transformers")
        tracker.attach(trainer)
        trainer.train()
        tracker.close()
        return assert_run(run_dir)

    @check("looptrack console script (looptrack inspect)")
    def _console_script() -> str:
        script = Path(sys.executable).parent / "looptrack"
        if not script.is_file():
            raise AssertionError(f"no console script at {script}")
        done = subprocess.run(
            [str(script), "inspect", str(workdir / "ignite")], capture_output=True, text=True, timeout=120, cwd=workdir
        )
        if done.returncode != 0 or "train/loss" not in done.stdout:
            raise AssertionError(f"exit {done.returncode}: {done.stdout[-1000:]} {done.stderr[-2000:]}")
        return f"{script} lists train/loss"

    @check("looptrack names (one registry: callbacks, sinks, loop adapters)")
    def _names() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "trackers", "names"], capture_output=True, text=True, timeout=120, cwd=workdir
        )
        lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
        if (
            done.returncode != 0
            or "tensorboard" not in lines.get("sinks", "")
            or "lightning" not in lines.get("loop adapters", "")
        ):
            raise AssertionError(f"exit {done.returncode}: {done.stdout[-1000:]} {done.stderr[-2000:]}")
        return "; ".join(f"{kind} {len(names.split(', '))}" for kind, names in lines.items())

    print("\n=== looptrack wheel smoke test ===")
    print(f"modules imported ({len(imported)}): {', '.join(imported)}")
    print(f"modules skipped ({len(skipped)}): {', '.join(skipped) or 'none'}")
    for status, name, detail in RESULTS:
        print(f"  {status}  {name}: {detail}")
    failed = [name for status, name, _ in RESULTS if status == "FAIL"]
    total = time.perf_counter() - started
    if failed:
        print(
            f"FAILED: {len(failed)} of {len(RESULTS)} checks ({', '.join(failed)}) in {total:.1f}s; runs in {workdir}"
        )
        return 1
    print(f"OK: {len(RESULTS)} checks passed in {total:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
