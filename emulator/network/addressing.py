"""The address plan and the static routes of a topology. Pure functions.

Everything sits in the ranges reserved for benchmarking (RFC 2544, RFC 5180),
so nothing can collide with a real network:

- link number k (topology order) gets the IPv4 /29 that starts at
  198.18.0.0 + 8k (198.18.0.0/29, 198.18.0.8/29, ...; 8192 links fit),
  end a is host .1 of it and end b host .2;
- link k gets IPv6 2001:2:0:k::/64 (k in hex), end a ::1, end b ::2;
- node number i (topology order) has loopback 198.19.0.0 + (i+1) /32 and
  2001:2:0:ffff::(i+1)/128 (inside 2001:2::/48; link numbers stop at 0xfffe).

Addresses a topology gives (`Node.address`, `LinkEnd.address`) win. A link
whose one end is given gets the other end's address from the same subnet.
Automatic subnets and loopbacks that would overlap a given address are
skipped, so with no addresses given link k is exactly slot k.
"""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Iterator, Union

from emulator.errors import ScenarioError
from emulator.scenario.topology import Link, Topology

LINK_POOL4 = IPv4Network("198.18.0.0/16")
LINK_PREFIXLEN4 = 29
LOOPBACK_POOL4 = IPv4Network("198.19.0.0/16")
LINK_POOL6 = IPv6Network("2001:2::/48")
LINK_PREFIXLEN6 = 64
LOOPBACK_NET6 = IPv6Network("2001:2:0:ffff::/64")

#: extra cost of every hop, so equal-delay paths break ties by hop count
HOP_COST = 1000

Interface = Union[IPv4Interface, IPv6Interface]
Network = Union[IPv4Network, IPv6Network]


@dataclass(frozen=True)
class Route:
    """One static route: destination prefix, gateway address, outgoing interface."""

    prefix: str  # "198.19.0.4/32", "0.0.0.0/0", "::/0"
    via: str
    dev: str

    @property
    def family(self) -> int:
        """4 or 6."""
        return ipaddress.ip_network(self.prefix).version


@dataclass(frozen=True)
class AddressPlan:
    """Every address of a topology: node loopbacks and link-end addresses.

    Link-end maps are keyed by (node, link name), like the interface names.
    """

    loopback4: dict[str, IPv4Interface]
    loopback6: dict[str, IPv6Interface]
    link4: dict[tuple[str, str], IPv4Interface]
    link6: dict[tuple[str, str], IPv6Interface]

    def subnets(self, link: Link) -> tuple[IPv4Network, IPv6Network]:
        """The IPv4 and IPv6 subnet of `link`."""
        return (self.link4[(link.a.node, link.name)].network, self.link6[(link.a.node, link.name)].network)


def _parse(text: str, version: int, where: str, host: bool) -> Interface:
    """Parse an address from a topology; a bare address is a /32 (/128) host."""
    try:
        value = ipaddress.ip_interface(text)
    except ValueError:
        raise ScenarioError(f"{text!r} is not an IP address", where=where, fix="write e.g. 198.18.7.1/29") from None
    if value.version != version:
        raise ScenarioError(f"{text!r} is not an IPv{version} address", where=where)
    if host:
        # a loopback address names one node: always a host route
        return ipaddress.ip_interface(f"{value.ip}/{value.max_prefixlen}")
    if not host and value.network.prefixlen == value.max_prefixlen and "/" not in text:
        raise ScenarioError(
            f"link address {text!r} has no prefix length", where=where, fix="write it as ADDRESS/LEN, e.g. /29"
        )
    if not host and value.network.num_addresses > 2 and value.ip in (
        value.network.network_address,
        value.network.broadcast_address,
    ) and version == 4:
        raise ScenarioError(f"{text!r} is the network or broadcast address of its subnet", where=where)
    return value


def _other_end(given: Interface) -> Interface:
    """An address for the other end of a link, in `given`'s subnet."""
    net = given.network
    for host in net.hosts() if net.num_addresses > 2 else iter(net):
        if host != given.ip:
            return ipaddress.ip_interface(f"{host}/{net.prefixlen}")
    raise ScenarioError(f"subnet {net} has no room for a second link end", fix="use a shorter prefix")


def _slots(pool: Network, prefixlen: int, taken: list[Network]) -> Iterator[Network]:
    """Subnets of `pool` of length `prefixlen`, in order, skipping ones overlapping `taken`."""
    for net in pool.subnets(new_prefix=prefixlen):
        if not any(net.overlaps(t) for t in taken):
            yield net


def address_plan(topology: Topology) -> AddressPlan:
    """Assign every node loopback and link-end address (see the module docstring)."""
    link4: dict[tuple[str, str], IPv4Interface] = {}
    link6: dict[tuple[str, str], IPv6Interface] = {}
    loop4: dict[str, IPv4Interface] = {}
    loop6: dict[str, IPv6Interface] = {}

    for link in topology.links:
        if link.a.node == link.b.node:
            raise ScenarioError(
                f"link {link.name!r} joins node {link.a.node!r} to itself",
                where=f"{topology.source}: links.{link.name}",
                fix="give the link two different nodes",
            )

    # Given addresses first: they are fixed, automatic ones avoid them.
    given: dict[int, list[Network]] = {4: [], 6: []}
    for node in topology.nodes:
        where = f"{topology.source}: nodes.{node.name}"
        if node.address:
            loop4[node.name] = _parse(node.address, 4, where + ".address", host=True)  # type: ignore[assignment]
            given[4].append(loop4[node.name].network)
        if node.address6:
            loop6[node.name] = _parse(node.address6, 6, where + ".address6", host=True)  # type: ignore[assignment]
            given[6].append(loop6[node.name].network)
    pending: list[tuple[int, Link]] = []
    for link in topology.links:
        for version, attr, table in ((4, "address", link4), (6, "address6", link6)):
            ends = {}
            for end_name, end in (("a", link.a), ("b", link.b)):
                text = getattr(end, attr)
                if text:
                    where = f"{topology.source}: links.{link.name}.{end_name}.{attr}"
                    ends[end.node] = _parse(text, version, where, host=False)
            if not ends:
                pending.append((version, link))
                continue
            if len(ends) == 1:
                (known,) = ends.values()
                missing = link.b.node if link.a.node in ends else link.a.node
                ends[missing] = _other_end(known)
            first, second = ends[link.a.node], ends[link.b.node]
            if first.network != second.network or first.ip == second.ip:
                raise ScenarioError(
                    f"the ends of link {link.name!r} have {first} and {second}: not two addresses of one subnet",
                    where=f"{topology.source}: links.{link.name}",
                    fix="give both ends addresses in the same subnet, or leave one out",
                )
            for node, value in ends.items():
                table[(node, link.name)] = value  # type: ignore[index]
            given[version].append(first.network)

    # Then the automatic ones, in topology order.
    free4 = _slots(LINK_POOL4, LINK_PREFIXLEN4, given[4])
    free6 = _slots(LINK_POOL6, LINK_PREFIXLEN6, given[6] + [LOOPBACK_NET6])
    for version, link in pending:
        try:
            net = next(free4 if version == 4 else free6)
        except StopIteration:
            raise ScenarioError(f"too many links: the IPv{version} link pool is exhausted") from None
        table = link4 if version == 4 else link6
        table[(link.a.node, link.name)] = ipaddress.ip_interface(f"{net[1]}/{net.prefixlen}")  # type: ignore[index]
        table[(link.b.node, link.name)] = ipaddress.ip_interface(f"{net[2]}/{net.prefixlen}")  # type: ignore[index]

    hosts4 = (IPv4Interface(f"{a}/32") for a in LOOPBACK_POOL4.hosts())
    hosts6 = (IPv6Interface(f"{a}/128") for a in LOOPBACK_NET6.hosts() if a != LOOPBACK_NET6.network_address)
    used4 = given[4] + [v.network for v in link4.values()]
    used6 = given[6] + [v.network for v in link6.values()]
    for node in topology.nodes:
        # the generators advance for every node, so node i gets host i+1
        # whether or not it has a given address
        auto4, auto6 = next(hosts4), next(hosts6)
        if node.name not in loop4:
            while any(auto4.network.overlaps(n) for n in used4):
                auto4 = next(hosts4)
            loop4[node.name] = auto4
        if node.name not in loop6:
            while any(auto6.network.overlaps(n) for n in used6):
                auto6 = next(hosts6)
            loop6[node.name] = auto6
    return AddressPlan(loopback4=loop4, loopback6=loop6, link4=link4, link6=link6)


def _first_hops(topology: Topology, source: str) -> dict[str, tuple[int, str]]:
    """Shortest paths from `source`: {reachable node: (distance, first link)}.

    Weight of a link = its a_to_b delay in ns + HOP_COST. Only routers carry
    transit traffic: a host is a destination, never a way through. Equal
    distances keep the first link in topology order, so the result is
    deterministic.
    """
    roles = {node.name: node.role for node in topology.nodes}
    order = {link.name: k for k, link in enumerate(topology.links)}
    adjacency: dict[str, list[tuple[Link, str]]] = {node.name: [] for node in topology.nodes}
    for link in topology.links:
        adjacency.setdefault(link.a.node, []).append((link, link.b.node))
        adjacency.setdefault(link.b.node, []).append((link, link.a.node))

    best: dict[str, tuple[int, int]] = {source: (0, -1)}  # node -> (distance, first link index)
    heap: list[tuple[int, int, str]] = [(0, -1, source)]
    done: set[str] = set()
    while heap:
        dist, first, node = heapq.heappop(heap)
        if node in done or best[node] != (dist, first):
            continue
        done.add(node)
        if node != source and roles.get(node) != "router":
            continue
        for link, peer in adjacency[node]:
            candidate = (dist + link.a_to_b.delay_ns + HOP_COST, order[link.name] if node == source else first)
            if peer not in done and (peer not in best or candidate < best[peer]):
                best[peer] = candidate
                heapq.heappush(heap, (*candidate, peer))
    links = topology.links
    return {node: (dist, links[first].name) for node, (dist, first) in best.items() if node != source}


def compute_routes(
    topology: Topology, plan: AddressPlan, interfaces: dict[tuple[str, str], str]
) -> dict[str, list[Route]]:
    """Static routes of every node: {node: [Route, ...]}, IPv4 before IPv6.

    A host with exactly one link gets a default route per family via its
    peer. Every other node gets a route to each other node's loopback and to
    each link subnet it is not attached to, along the shortest path. A link
    subnet is reached through the nearest of its ends that is a router (a
    router delivers to both addresses on the link), else its nearest end.
    Unreachable destinations get no route.
    """
    roles = {node.name: node.role for node in topology.nodes}
    links = {link.name: link for link in topology.links}
    own_links: dict[str, list[Link]] = {node.name: [] for node in topology.nodes}
    for link in topology.links:
        for end in dict.fromkeys(link.nodes):
            own_links.setdefault(end, []).append(link)
    # Text forms, made once: a 10x10 grid has ~56,000 routes, and converting
    # the same addresses again for each was most of the time.
    loopback_text = {4: {n: str(a.network) for n, a in plan.loopback4.items()},
                     6: {n: str(a.network) for n, a in plan.loopback6.items()}}
    subnet_text = {version: {link.name: str(plan.subnets(link)[0 if version == 4 else 1]) for link in topology.links}
                   for version in (4, 6)}
    hops: dict[tuple[str, str, int], tuple[str, str]] = {}

    def hop(node: str, link_name: str, version: int) -> tuple[str, str]:
        """(gateway, dev) for `node` sending over `link_name`: the peer's address there."""
        key = (node, link_name, version)
        if key not in hops:
            link = links[link_name]
            peer = link.b.node if link.a.node == node else link.a.node
            addresses: dict[tuple[str, str], Interface] = plan.link4 if version == 4 else plan.link6  # type: ignore[assignment]
            hops[key] = (str(addresses[(peer, link_name)].ip), interfaces[(node, link_name)])
        return hops[key]

    routes: dict[str, list[Route]] = {}
    for node in topology.nodes:
        own = own_links[node.name]
        table: list[Route] = []
        routes[node.name] = table
        if not own:
            continue

        if node.role != "router" and len(own) == 1:
            for version, default in ((4, "0.0.0.0/0"), (6, "::/0")):
                table.append(Route(default, *hop(node.name, own[0].name, version)))
            continue

        paths = _first_hops(topology, node.name)
        own_names = {link.name for link in own}
        # per link not attached here: the end it is reached through (or none)
        targets: list[tuple[str, str]] = []
        for link in topology.links:
            if link.name in own_names:
                continue
            ends = [end for end in link.nodes if end in paths]
            if not ends:
                continue
            routers = [end for end in ends if roles.get(end) == "router"]
            targets.append((link.name, min(routers or ends, key=lambda end: paths[end][0])))
        for version in (4, 6):
            for other in topology.nodes:
                if other.name in paths:
                    table.append(Route(loopback_text[version][other.name], *hop(node.name, paths[other.name][1], version)))
            for link_name, target in targets:
                table.append(Route(subnet_text[version][link_name], *hop(node.name, paths[target][1], version)))
    return routes


def hosts_file_text(topology: Topology, plan: AddressPlan) -> str:
    """The /etc/hosts every node sees: each node name -> its loopbacks."""
    lines = [
        "# caspian testbed: every node name resolves to its loopback addresses",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    for node in topology.nodes:
        lines.append(f"{plan.loopback4[node.name].ip}\t{node.name}")
        lines.append(f"{plan.loopback6[node.name].ip}\t{node.name}")
    return "\n".join(lines) + "\n"
