"""The address plan refuses what it cannot assign, at once: every search is bounded.

A link given an address inside the loopback ranges (198.19.0.0/16,
2001:2:0:ffff::/64) used to send the loopback search through 2^64 IPv6
addresses one by one (or end in a bare StopIteration for IPv4). These
topologies must end in a ScenarioError naming the field at fault, well
within a second.
"""

from __future__ import annotations

import time
from ipaddress import ip_interface

import pytest

from emulator.errors import ScenarioError
from emulator.model.linkparams import LinkParams
from emulator.network.addressing import address_plan
from emulator.scenario.topology import Link, LinkEnd, Node, Topology

#: far more than any bounded search here needs, far less than an unbounded one
QUICK_S = 1.0


def link(name: str, a: str, b: str, *, a4: str | None = None, a6: str | None = None) -> Link:
    params = LinkParams()
    return Link(name=name, a=LinkEnd(a, address=a4, address6=a6), b=LinkEnd(b), a_to_b=params, b_to_a=params)


def pair(**given: str | None) -> Topology:
    """Two hosts on one link whose end a has the given addresses."""
    return Topology(nodes=(Node("left"), Node("right")), links=(link("left-right", "left", "right", **given),),
                    source="collide.yaml")


def refused(topology: Topology) -> str:
    """The ScenarioError message address_plan raises for `topology`, checked to come quickly."""
    started = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        address_plan(topology)
    assert time.monotonic() - started < QUICK_S
    return str(info.value)


@pytest.mark.parametrize("given, family", [
    ({"a6": "2001:2:0:ffff::1/64"}, "IPv6"),    # the whole IPv6 loopback range: 2^64 addresses
    ({"a4": "198.19.0.1/16"}, "IPv4"),          # the whole IPv4 loopback range
    ({"a4": "198.18.0.1/15"}, "IPv4"),          # both IPv4 pools at once
    ({"a6": "2001:2::1/48"}, "IPv6"),           # every IPv6 address there is to give
])
def test_a_link_covering_the_loopback_range_is_refused_at_once(given: dict[str, str], family: str) -> None:
    message = refused(pair(**given))
    assert "collide.yaml" in message
    assert f"no {family} loopback address is left for node 'left'" in message
    assert "links.left-right.addresses" in message  # the field at fault
    assert "give nodes.left.address" in message     # and a way out


def test_given_loopbacks_avoid_the_search() -> None:
    """The way out the message names works: nodes with their own loopbacks need no search."""
    topology = Topology(
        nodes=(Node("left", address="198.18.200.1", address6="2001:2:0:fe::1"),
               Node("right", address="198.18.200.2", address6="2001:2:0:fe::2")),
        links=(link("left-right", "left", "right", a6="2001:2:0:ffff::1/64"),),
    )
    plan = address_plan(topology)
    assert plan.loopback6["right"] == ip_interface("2001:2:0:fe::2/128")


def test_the_link_pool_exhausted_by_a_given_subnet_is_refused_at_once() -> None:
    topology = Topology(
        nodes=(Node("a"), Node("b"), Node("c")),
        links=(link("given", "a", "b", a4="198.18.0.1/16"), link("auto", "b", "c")),
        source="pool.yaml",
    )
    message = refused(topology)
    assert "no free IPv4 subnet left in 198.18.0.0/16 for link 'auto'" in message
    assert "links.given.addresses" in message


def test_a_partial_overlap_is_skipped_as_before() -> None:
    """A link inside the loopback range takes those addresses; the loopbacks go around it."""
    plan = address_plan(pair(a4="198.19.0.1/30", a6="2001:2:0:ffff::1/126"))
    assert plan.loopback4["left"] == ip_interface("198.19.0.4/32")
    assert plan.loopback4["right"] == ip_interface("198.19.0.5/32")
    assert plan.loopback6["left"] == ip_interface("2001:2:0:ffff::4/128")
    assert plan.loopback6["right"] == ip_interface("2001:2:0:ffff::5/128")


def test_overlapping_given_link_subnets_are_refused() -> None:
    topology = Topology(
        nodes=(Node("a"), Node("b"), Node("c"), Node("d")),
        links=(link("one", "a", "b", a4="198.18.7.1/29"), link("two", "c", "d", a4="198.18.7.5/30")),
        source="overlap.yaml",
    )
    message = refused(topology)
    assert "links.two.addresses (198.18.7.4/30) overlaps links.one.addresses (198.18.7.0/29)" in message


def test_many_automatic_links_around_a_large_given_block_stay_quick() -> None:
    """Each search jumps past what it must avoid: half the pool given, 500 links after it."""
    count = 500
    nodes = tuple(Node(f"n{i}", "router") for i in range(count + 2))
    links = (link("big", "n0", "n1", a4="198.18.0.1/17"),) + tuple(
        link(f"l{i}", f"n{i + 1}", f"n{i + 2}") for i in range(count))
    started = time.monotonic()
    plan = address_plan(Topology(nodes=nodes, links=links))
    assert time.monotonic() - started < QUICK_S
    assert plan.link4[("n1", "l0")] == ip_interface("198.18.128.1/29")  # the first /29 past the block
    assert plan.link4[(f"n{count}", f"l{count - 1}")] == ip_interface(f"198.18.{128 + (count - 1) // 32}."
                                                                      f"{8 * ((count - 1) % 32) + 1}/29")
