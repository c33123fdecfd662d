"""`caspian run` for a topology: build it, check end-to-end delay, tear down.

The scenario layer (traffic, timeline, assertions) grows on top of this; for a
plain topology the run pings between the first and last host and compares the
round-trip time with the configured path delay.
"""

from __future__ import annotations

import sys
from typing import Any

from emulator.model.units import format_time
from emulator.scenario.paths import rtt_ns, shortest_path
from emulator.scenario.topology import Topology
from emulator.traffic.ping import ping

#: a ping's RTT on top of the configured path: kernel stacks, the engine's
#: wake-up and ping's own timing (measured here: 0.05–0.3 ms on 2 vCPUs)
RTT_TOLERANCE_MS = 0.5


def endpoints(topology: Topology) -> tuple[str, str]:
    """The first and last host (or node) of a topology."""
    hosts = [n.name for n in topology.nodes if n.role == "host"] or [n.name for n in topology.nodes]
    return hosts[0], hosts[-1]


def run_default(topology: Topology, *, seed: int | None, state_root: str) -> int:
    """Bring the topology up, ping across it, print what was seen; exit code."""
    from emulator.cli import print_stats
    from emulator.testbed import Testbed

    source, target = endpoints(topology)
    path = shortest_path(topology, source, target)
    expected_ms = rtt_ns(topology, source, target) / 1e6
    print(f"caspian: building {topology.name} ({len(topology.nodes)} nodes, {len(topology.links)} links)")
    with Testbed(topology, state_root=state_root, seed=seed) as testbed:
        for link in topology.links:
            print(f"  {link.name}: {link.a.node}->{link.b.node} {link.a_to_b.describe()}")
        print(f"caspian: pinging {target} from {source} along {' - '.join(path)}")
        result = ping(testbed, source, target, count=20, interval_s=0.05)
        stats: dict[str, Any] = testbed.stats()
    print_stats(stats)
    if not result.received:
        print(f"caspian: FAIL: no reply from {target} ({result.sent} sent)", file=sys.stderr)
        return 1
    median = result.median_ms()
    verdict = abs(median - expected_ms) <= RTT_TOLERANCE_MS
    print(f"caspian: RTT {source}<->{target}: median {median:.3f} ms over {result.received}/{result.sent} replies; "
          f"configured path {expected_ms:.3f} ms ({format_time(int(expected_ms * 1e6))}) -> "
          f"{'OK' if verdict else 'FAIL'} (tolerance +{RTT_TOLERANCE_MS} ms)")
    return 0 if verdict else 1
