"""Pure model of a link: units, physics, loss and jitter models, presets, traces.

Nothing here needs root or touches the system; every function is unit-tested.
"""
