"""Fixtures for tests that build real namespaces: skip without root, always clean up."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from emulator.model.linkparams import LinkParams
from emulator.network.state import RunState
from emulator.network.teardown import teardown
from emulator.scenario.topology import Link, LinkEnd, Node, Topology


def root_skip_reason() -> str | None:
    """Why namespace tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (run the tests as root)"
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces (/proc/self/ns/net is missing)"
    return None


#: apply to root-only tests together with @pytest.mark.root
requires_root = pytest.mark.skipif(root_skip_reason() is not None, reason=root_skip_reason() or "")


@pytest.fixture
def run_root(tmp_path: os.PathLike[str]) -> str:
    """A private state root for this test (never /run/caspian, which real runs use)."""
    return os.path.join(str(tmp_path), "caspian")


@pytest.fixture
def run_state(run_root: str) -> Iterator[RunState]:
    """A fresh uniquely prefixed run; whatever it recorded is removed after the test."""
    run = RunState.create(root=run_root)
    try:
        yield run
    finally:
        problems = teardown(run)
        assert not problems, problems


def chain_topology() -> Topology:
    """The default chain europe — sumgait — aktau — asia, built directly from dataclasses."""

    def link(name: str, a: str, b: str, delay_ns: int) -> Link:
        params = LinkParams(delay_ns=delay_ns)
        return Link(name=name, a=LinkEnd(a), b=LinkEnd(b), a_to_b=params, b_to_a=params, length_km=None)

    return Topology(
        nodes=(Node("europe"), Node("sumgait", role="router"), Node("aktau", role="router"), Node("asia")),
        links=(
            link("europe-sumgait", "europe", "sumgait", 5_000_000),
            link("aktau-sumgait", "sumgait", "aktau", 1_810_000),
            link("aktau-asia", "aktau", "asia", 20_000_000),
        ),
        name="default-chain",
        source="<test>",
    )
