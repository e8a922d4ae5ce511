"""Frameworks are imported only when their adapter is used, failing with the pip command."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {
    "lightning.pytorch": "lightning",
    "pytorch_lightning": "lightning",
    "ignite": "ignite",
    "ignite.engine": "ignite",
    "transformers": "transformers",
    "mlflow": "mlflow",
}


def require(module: str) -> ModuleType:
    """``importlib.import_module(module)``, or a ModuleNotFoundError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = EXTRAS.get(module, module.split(".")[0])
        raise ModuleNotFoundError(
            f"looptrack's {extra} support needs {module}: pip install 'looptrack[{extra}]'"
        ) from error
