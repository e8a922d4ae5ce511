"""TensorBoard's format and math: event files written and read, histograms, PR curves, graphs; no run logic."""
