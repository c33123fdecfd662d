"""Address plan, interface names and static routes: pure functions, no root."""

from __future__ import annotations

from ipaddress import ip_interface

import pytest

from emulator.errors import ScenarioError
from emulator.model.linkparams import LinkParams
from emulator.network import naming
from emulator.network.addressing import Route, address_plan, compute_routes, hosts_file_text
from emulator.scenario.topology import Link, LinkEnd, Node, Topology

MS = 1_000_000


def link(name: str, a: str, b: str, delay_ns: int = 0, **ends: str | None) -> Link:
    params = LinkParams(delay_ns=delay_ns)
    return Link(
        name=name,
        a=LinkEnd(a, address=ends.get("a4"), address6=ends.get("a6")),
        b=LinkEnd(b, address=ends.get("b4"), address6=ends.get("b6")),
        a_to_b=params,
        b_to_a=params,
    )


def chain() -> Topology:
    """The default chain: europe — sumgait — (Caspian cable) — aktau — asia."""
    return Topology(
        nodes=(
            Node("europe"),
            Node("sumgait", role="router"),
            Node("aktau", role="router"),
            Node("asia"),
        ),
        links=(
            link("europe-sumgait", "europe", "sumgait", 5 * MS),
            link("caspian", "sumgait", "aktau", 1_810_000),
            link("aktau-asia", "aktau", "asia", 20 * MS),
        ),
    )


def ring() -> Topology:
    """h1 - r1 - r2 - r3 - r4 - r1 (a ring of 4 routers) - h2 on r3.

    r1 to r3: via r2 costs 2 x 1 ms; via r4 costs 1 ms + 10 ms.
    r2 to r4: via r1 (10 ms + 1 ms) or via r3 (1 ms + 1 ms): via r3.
    """
    return Topology(
        nodes=(Node("h1"), Node("r1", "router"), Node("r2", "router"), Node("r3", "router"),
               Node("r4", "router"), Node("h2")),
        links=(
            link("h1-r1", "h1", "r1"),
            link("r1-r2", "r1", "r2", 1 * MS),
            link("r2-r3", "r2", "r3", 1 * MS),
            link("r3-r4", "r3", "r4", 1 * MS),
            link("r4-r1", "r4", "r1", 10 * MS),
            link("r3-h2", "r3", "h2"),
        ),
    )


def by_prefix(routes: list[Route]) -> dict[str, Route]:
    return {route.prefix: route for route in routes}


# --- naming ------------------------------------------------------------------------


def test_prefix_form() -> None:
    for _ in range(50):
        prefix = naming.new_prefix()
        assert naming.is_prefix(prefix) and len(prefix) == 8
    assert not naming.is_prefix("csp12345x")
    assert not naming.is_prefix("cspABCDE")
    assert naming.netns_name("csp3fa9c", "europe") == "csp3fa9c-europe"
    assert naming.wire_netns_name("csp3fa9c") == "csp3fa9c-wire"
    assert naming.wire_ifnames(3) == ("l3a", "l3b")


def test_interface_names_after_peer() -> None:
    names = naming.interface_names(chain())
    assert names[("europe", "europe-sumgait")] == "sumgait"
    assert names[("sumgait", "europe-sumgait")] == "europe"
    assert names[("sumgait", "caspian")] == "aktau"
    assert names[("asia", "aktau-asia")] == "aktau"


def test_interface_names_collide_and_truncate() -> None:
    long = "a-very-long-node-name-indeed"
    topo = Topology(
        nodes=(Node("x", "router"), Node("y"), Node(long), Node("lo")),
        links=(link("1", "x", "y"), link("2", "x", "y"), link("3", "x", long), link("4", "x", "lo")),
    )
    names = naming.interface_names(topo)
    assert names[("x", "1")] == "y"
    assert names[("x", "2")] == "y2"
    assert names[("y", "2")] == "x2"
    assert names[("x", "3")] == long[:15]
    assert names[("x", "4")] == "lo2"  # never the loopback's name
    assert all(len(n) <= 15 for n in names.values())


def test_reserved_and_bad_node_names() -> None:
    with pytest.raises(ScenarioError, match="reserved"):
        naming.check_node_names(Topology(nodes=(Node("wire"),), links=()))
    with pytest.raises(ScenarioError, match="letters"):
        naming.check_node_names(Topology(nodes=(Node("a/b"),), links=()))


# --- address plan --------------------------------------------------------------------


def test_plan_default_chain() -> None:
    plan = address_plan(chain())
    assert plan.link4[("europe", "europe-sumgait")] == ip_interface("198.18.0.1/29")
    assert plan.link4[("sumgait", "europe-sumgait")] == ip_interface("198.18.0.2/29")
    assert plan.link4[("sumgait", "caspian")] == ip_interface("198.18.0.9/29")
    assert plan.link4[("asia", "aktau-asia")] == ip_interface("198.18.0.18/29")
    assert plan.link6[("sumgait", "caspian")] == ip_interface("2001:2:0:1::1/64")
    assert plan.link6[("asia", "aktau-asia")] == ip_interface("2001:2:0:2::2/64")
    assert plan.loopback4["europe"] == ip_interface("198.19.0.1/32")
    assert plan.loopback4["asia"] == ip_interface("198.19.0.4/32")
    assert plan.loopback6["asia"] == ip_interface("2001:2:0:ffff::4/128")


def test_plan_many_links_stay_in_pool() -> None:
    nodes = tuple(Node(f"n{i}", "router") for i in range(301))
    links = tuple(link(f"l{i}", f"n{i}", f"n{i + 1}") for i in range(300))
    plan = address_plan(Topology(nodes=nodes, links=links))
    assert plan.link4[("n33", "l33")] == ip_interface("198.18.1.9/29")  # 33 * 8 = 264 = 1.8
    assert plan.link6[("n299", "l299")] == ip_interface("2001:2:0:12b::1/64")
    assert plan.loopback4["n300"] == ip_interface("198.19.1.45/32")  # 301 = 1 * 256 + 45
    assert len({a.network for a in plan.link4.values()}) == 300


def test_plan_respects_given_addresses() -> None:
    topo = Topology(
        nodes=(Node("a", address="198.19.9.9"), Node("b", address6="2001:2:0:ffff::99/128"), Node("c")),
        links=(
            # slot 0 is taken by the given subnet: the automatic link skips it
            link("given", "a", "b", a4="198.18.0.5/29", b6="2001:2:0:0::7/64"),
            link("auto", "b", "c"),
        ),
    )
    plan = address_plan(topo)
    assert plan.loopback4["a"] == ip_interface("198.19.9.9/32")
    assert plan.loopback6["b"] == ip_interface("2001:2:0:ffff::99/128")
    assert plan.loopback4["c"] == ip_interface("198.19.0.3/32")
    assert plan.link4[("a", "given")] == ip_interface("198.18.0.5/29")
    assert plan.link4[("b", "given")] == ip_interface("198.18.0.1/29")  # first free host of the subnet
    assert plan.link6[("b", "given")] == ip_interface("2001:2::7/64")
    assert plan.link6[("a", "given")] == ip_interface("2001:2::1/64")
    assert plan.link4[("b", "auto")] == ip_interface("198.18.0.9/29")
    assert plan.link6[("b", "auto")] == ip_interface("2001:2:0:1::1/64")


@pytest.mark.parametrize(
    "ends, message",
    [
        ({"a4": "198.18.0.1/29", "b4": "198.18.0.9/29"}, "same subnet"),
        ({"a4": "198.18.0.1/29", "b4": "198.18.0.1/29"}, "same subnet"),
        ({"a4": "not-an-ip"}, "not an IP address"),
        ({"a4": "2001:2::1/64"}, "not an IPv4"),
        ({"a4": "198.18.0.1"}, "no prefix length"),
        ({"a4": "198.18.0.0/29"}, "network or broadcast"),
    ],
)
def test_plan_rejects_bad_addresses(ends: dict[str, str], message: str) -> None:
    topo = Topology(nodes=(Node("a"), Node("b")), links=(link("l", "a", "b", **ends),), source="t.yaml")
    with pytest.raises(ScenarioError, match=message) as info:
        address_plan(topo)
    assert "t.yaml" in str(info.value)


def test_plan_rejects_self_loop() -> None:
    with pytest.raises(ScenarioError, match="to itself"):
        address_plan(Topology(nodes=(Node("a"),), links=(link("l", "a", "a"),)))


def test_hosts_file_lists_loopbacks() -> None:
    text = hosts_file_text(chain(), address_plan(chain()))
    assert "198.19.0.4\tasia\n" in text
    assert "2001:2:0:ffff::4\tasia\n" in text
    assert "127.0.0.1\tlocalhost" in text


# --- routes ----------------------------------------------------------------------------


def test_routes_default_chain() -> None:
    topo = chain()
    plan = address_plan(topo)
    routes = compute_routes(topo, plan, naming.interface_names(topo))
    # hosts with one link: a default route per family via the router
    assert routes["europe"] == [
        Route("0.0.0.0/0", "198.18.0.2", "sumgait"),
        Route("::/0", "2001:2::2", "sumgait"),
    ]
    assert routes["asia"] == [
        Route("0.0.0.0/0", "198.18.0.17", "aktau"),
        Route("::/0", "2001:2:0:2::1", "aktau"),
    ]
    sumgait = by_prefix(routes["sumgait"])
    assert sumgait["198.19.0.4/32"] == Route("198.19.0.4/32", "198.18.0.10", "aktau")
    assert sumgait["198.19.0.1/32"] == Route("198.19.0.1/32", "198.18.0.1", "europe")
    assert sumgait["198.18.0.16/29"] == Route("198.18.0.16/29", "198.18.0.10", "aktau")
    assert sumgait["2001:2:0:ffff::4/128"].via == "2001:2:0:1::2"
    assert sumgait["2001:2:0:2::/64"].dev == "aktau"
    # no routes for its own links, none to itself
    assert "198.18.0.0/29" not in sumgait and "198.18.0.8/29" not in sumgait
    assert "198.19.0.2/32" not in sumgait
    aktau = by_prefix(routes["aktau"])
    assert aktau["198.18.0.0/29"] == Route("198.18.0.0/29", "198.18.0.9", "sumgait")
    assert aktau["198.19.0.1/32"].via == "198.18.0.9"
    assert len(routes["sumgait"]) == len(routes["aktau"]) == 2 * (3 + 1)


def test_routes_ring_take_the_shorter_way() -> None:
    topo = ring()
    routes = compute_routes(topo, address_plan(topo), naming.interface_names(topo))
    r1 = by_prefix(routes["r1"])
    assert r1["198.19.0.4/32"].dev == "r2"  # r3 via r2: 2 ms beats 11 ms via r4
    assert r1["198.19.0.6/32"].dev == "r2"  # h2 behind r3
    # r4: directly costs 10 ms + 1 hop, around via r2-r3 3 ms + 3 hops: the longer way in hops wins
    assert r1["198.19.0.5/32"].dev == "r2"
    assert r1["198.19.0.5/32"].via == "198.18.0.10"
    r2 = by_prefix(routes["r2"])
    assert r2["198.19.0.5/32"].dev == "r3"
    assert r2["198.19.0.1/32"].dev == "r1"  # h1 hangs off r1
    h1 = routes["h1"]
    assert [r.prefix for r in h1] == ["0.0.0.0/0", "::/0"]


def test_routes_ties_break_by_hop_count() -> None:
    # a—b direct with delay 2000 ns (1 hop) vs a—c—b with 0 + 0 ns (2 hops):
    # costs 3000 vs 2000, so two zero-delay hops win; with delay 1000 it is a tie at
    # 2000 and the first link in file order wins
    def topo(delay: int) -> Topology:
        return Topology(
            nodes=(Node("a", "router"), Node("b", "router"), Node("c", "router")),
            links=(link("ab", "a", "b", delay), link("ac", "a", "c"), link("cb", "c", "b")),
        )

    for delay, dev in ((2000, "c"), (999, "b"), (1000, "b")):
        t = topo(delay)
        routes = compute_routes(t, address_plan(t), naming.interface_names(t))
        assert by_prefix(routes["a"])["198.19.0.2/32"].dev == dev, delay


def test_routes_never_transit_a_host() -> None:
    # r1 - h - r2 : h has two links but does not forward, so r1 cannot reach r2
    topo = Topology(
        nodes=(Node("r1", "router"), Node("h"), Node("r2", "router")),
        links=(link("1", "r1", "h"), link("2", "h", "r2")),
    )
    routes = compute_routes(topo, address_plan(topo), naming.interface_names(topo))
    r1 = by_prefix(routes["r1"])
    assert "198.19.0.3/32" not in r1  # r2 unreachable
    assert r1["198.19.0.2/32"].dev == "h"
    # the host with two links gets explicit routes, not a default
    assert {r.prefix for r in routes["h"]} == {
        "198.19.0.1/32", "198.19.0.3/32", "2001:2:0:ffff::1/128", "2001:2:0:ffff::3/128"
    }
    # link 2's subnet is reached through h, the only end r1 can reach
    assert r1["198.18.0.8/29"].dev == "h"
