"""Hard-link installed distributions, and everything they require, from this venv into another one.

`make wheel-check` installs the looptrack wheel into a fresh venv, as a user who already has PyTorch does.
PyTorch's CUDA build with its nvidia-* and triton wheels is about 6 GB; installing it a second time writes all of
that again, and once filled the CI machine's disk. Run with the project venv's python, this gives the fresh venv
the same torch by hard links (a copy where the two directories are on different file systems):

    .venv/bin/python .ci/link_installed.py --into /tmp/wheel-check/venv torch torchvision

Each distribution's files are the ones its RECORD lists inside site-packages (its dist-info included), so pip in
the target venv sees them as installed and resolves the wheel's other requirements as usual. Console scripts
(outside site-packages) are left out: they would point at this venv's interpreter.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import shutil
import subprocess
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def requirement_closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions `names` and, transitively, their unconditional requirements."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement this platform's marker skipped at install time
        found[name] = dist
        for line in dist.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(found.values())


def link_tree(dist: metadata.Distribution, target: Path) -> tuple[int, int]:
    """Link (or copy) `dist`'s site-packages files under `target`; returns (files linked, files copied)."""
    linked = copied = 0
    for entry in dist.files or ():
        if entry.parts and entry.parts[0] == "..":
            continue  # console scripts and data outside site-packages
        source = Path(str(dist.locate_file(entry)))
        if not source.is_file():
            continue  # RECORD may list a .pyc that was never written
        destination = target / entry
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            continue
        try:
            os.link(source, destination)
            linked += 1
        except OSError:
            shutil.copy2(source, destination)
            copied += 1
    return linked, copied


def site_packages(venv: Path) -> Path:
    """The target venv's purelib directory, as its own interpreter reports it."""
    query = "import sysconfig; print(sysconfig.get_path('purelib'))"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", query], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--into", type=Path, required=True, help="the venv to link into")
    parser.add_argument("names", nargs="+", help="distributions installed in this interpreter's environment")
    args = parser.parse_args()
    target = site_packages(args.into)
    dists = requirement_closure(args.names)
    linked = copied = 0
    for dist in dists:
        n_linked, n_copied = link_tree(dist, target)
        linked, copied = linked + n_linked, copied + n_copied
    print(f"   {len(dists)} distributions into {target}: {linked} files hard-linked, {copied} copied")


if __name__ == "__main__":
    main()
