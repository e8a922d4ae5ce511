"""The run: the Tracker, events and their dispatch (with every-N), state, forward capture, config, distributed."""
