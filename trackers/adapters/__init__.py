"""Loop adapters: each turns one framework's events into the Tracker's; ``Tracker.attach`` finds them in the registry.

An adapter is a module (or any object) with ``DESCRIPTION`` (what it takes, for messages), ``recognizes(loop)``
(by the class names in the loop's MRO, so nothing is imported for frameworks the user does not use) and
``attach(tracker, loop, **options)``. Third-party adapters register under the ``looptrack.adapters`` entry point.
"""

from __future__ import annotations

from typing import Any


def loop_class(loop: Any, module_prefix: str, class_name: str) -> bool:
    """Whether a class named ``class_name`` from a module under ``module_prefix`` is in ``loop``'s MRO."""
    return any(
        cls.__name__ == class_name
        and (cls.__module__ == module_prefix or cls.__module__.startswith(module_prefix + "."))
        for cls in type(loop).__mro__
    )
