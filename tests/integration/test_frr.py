"""FRR (zebra, bfdd, ospfd) as the routing daemon: the ring of test_routing.py with `daemon: frr`.

FRR runs SPF at once after a change (BIRD 2 waits for its 1 s tick), so a
cut found by BFD (100 ms x 3) moves the routes in about BFD's detection
time: the issue's target, a data-plane outage of at most 1 s, is checked on
a real run with probes. Then teardown leaves no daemon, namespace, socket or
FRR crash-log directory behind.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest

from emulator.run import execute
from emulator.scenario.loader import parse_scenario
from tests.integration.conftest import netns_leftovers, requires_root
from tests.integration.test_routing import RING


def frr_skip_reason() -> str | None:
    for daemon in ("zebra", "bfdd", "ospfd"):
        if not os.access(f"/usr/lib/frr/{daemon}", os.X_OK):
            return f"FRR's {daemon} is not installed: apt-get install frr (the Makefile does)"
    return None


pytestmark = [pytest.mark.root, requires_root,
              pytest.mark.skipif(frr_skip_reason() is not None, reason=frr_skip_reason() or "")]

FRR_RING = RING.replace("hello: 1s}", "hello: 1s, daemon: frr}")
SCENARIO = FRR_RING + """\
duration: 12s
traffic:
  probe: {kind: probe, from: left, to: right, rate_pps: 500pps}
timeline:
  - {at: 4s, cut: ra-rb}
  - {at: 8s, restore: ra-rb}
assertions:
  - {metric: routing.cut1.outage_ms, at_most: 1000}
  - {metric: routing.cut1.path_after, includes: rc}
  - {metric: routing.restore1.reverts_on_restore, equals: true}
"""
#: BFD 100 ms x 3: the session expires 300 ms after the last packet it got,
#: which left its peer up to one interval (less BFD's jitter) before the cut;
#: 100 ms of room above for a busy CPU delaying the daemon (the dead timer would take 4 s)
BFD_DETECT_MS = (150, 400)
#: from BFD down to the last kernel route change: SPF at once (throttle 0 ms), flooding
#: over a 2 ms and a 10 ms link, FIB updates; measured 30-45 ms
SPF_AND_FIB_MS = 150


def test_frr_ring_fails_over_within_a_second(make_testbed: Callable[..., Any]) -> None:
    scenario = parse_scenario(SCENARIO, source="<frr-ring>")
    testbed = make_testbed(scenario)
    routing = testbed.routing
    plan = testbed.network.addresses
    assert testbed.convergence_s is not None and testbed.convergence_s < 30
    print(f"FRR ring converged (routes and BFD) in {testbed.convergence_s:.2f} s")

    # daemon state through the API, hosts included (they announce their loopbacks)
    assert sorted((n["interface"], n["state"]) for n in routing.ospf_neighbours("ra")) == [
        ("left", "Full"), ("rb", "Full"), ("rc", "Full")]
    assert sorted((s["interface"], s["state"]) for s in routing.bfd_sessions("ra")) == [("rb", "Up"), ("rc", "Up")]
    right = str(plan.loopback4["right"].network)
    assert any(r["prefix"] == right and r["protocol"] == "ospf" and r["best"] for r in routing.routes("ra"))
    route = routing.kernel_route("ra", right)
    assert route["dev"] == "rb" and route["protocol"] == 188   # RTPROT_OSPF
    assert "Full" in routing.vtysh("rd", "show ip ospf neighbor")

    report = execute(testbed, scenario)
    m = report.metrics
    if report.verdict == "inconclusive":  # the machine, not the network, could have flipped one
        pytest.skip("inconclusive: " + "; ".join(f"{a.metric}: {a.reason}" for a in report.inconclusive))
    assert report.errors == [] and report.passed, (report.failed, report.errors)
    assert BFD_DETECT_MS[0] <= m["routing.cut1.detection_ms"] <= BFD_DETECT_MS[1], m["routing.cut1.detection_ms"]
    assert m["routing.cut1.detected_by"].startswith("bfd ")
    assert m["routing.cut1.convergence_ms"] - m["routing.cut1.detection_ms"] <= SPF_AND_FIB_MS
    assert m["routing.cut1.outage_ms"] <= 1000
    print(f"FRR cut: detection {m['routing.cut1.detection_ms']:.0f} ms, convergence "
          f"{m['routing.cut1.convergence_ms']:.0f} ms, outage {m['routing.cut1.outage_ms']:.0f} ms")
    assert m["routing.cut1.path_after"] == ["left", "ra", "rc", "rd", "right"]


def test_frr_daemons_are_stopped_by_teardown(make_testbed: Callable[..., Any]) -> None:
    from emulator.network.processes import running
    from emulator.scenario.loader import parse_topology

    testbed = make_testbed(parse_topology(FRR_RING, source="<frr-ring>"))
    processes = dict(testbed.routing.processes)
    # every router runs zebra, bfdd, ospfd; the host zebra and ospfd
    assert sorted(k for k in processes if k.startswith(("ra ", "left "))) == [
        "left ospfd", "left zebra", "ra bfdd", "ra ospfd", "ra zebra"]
    run_dir, prefix = testbed.state.dir, testbed.state.prefix
    assert testbed.stop() == []
    assert [key for key, proc in processes.items() if running(proc.pid)] == []
    assert netns_leftovers(prefix) == [] and not os.path.exists(run_dir)
    # a cleanly stopped FRR daemon removes its crash-log directory
    left = [f"{key.split()[1]}.{proc.pid}" for key, proc in processes.items()
            if os.path.exists(f"/var/tmp/frr/{key.split()[1]}.{proc.pid}")]
    assert left == []


def test_caspian_exec_vtysh_on_a_testbed_left_up(run_root: str, tmp_path: Any) -> None:
    """`caspian up` an FRR topology, read a router's state with `caspian exec R -- vtysh`, `caspian down --all`."""
    from emulator.network.state import RunState
    from tests.integration.test_cli import assert_all_gone, caspian

    topology = tmp_path / "frr-ring.yaml"
    topology.write_text(FRR_RING)
    up = caspian(run_root, "up", str(topology))
    runs = RunState.all(run_root)
    prefixes = [run.prefix for run in runs]
    pids = [int(r["pid"]) for run in runs for r in run.of_kind("process")]
    try:
        assert up.returncode == 0, (up.stdout, up.stderr)
        neighbours = caspian(run_root, "exec", "ra", "--", "vtysh", "-c", "show ip ospf neighbor")
        assert neighbours.returncode == 0, neighbours.stderr
        assert neighbours.stdout.count("Full") == 3, neighbours.stdout   # rb, rc and the host left
        peers = caspian(run_root, "exec", "ra", "--", "vtysh", "-c", "show bfd peers brief")
        assert peers.returncode == 0 and peers.stdout.count(" up ") == 2, peers.stdout
    finally:
        down = caspian(run_root, "down", "--all")
        assert down.returncode == 0, (down.stdout, down.stderr)
        assert_all_gone(run_root, prefixes, pids)
