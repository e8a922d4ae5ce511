"""The run: the Tracker, events and their dispatch, state, forward capture, lifecycle hooks, distributed."""
