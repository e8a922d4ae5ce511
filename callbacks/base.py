"""The callback base class, the event names and the cadences, as callback authors import them (defined in the core)."""

from trackers.core.callback import EVENTS, STEP_EVENTS, Callback, every_step
from trackers.core.schedule import Every, FirstStep

__all__ = ["EVENTS", "STEP_EVENTS", "Callback", "Every", "FirstStep", "every_step"]
