"""The network plan as pure data, the grid generator and `caspian up --plan`. No root."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from emulator import cli
from emulator.bench.grid import grid_topology
from emulator.network import naming
from emulator.network.addressing import address_plan, compute_routes
from emulator.network.plan import (
    IFINDEX_BASE,
    LOOPBACK_IFINDEX,
    WIRE_MTU,
    NetworkPlan,
    eui64_link_local,
    layout,
    mac_address,
    network_plan,
)
from emulator.scenario.topology import RoutingConfig
from tests.unit.test_addressing import chain

PREFIX = "csp1a2b3"


def test_chain_counts_and_names() -> None:
    topology = chain()
    plan = network_plan(topology, PREFIX)
    assert [ns.name for ns in plan.namespaces] == [
        f"{PREFIX}-wire", f"{PREFIX}-europe", f"{PREFIX}-sumgait", f"{PREFIX}-aktau", f"{PREFIX}-asia"
    ]
    assert plan.namespaces[0].node is None and ("net.ipv6.conf.all.disable_ipv6", "1") in plan.namespaces[0].sysctls
    assert dict(plan.namespaces[2].sysctls)["net.ipv4.ip_forward"] == "1"  # a router
    assert dict(plan.namespaces[1].sysctls)["net.ipv4.ip_forward"] == "0"  # a host
    counts = plan.counts()
    assert counts["veths"] == 6  # 3 links x 2 ends
    assert counts["addresses"] == 4 * 2 + 6 * 2  # loopbacks and link ends, both families
    assert counts["neighbours"] == 6 * 3  # per end: the far end's IPv4, IPv6 and link-local
    assert counts["offloads_off"] == 12 and counts["rps"] == 0
    interfaces = naming.interface_names(topology)
    routes = compute_routes(topology, address_plan(topology), interfaces)
    assert counts["routes"] == sum(len(table) for table in routes.values()) == 20
    for v in plan.veths:
        assert v.ifname == interfaces[(v.node, v.link)]
        assert (v.mtu, v.wire_mtu) == (1500, WIRE_MTU)
    assert [v.wire_ifname for v in plan.veths] == ["l0a", "l0b", "l1a", "l1b", "l2a", "l2b"]
    # every route names its loopback as source and the index of its device
    index = {(v.netns, v.ifname): v.ifindex for v in plan.veths}
    loopbacks = {a.netns: [] for a in plan.addresses}
    for a in plan.addresses:
        if a.ifname == "lo":
            loopbacks[a.netns].append(a.address.split("/")[0])
    for r in plan.routes:
        assert r.oif == index[(r.netns, r.dev)]
        assert r.prefsrc in loopbacks[r.netns]


def test_grid_3x3_counts() -> None:
    topology = grid_topology(3, 3)
    assert (len(topology.nodes), len(topology.links)) == (11, 14)
    plan = network_plan(topology, PREFIX, rx_cpus="1")
    counts = plan.counts()
    assert counts["namespaces"] == 12
    assert counts["veths"] == 28
    assert counts["addresses"] == 11 * 2 + 28 * 2
    assert counts["neighbours"] == 28 * 3
    # hosts: two defaults each; routers: the 10 other loopbacks and the 14
    # link subnets less their own (26 router ends), in both families
    assert counts["routes"] == 2 * 2 + 2 * (9 * 10 + 9 * 14 - 26) == 384
    assert counts["rps"] == 28 and {r.cpu_mask for r in plan.rps} == {"1"}
    assert plan.rps[0].path == f"/sys/class/net/{plan.veths[0].ifname}/queues/rx-0/rps_cpus"


def test_grid_10x10_size() -> None:
    topology = grid_topology(10, 10)
    assert (len(topology.nodes), len(topology.links)) == (102, 182)
    assert len(topology.routers()) == 100
    with pytest.raises(Exception, match="two corners"):
        grid_topology(1, 1)


def test_assigned_indexes_unique_per_namespace() -> None:
    plan = network_plan(grid_topology(3, 3), PREFIX)
    per_netns: Counter[tuple[str, int]] = Counter()
    for v in plan.veths:
        per_netns[(v.netns, v.ifindex)] += 1
        per_netns[(v.wire_netns, v.wire_ifindex)] += 1
    assert max(per_netns.values()) == 1
    assert min(index for _, index in per_netns) >= IFINDEX_BASE > LOOPBACK_IFINDEX
    # and the requests name the interfaces by exactly those indexes
    assigned = set(per_netns) | {(ns.name, LOOPBACK_IFINDEX) for ns in plan.namespaces}
    for kind in ("links_up", "addresses", "neighbours"):
        for record in getattr(plan, kind):
            assert (record.netns, record.ifindex) in assigned, record
    assert {(r.netns, r.oif) for r in plan.routes} <= assigned


def test_macs_unique_locally_administered_unicast() -> None:
    plan = network_plan(grid_topology(3, 3), PREFIX)
    macs = [v.mac for v in plan.veths] + [v.wire_mac for v in plan.veths]
    assert len(set(macs)) == len(macs)
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01, mac
    # another run, other MACs
    other = network_plan(grid_topology(3, 3), "csp1a2b4")
    assert not set(macs) & {v.mac for v in other.veths}
    assert mac_address("cspfffff", (1 << 18) - 1, "b", wire=True) == "02:ff:ff:ff:ff:ff"
    with pytest.raises(ValueError):
        mac_address(PREFIX, 1 << 18, "a", wire=False)


def test_link_local_is_eui64_of_the_mac() -> None:
    assert eui64_link_local("02:12:34:50:00:00") == "fe80::12:34ff:fe50:0"
    assert eui64_link_local("00:11:22:33:44:55") == "fe80::211:22ff:fe33:4455"
    plan = network_plan(chain(), PREFIX)
    by_netns_dev = {(v.netns, v.ifname): v for v in plan.veths}
    for n in plan.neighbours:
        if n.address.startswith("fe80:"):
            mine = by_netns_dev[(n.netns, n.dev)]
            (far,) = [v for v in plan.veths if v.link == mine.link and v.end != mine.end]
            assert (n.address, n.mac) == (far.link_local, far.mac)


def test_dynamic_routing_routers_get_no_static_routes() -> None:
    topology = dataclasses.replace(chain(), routing=RoutingConfig(protocol="ospf"))
    plan = network_plan(topology, PREFIX)
    assert {r.netns for r in plan.routes} == {f"{PREFIX}-europe", f"{PREFIX}-asia"}
    assert layout(topology).routes["sumgait"] == []


def test_json_round_trip() -> None:
    plan = network_plan(grid_topology(2, 3), PREFIX, rx_cpus="2")
    text = json.dumps(plan.to_dict())
    again = NetworkPlan.from_dict(json.loads(text))
    assert again == plan
    assert again.describe() == plan.describe()
    assert plan.describe().count("\nroute ") == len(plan.routes)


def test_cli_up_plan_prints_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["up", "--plan", "--json"]) == cli.EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["prefix"] == cli.PLAN_PREFIX and data["namespaces"][0]["name"] == f"{cli.PLAN_PREFIX}-wire"
    assert cli.main(["up", "--plan"]) == cli.EXIT_OK
    assert capsys.readouterr().out.startswith(f"# caspian network plan {cli.PLAN_PREFIX}")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n")
    assert cli.main(["up", "--plan", str(bad)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("caspian: ") and err.count("\n") == 1
    assert cli.main(["up", "--plan", str(tmp_path / "missing.yaml")]) == cli.EXIT_BAD_INPUT
