"""caspian — a packet-level link emulator and testbed.

Layers, data flowing down only:
scenario (YAML → typed objects) → model (pure physics and units) →
network (namespaces, veths, routes) → engine (the Cython fast path) →
traffic / measure → report.
"""

__version__ = "0.1.0"
