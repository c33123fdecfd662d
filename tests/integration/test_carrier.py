"""Loss of carrier: a carrier cut takes the link's interfaces down inside both
nodes (as a transponder losing light), the restore brings them back; a silent
cut leaves them up. Checked from inside the nodes over rtnetlink."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pyroute2 import IPRoute

from emulator.network import kernel
from emulator.scenario.default import default_topology
from emulator.traffic.ping import ping
from tests.integration.conftest import requires_root
from tests.integration.test_engine import assert_invariant, needs_ping

pytestmark = [pytest.mark.root, requires_root]

CABLE = "aktau-sumgait"
#: linux/if.h: the driver signals carrier
IFF_LOWER_UP = 0x10000


def carrier(testbed: Any, node: str, link: str) -> tuple[bool, str]:
    """(carrier present, RFC 2863 operstate) of `node`'s interface on `link`, read inside the node."""
    ifname = testbed.network.interfaces[(node, link)]
    with kernel.in_netns(testbed.network.node_netns(node)):
        with IPRoute() as ipr:
            msg = ipr.get_links(ifname=ifname)[0]
    return bool(msg["flags"] & IFF_LOWER_UP), msg.get_attr("IFLA_OPERSTATE")


def wait_for(check: Any, want: Any, timeout_s: float = 2.0) -> Any:
    """Poll `check()` until it returns `want` (carrier changes reach the peer asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


@needs_ping
def test_carrier_cut_takes_both_nodes_interfaces_down_and_restore_brings_them_up(make_testbed: Any) -> None:
    testbed = make_testbed(default_topology())
    ends = ("sumgait", "aktau")
    assert all(carrier(testbed, node, CABLE) == (True, "UP") for node in ends)

    testbed.cut(CABLE)  # silent: frames vanish, interfaces stay up
    assert all(carrier(testbed, node, CABLE) == (True, "UP") for node in ends)
    testbed.restore(CABLE)

    testbed.cut(CABLE, carrier=True)
    for node in ends:
        assert wait_for(lambda: carrier(testbed, node, CABLE)[0], False) is False, f"{node} still has carrier"
        # the operational state follows the carrier through the kernel's linkwatch,
        # which runs deferred (at most once a second): wait for it too
        assert wait_for(lambda: carrier(testbed, node, CABLE)[1] != "UP", True), f"{node} still oper-UP"
    assert ping(testbed, "europe", "asia", count=3, interval_s=0.01).received == 0
    # the access links keep their carrier
    assert carrier(testbed, "europe", "europe-sumgait") == (True, "UP")

    testbed.restore(CABLE)
    for node in ends:
        assert wait_for(lambda: carrier(testbed, node, CABLE), (True, "UP")) == (True, "UP"), node
    assert ping(testbed, "europe", "asia", count=5, interval_s=0.01).received == 5
    assert_invariant(testbed.stats())


def test_scheduled_carrier_cut_follows_the_timeline(make_testbed: Any) -> None:
    testbed = make_testbed(default_topology())
    cut_at = time.time_ns() + 100_000_000
    testbed.schedule([
        {"at_ns": cut_at, "link": CABLE, "kind": "cut", "direction": "both", "mode": "carrier"},
        {"at_ns": cut_at + 200_000_000, "link": CABLE, "kind": "restore", "direction": "both", "mode": "carrier"},
    ])
    assert carrier(testbed, "aktau", CABLE)[0] is True
    time.sleep(0.2)
    assert wait_for(lambda: carrier(testbed, "aktau", CABLE)[0], False) is False
    time.sleep(0.2)
    assert wait_for(lambda: carrier(testbed, "aktau", CABLE), (True, "UP")) == (True, "UP")
    cut, restore = testbed.schedule_status()
    assert cut["carrier_applied_ns"] >= cut_at
    assert restore["carrier_applied_ns"] >= cut_at + 200_000_000
    assert all(d["applied_ns"] is not None for d in cut["directions"].values())
