"""Scenario layer: a YAML file parsed and validated into typed, immutable objects.

Nothing is created on the system before a scenario validates.
"""
