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

Every search for a free subnet or loopback is bounded: it jumps past each
address it must avoid instead of stepping through the pool one address at a
time (the IPv6 loopback pool has 2^64 of them), so a given address that
covers a whole pool ends in a ScenarioError naming it, never in a search
that does not end. Given link subnets must not overlap one another.
"""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Iterator, Sequence, Union

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


def _align_up(value: int, size: int) -> int:
    """The smallest multiple of `size` (a power of two) at or above `value`."""
    return -(-value // size) * size


def _first_free(start: int, size: int, last: int, taken: Sequence[tuple[int, int, str]]) -> int | None:
    """The first block [a, a + size) with a >= start, a a multiple of `size`
    and a + size - 1 <= last that overlaps no `taken` range (first, last, what); None if none.

    Each overlap moves the candidate past the range it hit, and the candidate
    only grows, so every range stops it at most once: at most len(taken) + 1
    rounds, however large the pool.
    """
    a = _align_up(start, size)
    while a + size - 1 <= last:
        clash = next((hi for lo, hi, _ in taken if lo <= a + size - 1 and a <= hi), None)
        if clash is None:
            return a
        a = _align_up(clash + 1, size)
    return None


def _ranges(networks: Sequence[tuple[Network, str]], pool: Network) -> list[tuple[int, int, str]]:
    """(first, last, what) of each network that overlaps `pool` (the rest cannot get in the way)."""
    return [(int(net.network_address), int(net.broadcast_address), what)
            for net, what in networks if net.version == pool.version and net.overlaps(pool)]


def _covering(taken: Sequence[tuple[int, int, str]], pool: Network) -> str:
    """What of `taken` fills `pool`, for an error message (the largest first)."""
    inside = sorted(taken, key=lambda r: r[0] - r[1])
    names = [what for _, _, what in inside[:3]]
    return ", ".join(names) + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")


def _slots(pool: Network, prefixlen: int, taken: Sequence[tuple[Network, str]]) -> Iterator[Network]:
    """Subnets of `pool` of length `prefixlen`, in order, skipping ones overlapping `taken` (network, what)."""
    ranges = _ranges(taken, pool)
    size = 1 << (pool.max_prefixlen - prefixlen)
    cursor, last = int(pool.network_address), int(pool.broadcast_address)
    while True:
        found = _first_free(cursor, size, last, ranges)
        if found is None:
            return
        yield ipaddress.ip_network((found, prefixlen))
        cursor = found + size


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
    # Each is kept with the field that gave it, for the error messages.
    given: dict[int, list[tuple[Network, str]]] = {4: [], 6: []}
    given_links: dict[int, list[tuple[Network, str]]] = {4: [], 6: []}
    for node in topology.nodes:
        where = f"{topology.source}: nodes.{node.name}"
        if node.address:
            loop4[node.name] = _parse(node.address, 4, where + ".address", host=True)  # type: ignore[assignment]
            given[4].append((loop4[node.name].network, f"nodes.{node.name}.address"))
        if node.address6:
            loop6[node.name] = _parse(node.address6, 6, where + ".address6", host=True)  # type: ignore[assignment]
            given[6].append((loop6[node.name].network, f"nodes.{node.name}.address6"))
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
            for end_node, value in ends.items():
                table[(end_node, link.name)] = value  # type: ignore[assignment]
            entry = (first.network, f"links.{link.name}.addresses ({first.network})")
            given[version].append(entry)
            given_links[version].append(entry)
    for version in (4, 6):
        _refuse_overlaps(given_links[version], topology.source)

    # Then the automatic ones, in topology order.
    automatic: dict[int, list[tuple[Network, str]]] = {4: [], 6: []}
    free4 = _slots(LINK_POOL4, LINK_PREFIXLEN4, given[4])
    free6 = _slots(LINK_POOL6, LINK_PREFIXLEN6, given[6] + [(LOOPBACK_NET6, "the loopback range")])
    for version, link in pending:
        pool = LINK_POOL4 if version == 4 else LINK_POOL6
        try:
            net = next(free4 if version == 4 else free6)
        except StopIteration:
            taken = _ranges(given[version], pool)
            raise ScenarioError(
                f"no free IPv{version} subnet left in {pool} for link {link.name!r}"
                + (f" (taken by {_covering(taken, pool)})" if taken else " (too many links)"),
                where=f"{topology.source}: links.{link.name}",
                fix=f"give link {link.name!r} addresses, or move the given subnets out of {pool}",
            ) from None
        table = link4 if version == 4 else link6
        table[(link.a.node, link.name)] = ipaddress.ip_interface(f"{net[1]}/{net.prefixlen}")  # type: ignore[assignment]
        table[(link.b.node, link.name)] = ipaddress.ip_interface(f"{net[2]}/{net.prefixlen}")  # type: ignore[assignment]
        automatic[version].append((net, f"links.{link.name} ({net})"))

    # Loopbacks: host i+1 of the pool for node i, the next free one if that
    # is taken. The cursor advances for every node, so node i gets host i+1
    # whether or not it has a given address (while nothing is in the way).
    for version, pool, loops in ((4, LOOPBACK_POOL4, loop4), (6, LOOPBACK_NET6, loop6)):
        taken = _ranges(given[version] + automatic[version], pool)
        first_host = int(pool.network_address) + 1
        # IPv4: not the pool's broadcast address; IPv6 has none
        last_host = int(pool.broadcast_address) - (1 if version == 4 else 0)
        cursor = first_host - 1
        for node in topology.nodes:
            cursor += 1
            if node.name in loops:
                continue
            found = _first_free(cursor, 1, last_host, taken)
            if found is None:
                field = f"nodes.{node.name}.address{'6' if version == 6 else ''}"
                raise ScenarioError(
                    f"no IPv{version} loopback address is left for node {node.name!r}: "
                    + (f"{_covering(taken, pool)} take(s) the rest of {pool}, the nodes' loopback range"
                       if taken else f"{pool}, the nodes' loopback range, is full"),
                    where=topology.source,
                    fix=f"move the link addresses out of {pool}, or give {field}",
                )
            cursor = found
            loops[node.name] = ipaddress.ip_interface((found, pool.max_prefixlen))  # type: ignore[assignment]
    return AddressPlan(loopback4=loop4, loopback6=loop6, link4=link4, link6=link6)


def _refuse_overlaps(subnets: Sequence[tuple[Network, str]], source: str) -> None:
    """ScenarioError when two given link subnets overlap: a node on one would take
    the other's addresses for its own link's, and no route could reach them."""
    ordered = sorted(subnets, key=lambda entry: (int(entry[0].network_address), -entry[0].num_addresses))
    widest: tuple[Network, str] | None = None  # the earlier subnet reaching furthest up
    for net, what in ordered:
        if widest is not None and int(net.network_address) <= int(widest[0].broadcast_address):
            raise ScenarioError(
                f"{what} overlaps {widest[1]}", where=source,
                fix="give every link a subnet of its own",
            )
        if widest is None or int(net.broadcast_address) > int(widest[0].broadcast_address):
            widest = (net, what)


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
