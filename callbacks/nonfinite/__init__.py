"""NonFiniteSentinel: where NaN or inf first appear in training (see :mod:`callbacks.nonfinite.sentinel`)."""

from callbacks.nonfinite.finding import NonFiniteFinding
from callbacks.nonfinite.sentinel import NonFiniteSentinel

__all__ = ["NonFiniteFinding", "NonFiniteSentinel"]
