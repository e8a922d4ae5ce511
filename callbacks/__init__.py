"""looptrack's built-in callbacks, one concern a module.

    from callbacks import Callback, LossLogger
"""

from callbacks.base import EVENTS, Callback
from callbacks.loss import LossLogger

__all__ = ["EVENTS", "Callback", "LossLogger"]
