"""looptrack's built-in callbacks, one concern a module.

from callbacks import Callback, LossLogger
"""

from callbacks.activation_stats import ActivationStats
from callbacks.base import EVENTS, Callback, Every, FirstStep, every_step
from callbacks.embedding import Embedding
from callbacks.gradient_stats import GradientStats
from callbacks.graph import GraphTrace
from callbacks.histograms import ParameterHistograms
from callbacks.hparams import HParams
from callbacks.image_grid import ImageGrid
from callbacks.learning_rate import LearningRate
from callbacks.loss import LossLogger
from callbacks.nonfinite import NonFiniteSentinel
from callbacks.pr_curves import PRCurves
from callbacks.prediction_figure import PredictionFigure
from callbacks.text import TextLogger

__all__ = [
    "EVENTS",
    "ActivationStats",
    "Callback",
    "Embedding",
    "Every",
    "FirstStep",
    "GradientStats",
    "GraphTrace",
    "HParams",
    "ImageGrid",
    "LearningRate",
    "LossLogger",
    "NonFiniteSentinel",
    "PRCurves",
    "ParameterHistograms",
    "PredictionFigure",
    "TextLogger",
    "every_step",
]
