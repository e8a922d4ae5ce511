"""looptrack's built-in callbacks, one concern a module.

    from callbacks import Callback, LossLogger
"""

from callbacks.base import EVENTS, Callback
from callbacks.histograms import ParameterHistograms
from callbacks.loss import LossLogger
from callbacks.pr_curves import PRCurves

__all__ = ["EVENTS", "Callback", "LossLogger", "PRCurves", "ParameterHistograms"]
