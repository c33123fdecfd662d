"""A 5x5 router grid built through the plan and the batched rtnetlink executor.

Checks the kernel objects against the plan (read back with pyroute2) and
that teardown leaves nothing. Reachability needs the engine in the wire
namespace and is tested with it elsewhere.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from pyroute2 import IPRoute

from emulator.bench.grid import grid_topology
from emulator.errors import TestbedError
from emulator.network import kernel, rtnl
from emulator.network.exec import popen_in_node
from emulator.network.state import RunState
from emulator.network.network import Network
from tests.integration.conftest import netns_leftovers, requires_root

pytestmark = [pytest.mark.root, requires_root]


def ipr_in(netns: str) -> IPRoute:
    with kernel.in_netns(netns):
        return IPRoute()


def test_grid_5x5_matches_its_plan_and_tears_down(run_state: RunState) -> None:
    net = Network.build(grid_topology(5, 5), run_state, rx_cpus="1")
    plan = net.plan
    assert plan is not None
    prefix = run_state.prefix
    assert netns_leftovers(prefix) == sorted(ns.name for ns in plan.namespaces)
    assert len(plan.namespaces) == 28 and len(plan.veths) == 84

    # every wire end: at its assigned index, MAC and MTU, up
    with ipr_in(net.wire_netns) as ipr:
        links = {link.get_attr("IFLA_IFNAME"): link for link in ipr.get_links()}
    for v in plan.veths:
        link = links[v.wire_ifname]
        assert (link["index"], link.get_attr("IFLA_ADDRESS"), link.get_attr("IFLA_MTU")) == (
            v.wire_ifindex, v.wire_mac, v.wire_mtu)
        assert link["flags"] & rtnl.IFF_UP

    # every node side: index, MAC, MTU, up, and the link-local the plan predicted
    for ns in plan.namespaces[1:]:
        with ipr_in(ns.name) as ipr:
            links = {link.get_attr("IFLA_IFNAME"): link for link in ipr.get_links()}
            local = {(a["index"], a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr(family=10)}
        assert links["lo"]["flags"] & rtnl.IFF_UP
        for v in plan.of_netns("veths", ns.name):
            link = links[v.ifname]
            assert (link["index"], link.get_attr("IFLA_ADDRESS"), link.get_attr("IFLA_MTU")) == (
                v.ifindex, v.mac, v.mtu)
            assert (v.ifindex, v.link_local) in local, (ns.name, v.ifname)

    # one router in the middle: a route, a neighbour and an address really there
    middle = net.node_netns("r2x2")
    route = plan.of_netns("routes", middle)[0]
    neighbour = plan.of_netns("neighbours", middle)[-1]  # a link-local one
    address = plan.of_netns("addresses", middle)[2]  # the first link address
    destination, length = route.prefix.split("/")
    with ipr_in(middle) as ipr:
        # a dump, filtered here (given a dst, pyroute2 asks for a lookup instead)
        table = [r for r in ipr.get_routes(family=2) if r["table"] == 254]
        (found,) = [r for r in table if (r.get_attr("RTA_DST"), r["dst_len"]) == (destination, int(length))]
        assert found.get_attr("RTA_GATEWAY") == route.via and found.get_attr("RTA_OIF") == route.oif
        assert found.get_attr("RTA_PREFSRC") == route.prefsrc and found["proto"] == rtnl.RTPROT_STATIC
        static = [r for r in table if r["proto"] == rtnl.RTPROT_STATIC]
        assert len(static) == len([r for r in plan.of_netns("routes", middle) if ":" not in r.prefix])
        entries = {(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR"), n["ifindex"], n["state"])
                   for n in ipr.get_neighbours(family=10)}
        assert neighbour.address.startswith("fe80:")
        assert (neighbour.address, neighbour.mac, neighbour.ifindex, rtnl.NUD_PERMANENT) in entries
        addresses = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"], a["index"]) for a in ipr.get_addr()}
        ip, plen = address.address.split("/")
        assert (ip, int(plen), address.ifindex) in addresses

    # RPS written in every node namespace (one child process did them all)
    assert plan.rps == ()  # Network.build leaves RPS to steer_receive, as before
    node = "r4x4"
    ifname = net.interfaces[(node, "r3x4-r4x4")]
    proc = popen_in_node(net.node_netns(node), ["cat", f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus"],
                         net.hosts_file, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=20)
    assert int(out.strip().replace(",", ""), 16) == 1

    # a refused request is named, with the kernel's reason
    with rtnl.RtnlSocket(middle) as sock:
        sock.queue(rtnl.new_route(route.prefix, route.via, route.oif, route.prefsrc),
                   f"add route {route.prefix} via {route.via} dev {route.dev}")
        sock.queue(rtnl.set_link(1), "set lo up")
        with pytest.raises(TestbedError, match=rf"cannot add route {route.prefix} via .* in {middle}: File exists"):
            sock.flush()

    assert net.teardown() == []
    assert netns_leftovers(prefix) == []


def test_namespace_in_the_way_fails_cleanly(run_state: RunState) -> None:
    # someone else's namespace with one of the grid's names: the build stops,
    # removes what it made, and leaves that namespace alone
    intruder = f"{run_state.prefix}-r1x1"
    kernel.create_netns(intruder)
    try:
        with pytest.raises(TestbedError, match="already exists"):
            Network.build(grid_topology(2, 2), run_state)
        assert netns_leftovers(run_state.prefix) == [intruder]
        # its record went with the failed create, so teardown removed the run whole
        assert not os.path.exists(run_state.dir)
    finally:
        kernel.remove_netns(intruder)
