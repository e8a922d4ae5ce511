"""The layout is the architecture: imports only go down, no private names cross modules, no sink imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("trackers", "callbacks")

# lowest first; a module may import its own layer and the layers below it
LAYERS = [
    ("trackers.errors", "trackers.registry", "trackers.lifecycle", "trackers.optional", "trackers.record_file"),
    ("trackers.tensorboard",),
    ("trackers.writers",),
    ("trackers.core",),
    ("trackers.adapters", "callbacks"),
    ("trackers.tools", "trackers.__main__", "trackers"),
]
SAME_LAYER_APART = [("trackers.adapters", "callbacks")]  # neither imports the other


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    best, best_length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} is in no layer"
    return best


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every import in the file, at any depth."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            found.append((node.lineno, node.module, names))
            for name in names:  # `from trackers import registry` imports the module trackers.registry
                if f"{node.module}.{name}" in MODULES:
                    found.append((node.lineno, f"{node.module}.{name}", []))
    return [item for item in found if item[1].split(".")[0] in PACKAGES]


def _own(name: str) -> bool:
    return name in MODULES


# namedtuple's API, sys._getframe, the aten op that host syncs dispatch, and the model inside torch.compile's
# wrapper (named in the torch.compile FAQ)
PUBLIC_BY_CONVENTION = {"_fields", "_asdict", "_replace", "_make", "_getframe", "_local_scalar_dense", "_orig_mod"}
# autograd's own: a tensor's version counter (its in-place checks), and the engine's queue_callback, which runs code
# when a backward pass ends (DDP and FSDP finish their gradient reduction with it; torch has no public name for it)
PUBLIC_BY_CONVENTION |= {"_version", "_execution_engine"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module):
    problems = []
    for line, target, names in _imports(MODULES[module]):
        if target in PACKAGES and names and all(f"{target}.{name}" in MODULES for name in names):
            continue  # `from trackers import registry`: the module itself is checked as its own entry
        if not _own(target):
            continue
        if _layer(target) > _layer(module):
            problems.append(f"line {line}: {target} is above {module}")
        for left, right in SAME_LAYER_APART:
            for a, b in ((left, right), (right, left)):
                if (module == a or module.startswith(a + ".")) and (target == b or target.startswith(b + ".")):
                    problems.append(f"line {line}: {module} imports {target}; they must stay apart")
    assert not problems, f"{module}: " + "; ".join(problems)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_a_module(module):
    problems = []
    for line, target, names in _imports(MODULES[module]):
        if any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
            problems.append(f"line {line}: imports the private module {target}")
        problems += [
            f"line {line}: imports {target}.{name}"
            for name in names
            if name.startswith("_") and not name.startswith("__")
        ]
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in PUBLIC_BY_CONVENTION
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            problems.append(f"line {node.lineno}: reaches into {ast.unparse(node)}")
    assert not problems, f"{module}: " + "; ".join(problems)


def test_no_sink_imports_another():
    sinks = [name for name in MODULES if name.startswith("trackers.writers.sinks.")]
    assert len(sinks) >= 5
    for sink in sinks:
        others = {target for _, target, _ in _imports(MODULES[sink]) if target in sinks and target != sink}
        assert not others, f"{sink} imports {others}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_opens_with_its_concern(module):
    docstring = ast.get_docstring(ast.parse(MODULES[module].read_text()), clean=False)
    assert docstring and docstring.strip(), f"{module} has no docstring"
    first = docstring.strip().splitlines()[0]
    assert first.endswith((".", ":", ")")) or len(docstring.strip().splitlines()) > 1, (module, first)
