"""Network layer: makes a validated topology real with pyroute2.

Namespaces, veth pairs, addresses, routes, sysctls and offloads; every object
carries the run's unique prefix and is recorded in the run's state directory
so that teardown removes exactly what was created.
"""
