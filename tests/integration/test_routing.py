"""BIRD 2 OSPF + BFD in router namespaces: convergence, failover on a cut, revert on restore.

A ring of four routers, ra-rb-rd (2 ms + 2 ms) and ra-rc-rd (10 ms + 10 ms):
OSPF (v2 for IPv4, v3 for IPv6) must route ra -> rd over rb, move to rc
when ra-rb is cut (BFD detects it in 300 ms, BIRD's OSPF acts on its next
1 s scheduler tick) and come back on restore. (The shipped corridor
scenario, end to end, is tests/integration/test_scenarios.py's.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any, Callable

import pytest

from emulator.scenario.loader import parse_topology
from tests.integration.conftest import netns_leftovers, pids_mentioning, requires_root


def bird_skip_reason() -> str | None:
    for name in ("bird", "birdc"):
        if shutil.which(name) is None and not os.access(f"/usr/sbin/{name}", os.X_OK):
            return f"{name} (BIRD 2) is not installed: apt-get install bird2 (the Makefile does)"
    return None


pytestmark = [pytest.mark.root, requires_root,
              pytest.mark.skipif(bird_skip_reason() is not None, reason=bird_skip_reason() or "")]

RING = """\
name: ring
routing: {protocol: ospf, bfd: {interval: 100ms, multiplier: 3}, hello: 1s}
nodes:
  left: {role: host}
  ra: {role: router}
  rb: {role: router}
  rc: {role: router}
  rd: {role: router}
  right: {role: host}
links:
  left-ra: {ends: [left, ra], delay: 50us}
  ra-rb: {ends: [ra, rb], delay: 2ms}
  rb-rd: {ends: [rb, rd], delay: 2ms}
  ra-rc: {ends: [ra, rc], delay: 10ms}
  rc-rd: {ends: [rc, rd], delay: 10ms}
  rd-right: {ends: [rd, right], delay: 50us}
"""

#: BIRD re-originates its own router-LSA at most every 5 s (RFC 2328
#: MinLSInterval): a topology change sooner after the last one waits for it.
MIN_LS_INTERVAL_S = 5.0
FAILOVER_DEADLINE_S = 2.0
REVERT_DEADLINE_S = 8.0


def _wait_for_dev(routing: Any, node: str, prefix: str, dev: str, deadline_s: float) -> tuple[float, Any]:
    """Poll the kernel route of `prefix` in `node` until it leaves by `dev`; (seconds, route)."""
    start = time.monotonic()
    route = None
    while time.monotonic() - start < deadline_s:
        route = routing.kernel_route(node, prefix)
        if route is not None and route["dev"] == dev:
            return time.monotonic() - start, route
        time.sleep(0.01)
    raise AssertionError(f"{node}: route to {prefix} not via {dev} within {deadline_s} s (last: {route})")


def test_ospf_bfd_ring_converges_fails_over_and_reverts(make_testbed: Callable[..., Any]) -> None:
    topology = parse_topology(RING, source="<ring>")
    testbed = make_testbed(topology)
    routing = testbed.routing
    plan = testbed.network.addresses
    assert routing.missing_routes() == {}
    assert testbed.convergence_s is not None and testbed.convergence_s < 30
    converged_at = time.monotonic()

    # daemon state through the API
    neighbours = routing.ospf_neighbours("ra")
    assert sorted((n["interface"], n["state"]) for n in neighbours) == [("rb", "Full"), ("rc", "Full")]
    # one BFD session per OSPF version and interface: IPv4 link addresses, IPv6 link-local
    sessions = routing.bfd_sessions("ra")
    assert sorted((s["interface"], s["state"]) for s in sessions if ":" not in s["address"]) == [("rb", "Up"), ("rc", "Up")]
    assert sorted((s["interface"], s["state"]) for s in sessions if s["address"].startswith("fe80:")) == [
        ("rb", "Up"), ("rc", "Up")]
    assert sorted((n["interface"], n["state"]) for n in routing.ospf_neighbours("ra", ipv6=True)) == [
        ("rb", "Full"), ("rc", "Full")]
    rd_loopback = str(plan.loopback4["rd"].network)
    rd_loopback6 = str(plan.loopback6["rd"].network)
    assert any(r["prefix"] == rd_loopback and r["protocol"] == "ospf4" for r in routing.routes("ra"))
    # routers carry BIRD's routes only; hosts keep their static default route
    assert routing.kernel_route("ra", rd_loopback)["protocol"] == 12
    assert routing.kernel_route("left", "0.0.0.0/0")["gateway"] == str(plan.link4[("ra", "left-ra")].ip)

    # the short path: ra -> rb
    route = routing.kernel_route("ra", rd_loopback)
    assert route["gateway"] == str(plan.link4[("rb", "ra-rb")].ip) and route["dev"] == "rb"
    assert routing.kernel_route("ra", rd_loopback6)["dev"] == "rb"   # OSPFv3: via rb's link-local address
    for family in ("-4", "-6"):
        ping = testbed.popen("left", ["ping", family, "-c", "3", "-i", "0.2", "-W", "2", "right"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = ping.communicate(timeout=20)[0].decode()
        assert ping.returncode == 0, out

    time.sleep(max(0.0, MIN_LS_INTERVAL_S + 0.5 - (time.monotonic() - converged_at)))
    testbed.cut("ra-rb")
    failover_s, route = _wait_for_dev(routing, "ra", rd_loopback, "rc", FAILOVER_DEADLINE_S)
    assert route["gateway"] == str(plan.link4[("rc", "ra-rc")].ip)
    print(f"failover ra->rd: kernel route moved to rc {failover_s * 1000:.0f} ms after the cut")
    # both BFD sessions on rb (IPv4 and IPv6) go down; the second may expire up to one interval later
    deadline = time.monotonic() + 1.0
    while "Up" in [s["state"] for s in routing.bfd_sessions("ra") if s["interface"] == "rb"]:
        assert time.monotonic() < deadline, routing.bfd_sessions("ra")
        time.sleep(0.05)
    failover6_s, _ = _wait_for_dev(routing, "ra", rd_loopback6, "rc", FAILOVER_DEADLINE_S)
    print(f"failover ra->rd (IPv6): kernel route moved to rc {failover6_s * 1000:.0f} ms after the IPv4 one")

    time.sleep(MIN_LS_INTERVAL_S + 0.5 - failover_s)
    testbed.restore("ra-rb")
    revert_s, route = _wait_for_dev(routing, "ra", rd_loopback, "rb", REVERT_DEADLINE_S)
    assert route["gateway"] == str(plan.link4[("rb", "ra-rb")].ip)
    print(f"revert ra->rd: kernel route back on rb {revert_s * 1000:.0f} ms after the restore")


def test_daemons_are_stopped_by_teardown(make_testbed: Callable[..., Any]) -> None:
    topology = parse_topology(RING, source="<ring>")
    testbed = make_testbed(topology)
    pids = [proc.pid for proc in testbed.routing.processes.values()]
    sockets = dict(testbed.state.get_meta("routing")["sockets"])
    prefix = testbed.state.prefix
    assert set(sockets) == {"ra", "rb", "rc", "rd"}
    assert testbed.stop() == []
    from emulator.network.processes import running

    assert [pid for pid in pids if running(pid)] == []
    assert netns_leftovers(prefix) == []
    assert pids_mentioning(os.path.dirname(next(iter(sockets.values())))) == []


# --- eBGP (no BFD) on the same ring ---------------------------------------------------------

BGP_RING = RING.replace("routing: {protocol: ospf, bfd: {interval: 100ms, multiplier: 3}, hello: 1s}",
                        "routing: {protocol: bgp, hold: 3s, keepalive: 1s}")
#: BGP without BFD notices a cut when the hold timer expires: at most `hold` after the last
#: keepalive that crossed the link; 2 s on top for the withdrawal and the kernel update
BGP_HOLD_S = 3.0
BGP_FAILOVER_DEADLINE_S = BGP_HOLD_S + 2.0
#: on restore: the next connection attempt (connect retry time 2 s, or the error wait of 1..4 s
#: after the hold-timer error), OPEN/KEEPALIVE exchange, then the updates
BGP_REVERT_DEADLINE_S = 10.0


def test_bgp_ring_converges_fails_over_and_reverts(make_testbed: Callable[..., Any]) -> None:
    topology = parse_topology(BGP_RING, source="<bgp-ring>")
    testbed = make_testbed(topology)
    routing = testbed.routing
    plan = testbed.network.addresses
    assert routing.missing_routes() == {} and routing.sessions_down() == {}
    assert testbed.convergence_s is not None and testbed.convergence_s < 30
    print(f"BGP ring converged in {testbed.convergence_s:.2f} s")

    sessions = routing.bgp_sessions("ra")
    assert sorted((s["link"], s["info"].split()[0]) for s in sessions) == [("ra-rb", "Established"), ("ra-rc", "Established")]
    assert routing.bfd_sessions("ra") == []
    rd_loopback = str(plan.loopback4["rd"].network)
    # both paths have an AS path of two hops: the lower router id (rb's) breaks the tie
    assert any(r["prefix"] == rd_loopback and r["protocol"] == "bgp_ra_rb" and r["best"] for r in routing.routes("ra"))
    route = routing.kernel_route("ra", rd_loopback)
    assert route["protocol"] == 12 and route["dev"] == "rb"
    assert route["gateway"] == str(plan.link4[("rb", "ra-rb")].ip)
    ping = testbed.popen("left", ["ping", "-4", "-c", "3", "-i", "0.2", "-W", "2", "right"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = ping.communicate(timeout=20)[0].decode()
    assert ping.returncode == 0, out

    testbed.cut("ra-rb")
    failover_s, route = _wait_for_dev(routing, "ra", rd_loopback, "rc", BGP_FAILOVER_DEADLINE_S)
    assert route["gateway"] == str(plan.link4[("rc", "ra-rc")].ip)
    print(f"BGP failover ra->rd: kernel route moved to rc {failover_s * 1000:.0f} ms after the cut")
    # the hold timer, not anything faster, noticed the cut: BIRD jitters its timers by up to 25 %
    assert failover_s > 0.75 * BGP_HOLD_S - 1.0
    assert [s["info"].split()[0] for s in routing.bgp_sessions("ra") if s["link"] == "ra-rb"] != ["Established"]

    time.sleep(1.0)
    testbed.restore("ra-rb")
    revert_s, route = _wait_for_dev(routing, "ra", rd_loopback, "rb", BGP_REVERT_DEADLINE_S)
    assert route["gateway"] == str(plan.link4[("rb", "ra-rb")].ip)
    print(f"BGP revert ra->rd: kernel route back on rb {revert_s * 1000:.0f} ms after the restore")
