"""Fixtures for tests that build real namespaces: skip without root, always clean up."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import pytest

from emulator.model.linkparams import LinkParams
from emulator.network import naming
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


# --------------------------------------------------------------------------
# Testbeds with the engine (tests/integration/test_engine.py, test_cli.py)


def netns_leftovers(prefix: str) -> list[str]:
    """Named namespaces of run `prefix` still present in /run/netns."""
    from emulator.network.kernel import NETNS_RUN_DIR

    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if naming.of_run(prefix, n))
    except FileNotFoundError:
        return []


def pids_mentioning(text: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains `text`."""
    from emulator.network.processes import running

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and running(int(entry)):
            found.append(int(entry))
    return found


@pytest.fixture
def make_testbed(run_root: str) -> Iterator[Callable[..., Any]]:
    """Start Testbeds under this test's private state root; each is stopped and checked after the test.

    After the test: teardown reports no problem, no namespace of the run's
    prefix is left, its engine process is gone and its run directory removed.
    """
    from emulator.network.processes import running
    from emulator.testbed import Testbed

    made: list[Any] = []

    def make(topology: Topology, **kwargs: Any) -> Any:
        testbed = Testbed(topology, state_root=run_root, **kwargs)
        testbed.start()
        made.append(testbed)
        return testbed

    try:
        yield make
    finally:
        failures = []
        for testbed in reversed(made):
            if testbed.state is None:
                continue
            prefix, run_dir, engine_pid = testbed.state.prefix, testbed.state.dir, testbed.engine_pid
            problems = testbed.stop()
            if problems:
                failures.append(f"{prefix}: teardown problems {problems}")
            if netns_leftovers(prefix):
                failures.append(f"{prefix}: namespaces left {netns_leftovers(prefix)}")
            if os.path.exists(run_dir):
                failures.append(f"{prefix}: run directory {run_dir} left")
            if engine_pid is not None and running(engine_pid):
                failures.append(f"{prefix}: engine pid {engine_pid} still runs")
        assert not failures, failures


def two_host_topology(link_words: str = "", *, name: str = "pair") -> Topology:
    """Two hosts `left` and `right` joined by one link `left-right` with YAML link fields."""
    from emulator.scenario.loader import parse_topology

    fields = "".join(f"\n    {line}" for line in link_words.splitlines() if line.strip())
    text = (
        f"name: {name}\n"
        "nodes:\n  left: {role: host}\n  right: {role: host}\n"
        f"links:\n  left-right:\n    ends: [left, right]{fields}\n"
    )
    return parse_topology(text, source=f"<{name}>")


def wait_listening(testbed: Any, node: str, port: int, server: Any, timeout_s: float = 10) -> None:
    """Wait until a TCP socket listens on `port` inside `node` (an iperf3 server's control port)."""
    import subprocess
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited early with {server.returncode}")
        check = testbed.popen(node, ["ss", "-Hltn", f"sport = :{port}"], stdout=subprocess.PIPE, text=True)
        try:
            out, _ = check.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            check.kill()
            out, _ = check.communicate()
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} in {node} after {timeout_s} s")


class HostWindow:
    """The host's CPU steal and pressure over a timed check (emulator.measure.host)."""

    def __init__(self) -> None:
        from emulator.measure.host import HostSampler

        self._sampler = HostSampler()
        self.load: Any = None

    def __enter__(self) -> "HostWindow":
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.load = self._sampler.stop()


def fail_or_inconclusive(window: HostWindow, what: str) -> None:
    """A timing check failed: fail the test, or skip it as inconclusive when the host
    was loaded past the thresholds the scenario verdicts use (docs/verdicts.md:
    steal > 5 % in a sampling interval or CPU pressure > 25 % over the check), since
    then the machine, not the emulator, can have made the figure."""
    from emulator.measure.fidelity import PRESSURE_LIMIT_PCT, STEAL_LIMIT_PCT

    load = window.load
    steal = max([s for _, _, s, _ in load.intervals] or [load.steal_pct])
    if steal > STEAL_LIMIT_PCT:
        pytest.skip(f"inconclusive: {what}; host CPU steal reached {steal:.1f} % (limit {STEAL_LIMIT_PCT:g} %)")
    if load.pressure_pct is not None and load.pressure_pct > PRESSURE_LIMIT_PCT:
        pytest.skip(f"inconclusive: {what}; tasks waited for a CPU {load.pressure_pct:.0f} % of the check "
                    f"(limit {PRESSURE_LIMIT_PCT:g} %)")
    pytest.fail(what + f" (host quiet: steal {steal:.1f} %, CPU pressure {load.pressure_pct} %)")
