"""``tracker.attach(loop)``: recognise the loop object and hand it to its adapter.

Recognition looks at the class names in the loop's MRO, so nothing is
imported for frameworks the user does not use.
"""

from __future__ import annotations

from typing import Any

SUPPORTED = (
    "a Lightning Trainer (lightning.pytorch.Trainer or pytorch_lightning.Trainer)",
    "an ignite Engine (ignite.engine.Engine; evaluator=... for validation)",
    "a transformers Trainer (transformers.Trainer)",
)


def _kind(loop: Any) -> tuple[str, str] | None:
    for cls in type(loop).__mro__:
        module, name = cls.__module__, cls.__name__
        if name == "Trainer" and module.startswith("lightning.pytorch"):
            return "lightning", "lightning.pytorch"
        if name == "Trainer" and module.startswith("pytorch_lightning"):
            return "lightning", "pytorch_lightning"
        if name == "Engine" and module.startswith("ignite.engine"):
            return "ignite", "ignite"
        if name == "Trainer" and module.startswith("transformers"):
            return "transformers", "transformers"
    return None


def attach(tracker: Any, loop: Any, **options: Any) -> None:
    """Drive ``tracker`` from ``loop``'s own events (see :meth:`trackers.Tracker.attach`)."""
    kind = _kind(loop)
    if kind is None:
        raise TypeError(f"Tracker.attach: don't know how to follow a {type(loop).__module__}.{type(loop).__name__}. "
                        f"It takes {'; '.join(SUPPORTED)}. For a plain loop, decorate your step with "
                        "@tracker.train_step instead")
    name, package = kind
    if name == "lightning":
        from trackers.adapters.lightning import attach_lightning

        attach_lightning(tracker, loop, package, **options)
    elif name == "ignite":
        from trackers.adapters.ignite import attach_ignite

        attach_ignite(tracker, loop, **options)
    else:
        from trackers.adapters.transformers import attach_transformers

        attach_transformers(tracker, loop, **options)
