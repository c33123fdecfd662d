"""pytest plugin (entry point `pytest11`: caspian): failover tests against a real testbed.

    def test_cut(caspian_testbed):
        tb = caspian_testbed("scenarios/europe_asia_corridor.yaml")
        assert "sumgait" in tb.path("fra-host", "urumqi-host")
        tb.cut("aktau-sumgait")
        tb.wait_path("fra-host", "urumqi-host", through="moscow")
        assert tb.probe("fra-host", "urumqi-host", seconds=2)["loss_pct"] < 1

`caspian_testbed(path_or_scenario, **testbed_kwargs)` brings up a testbed
(routing daemons converged) from a scenario file, a `Scenario` or a
`Topology` under the test's own state root, and tears it down after the
test whether it passed or failed. Tests using the fixture are skipped, with
the reason, when not run as root or, for a scenario with a routing
protocol, when BIRD 2 is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any, Callable, Iterator

import pytest


def skip_reason(dynamic_routing: bool = True) -> str | None:
    """Why a caspian testbed cannot run here, or None."""
    if os.geteuid() != 0:
        return "caspian testbeds need root (network namespaces): run pytest as root"
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces"
    if dynamic_routing:
        for name in ("bird", "birdc"):
            if shutil.which(name) is None and not os.access(f"/usr/sbin/{name}", os.X_OK):
                return f"{name} (BIRD 2) is not installed: apt-get install bird2"
    return None


class CaspianTestbed:
    """A started `emulator.testbed.Testbed` with helpers for failover tests (attribute access falls through)."""

    def __init__(self, testbed: Any) -> None:
        self.testbed = testbed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.testbed, name)

    # cut / restore / set / stats / popen come from the Testbed

    def run(self, scenario: Any = None) -> Any:
        """Play the scenario's traffic, timeline and assertions on this testbed and
        judge them as CI should: a failed assertion fails the test (naming each),
        an inconclusive run (the machine, not the network, could have flipped an
        assertion: docs/verdicts.md) skips it with the reason; the Report."""
        from emulator.run import execute

        scenario = scenario or self.testbed.scenario
        if scenario is None:
            raise RuntimeError("this testbed was made from a topology: pass a Scenario to run()")
        report = execute(self.testbed, scenario)
        if report.verdict == "fail":
            lines = [f"{a.metric} {a.bound}: {a.message()}" for a in report.failed] + report.errors
            raise AssertionError("caspian scenario failed: " + "; ".join(lines))
        if report.verdict == "inconclusive":
            pytest.skip("caspian verdict inconclusive: " + "; ".join(f"{a.metric}: {a.reason}"
                                                                       for a in report.inconclusive))
        return report

    def probe(self, src: str, dst: str, seconds: float = 2.0, rate: float = 1000, size: int = 64) -> dict[str, Any]:
        """Send caspian probes from `src` to `dst` for `seconds`; the analysed metrics (as `probe.*` in a report).

        The probes run as a scenario of their own on this testbed (one probe
        stream, no timeline), through the same runner `caspian run` uses."""
        from emulator.run import execute
        from emulator.scenario.scenario import Scenario, TrafficSpec

        spec = TrafficSpec("probe", "probe", src, dst, rate_pps=rate, size=size)
        scenario = Scenario(self.testbed.topology, int(seconds * 1e9), traffic=(spec,), source="<probe>")
        report = execute(self.testbed, scenario)
        if report.errors:
            raise RuntimeError(f"probes {src} -> {dst} failed: " + "; ".join(report.errors))
        return {key[len("probe."):]: value for key, value in report.metrics.items() if key.startswith("probe.")}

    def trace(self, src: str, dst: str) -> dict[str, Any]:
        """One trace (emulator.routing.trace) from `src` to `dst`: {"path": [nodes], "rtt_ms": [...], "reached"}."""
        from emulator.routing.trace import address_owners, hops_to_nodes, trace_argv

        proc = self.testbed.popen(src, trace_argv(dst), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"trace {src} -> {dst} failed: {err.decode(errors='replace')[-300:]}")
        data = json.loads(out)
        path = hops_to_nodes(data["hops"], address_owners(self.testbed.network.addresses), src)
        return {"path": path, "rtt_ms": data["rtt_ms"], "reached": data["reached"]}

    def path(self, src: str, dst: str) -> list[str]:
        """The nodes a packet from `src` to `dst` passes, `src` first (TTL-limited probes, hop by hop)."""
        return self.trace(src, dst)["path"]

    def wait_path(self, src: str, dst: str, *, through: str | None = None, avoiding: str | None = None,
                  timeout_s: float = 10.0) -> list[str]:
        """Trace until the path passes `through` and not `avoiding`; the path (AssertionError after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            path = self.path(src, dst)
            if (through is None or through in path) and (avoiding is None or avoiding not in path) and path[-1] == dst:
                return path
            if time.monotonic() > deadline:
                raise AssertionError(f"path {src} -> {dst} is {' > '.join(path)} after {timeout_s:g} s "
                                     f"(wanted through {through}, avoiding {avoiding})")
            time.sleep(0.2)

    def _routing(self) -> Any:
        if self.testbed.routing is None:
            raise RuntimeError("this testbed runs no routing daemons (routing: static)")
        return self.testbed.routing

    def routes(self, router: str) -> list[dict[str, Any]]:
        return self._routing().routes(router)

    def bfd_sessions(self, router: str) -> list[dict[str, Any]]:
        return self._routing().bfd_sessions(router)

    def ospf_neighbours(self, router: str, *, ipv6: bool = False) -> list[dict[str, Any]]:
        return self._routing().ospf_neighbours(router, ipv6=ipv6)


@pytest.fixture
def caspian_testbed(tmp_path: Any) -> Iterator[Callable[..., CaspianTestbed]]:
    """A factory: `caspian_testbed(path_or_scenario, **Testbed kwargs)` -> a started CaspianTestbed, torn down after."""
    from emulator.scenario.loader import load_scenario
    from emulator.scenario.scenario import Scenario
    from emulator.testbed import Testbed

    made: list[Any] = []
    root = os.path.join(str(tmp_path), "caspian")

    def make(source: Any, **kwargs: Any) -> CaspianTestbed:
        scenario = load_scenario(str(source)) if isinstance(source, (str, os.PathLike)) else source
        topology = scenario.topology if isinstance(scenario, Scenario) else scenario
        reason = skip_reason(topology.dynamic_routing)
        if reason:
            pytest.skip(reason)
        testbed = Testbed(scenario, state_root=root, **kwargs)
        made.append(testbed)
        testbed.start()
        return CaspianTestbed(testbed)

    try:
        yield make
    finally:
        problems = []
        for testbed in reversed(made):
            problems += testbed.stop()
        assert not problems, f"caspian teardown problems: {problems}"
