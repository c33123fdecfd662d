"""Two machines simulated on this host (issue 11): each a wire namespace and an
engine of its own, joined by an underlay forwarded by a third engine, the
links between them carried in VXLAN tunnels. Real namespaces, devices,
engines and pings; each testbed uniquely prefixed and checked for leftovers
(make_testbed)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from emulator.errors import InputError
from emulator.network import kernel
from emulator.network.processes import running
from emulator.scenario.loader import parse_scenario
from emulator.traffic.ping import ping
from tests.integration.conftest import requires_root
from tests.integration.test_engine import needs_ping

pytestmark = [pytest.mark.root, requires_root]

#: the underlay: 5 ms one way, long enough that a run which forgot to take it off
#: (cable RTT +10 ms) is told apart from one that did, whatever the engines' lateness
UNDERLAY_MS = 5.0
CABLE_MS = 20.0
ACCESS_MS = 0.05

CORRIDOR = f"""\
name: two-machines
nodes:
  europe: {{role: host}}
  sumgait: {{role: router}}
  aktau: {{role: router}}
  asia: {{role: host}}
links:
  europe-sumgait: {{ends: [europe, sumgait], delay: {ACCESS_MS}ms}}
  aktau-sumgait: {{ends: [aktau, sumgait], delay: {CABLE_MS}ms}}
  aktau-asia: {{ends: [aktau, asia], delay: {ACCESS_MS}ms}}
placement: {{host1: [europe, sumgait], host2: [aktau, asia]}}
underlay: {{delay: {UNDERLAY_MS}ms}}
"""


def _ip(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", netns, "-o", *args], capture_output=True, text=True, check=True).stdout


@needs_ping
def test_two_machines_each_forward_their_links_and_the_cable_crosses_once_impaired(make_testbed: Any) -> None:
    topology = parse_scenario(CORRIDOR, source="two.yaml").topology
    testbed = make_testbed(topology)
    machines = testbed.machines
    host1, host2 = machines.wire_netns["host1"], machines.wire_netns["host2"]
    # each machine's wire holds its nodes' ends; the cable's ends are a tunnel on both
    # and, on host1 (not the owner: aktau, its a end, is on host2), a bridge to it
    assert "vx1:" in _ip(host1, "link", "show") and "vx1:" in _ip(host2, "link", "show")
    assert "master br1" in _ip(host1, "link", "show", "l1b")
    assert "l1a" in _ip(host2, "link", "show") and "l1a" not in _ip(host1, "link", "show")
    assert "vxlan id 2" in _ip(host2, "-d", "link", "show", "vx1")
    # the underlay was measured: 5 ms a way, and not less (an engine never releases early)
    underlay = testbed.underlay
    assert underlay is not None and underlay.delay_ns >= UNDERLAY_MS * 1e6, underlay
    # three engines, one per machine and the underlay's; each link in one of them
    stats = testbed.stats()
    assert {name: entry["machine"] for name, entry in stats.items()} == \
        {"europe-sumgait": "host1", "aktau-sumgait": "host2", "aktau-asia": "host2"}
    pids = [p.pid for p in [testbed._engine_process, *testbed._more_engines]]
    assert len(pids) == 3 and all(running(pid) for pid in pids)
    # the owner's engine holds the cable's delay less the underlay's; it reads as configured
    held = testbed.engine.clients["host2"].params("aktau-sumgait")
    assert held.delay_ns == CABLE_MS * 1e6 - underlay.delay_ns
    assert testbed.engine.params("aktau-sumgait").delay_ns == CABLE_MS * 1e6

    result = ping(testbed, "europe", "asia", count=20, interval_s=0.02)
    assert result.received == 20, result
    configured = 2 * (2 * ACCESS_MS + CABLE_MS)
    # No frame leaves an engine before its delay: each way the access links' 0.1 ms,
    # the cable's share (20 ms less the measured underlay) and the underlay engine's 5 ms
    assert min(result.rtts_ms.values()) >= configured - 2 * underlay.delay_ns / 1e6 + 2 * UNDERLAY_MS
    # A run that did not take the underlay off would give configured + 2 x 5 ms; this
    # one, configured + the stacks and the engines' lateness. Half way between the two
    # tells them apart unless the median frame were 2.5 ms late a way, which no run
    # judged here came near (release lateness p99 0.6-5.7 ms on a stealing VM is the
    # tail, DESIGN.md; the median is tens of µs).
    assert result.median_ms() < configured + UNDERLAY_MS, result

    # a live change of the crossing link is taken off the same way
    testbed.set("aktau-sumgait", "delay 30ms")
    assert testbed.engine.clients["host2"].params("aktau-sumgait").delay_ns == 30e6 - underlay.delay_ns
    # and one the underlay cannot carry is refused, naming the link
    with pytest.raises(InputError, match="aktau-sumgait a_to_b: the underlay between its machines takes"):
        testbed.set("aktau-sumgait", "delay 1ms")
    problems = testbed.stop()
    assert problems == [] and not any(running(pid) for pid in pids)


def test_an_underlay_slower_than_a_crossing_link_is_refused_and_leaves_nothing(run_root: str) -> None:
    from emulator.testbed import Testbed

    text = CORRIDOR.replace(f"delay: {CABLE_MS}ms", "delay: 1ms")
    before = set(os.listdir(kernel.NETNS_RUN_DIR))
    with pytest.raises(InputError) as refused:
        Testbed(parse_scenario(text, source="two.yaml").topology, state_root=run_root).start()
    assert "link aktau-sumgait a_to_b: the underlay between its machines takes" in str(refused.value)
    assert "\n" not in str(refused.value)
    # the machines' namespaces ('+' is in no node's name) and the run's records are
    # gone with it (other runs' namespaces may come and go meanwhile)
    assert not [n for n in set(os.listdir(kernel.NETNS_RUN_DIR)) - before if "+" in n]
    assert not os.path.exists(run_root) or not os.listdir(run_root)
