"""The one place that decides whether an "every N steps" hook fires (dispatch applies it; see ``Callback.every``).

Steps are counted from 0, so ``Every(1000)`` fires at steps 999, 1999, ... —
the tutorial's ``if i % 1000 == 999``.
"""

from __future__ import annotations


class Every:
    """A step filter, validated when it is built.

    >>> every = Every(50, owner="LossLogger")
    >>> [s for s in range(200) if every.fires(s)]
    [49, 99, 149, 199]
    """

    __slots__ = ("n", "owner")

    def __init__(self, n: int, *, owner: str = "callback", argument: str = "every_n_steps") -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(
                f"{owner}: {argument} must be a positive integer, got {n!r}; "
                f"use e.g. {argument}=50 to act once every 50 steps"
            )
        self.n = n
        self.owner = owner

    def fires(self, step: int) -> bool:
        """Whether the step with 0-based index ``step`` ends a window of ``n`` steps."""
        return (step + 1) % self.n == 0

    def __repr__(self) -> str:
        return f"Every({self.n})"


class FirstStep:
    """A step filter that fires once, at the first step (index 0).

    >>> [s for s in range(5) if FirstStep().fires(s)]
    [0]
    """

    __slots__ = ()
    n = None

    def fires(self, step: int) -> bool:
        return step == 0

    def __repr__(self) -> str:
        return "FirstStep()"


Schedule = Every | FirstStep
