"""Speed layer: the PyFlink job that publishes provisional per-ad counts."""
