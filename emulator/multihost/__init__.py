"""Runs across machines (issue 11 part 2, docs/multihost.md).

A coordinator reaches a caspian agent on each machine over an authenticated
channel (`rpc`), measures the underlay between every pair of machines that a
link crosses (`echo`), and checks each crossing link against the underlay
rule (emulator.model.underlay) before anything is built (`coordinator`).
"""
