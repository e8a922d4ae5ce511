"""Lets the scripts run from a checkout without installing it."""

import sys
from pathlib import Path


def add_repo_to_path() -> None:
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
