"""Tools around runs (CLI, doctor, inspect, demo); the core never imports them."""
