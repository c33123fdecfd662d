"""Measurements of the run itself: the host's load and the testbed's own fidelity."""
