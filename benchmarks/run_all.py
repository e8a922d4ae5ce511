"""``make bench``: run every benchmarks/bench_*.py in turn with this interpreter; fail only if one crashes.

``bench_peers.py`` runs once per model and batch size of issue 7: the
tutorial CNN at batch 64 and 4, resnet18 at batch 16 (about 20 minutes in
all on 2 cores).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNS = {
    "bench_peers.py": [
        ["--model", "cnn", "--batch", "64", "--steps", "500"],
        ["--model", "cnn", "--batch", "4", "--steps", "1000"],
        ["--model", "resnet18", "--batch", "16", "--steps", "300", "--val-samples", "2000"],
    ],
}


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for script in sorted(here.glob("bench_*.py")):
        for args in RUNS.get(script.name, [[]]):
            name = " ".join([script.name, *args])
            print(f"\n===== {name} =====", flush=True)
            if subprocess.run([sys.executable, str(script), *args], cwd=here).returncode != 0:
                failed.append(name)
    if failed:
        print(f"\ncrashed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
