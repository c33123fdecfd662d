"""caspian — a packet-level link emulator and testbed.

Layers, data flowing down only (the README's layout table; each imports
only those before it): errors → model (pure physics, units, registries) →
scenario (YAML → typed objects) → network (namespaces, veths, routes) →
traffic → engine (the Cython fast path) → routing → measure → report →
testbed → run (plans, runner, collector; bench; the pytest plugin) → cli.
"""

__version__ = "0.1.0"
