"""The kernel objects of a testbed as pure data: what `Network.build` will make.

`network_plan(topology, prefix)` compiles a validated Topology into a
`NetworkPlan`: namespaces (wire first) with their sysctls, veth pairs,
interfaces to bring up, addresses, routes, permanent neighbours, RPS masks
and the interfaces whose offloads go off. Everything a request needs is
decided here, including each interface's index and MAC address, so the
executor (`emulator.network.rtnl`) never looks anything up:

- interface indexes are per namespace: `lo` is 1; a node's veth ends get
  IFINDEX_BASE, IFINDEX_BASE+1, ... in link order; in the wire namespace
  link k's ends get IFINDEX_BASE+2k (end a) and IFINDEX_BASE+2k+1 (end b).
  The base leaves room below it for the fallback tunnel devices (`tunl0`,
  `sit0`, `gre0`...) that loaded tunnel modules add to every new namespace.
- MAC addresses are locally administered unicast and unique per run:
  02 : 20 bits of the run prefix : 18 bits of the link number : 2 bits
  (end b?, wire side?). Two runs on one machine never share one.
- each node-side interface's IPv6 link-local address is the one the kernel
  derives from that MAC (EUI-64, the default `addr_gen_mode`), so the far
  end's permanent neighbour entry for it can be written in advance.

Names, addresses and routes are exactly those of `naming`, `addressing`
(`address_plan`, `compute_routes`): the plan only lays them out as requests.

Static routes are not aggregated. Folding a block of link subnets or
loopbacks that share a next hop into one shorter prefix would also route the
addresses of the block that no node has (unused /29 slots, loopbacks beyond
the last node) instead of refusing them as unreachable, and two routers
whose aggregates overlap can bounce such a packet between them until its
TTL runs out: not equivalent, so not done. The kernel installs the full
tables quickly enough once the round trips are gone.

`NetworkPlan.to_dict()` is JSON-serialisable (`caspian up --plan`) and
`NetworkPlan.from_dict()` reads it back.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.network import naming
from emulator.network.addressing import AddressPlan, Route, address_plan, compute_routes
from emulator.scenario.topology import Topology

if TYPE_CHECKING:
    from emulator.network.machines import MachinesPlan

#: MTU of the wire-side ends: above any link MTU, so the engine sees oversized frames
WIRE_MTU = 9000
#: index of the loopback interface in every namespace
LOOPBACK_IFINDEX = 1
#: first index the plan assigns to a veth end in a namespace (see the module docstring)
IFINDEX_BASE = 16

#: what every wire namespace gets before it holds an interface: no IPv6, so
#: the link ends never send a frame of their own
WIRE_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
)


def node_sysctls(router: bool) -> tuple[tuple[str, str], ...]:
    """The sysctls of a node namespace, written before its interfaces exist."""
    values = [("net.ipv4.ip_forward", str(int(router))), ("net.ipv6.conf.all.forwarding", str(int(router)))]
    for scope in ("all", "default"):
        values.append((f"net.ipv4.conf.{scope}.rp_filter", "0"))
        # no duplicate address detection: addresses usable at once
        values.append((f"net.ipv6.conf.{scope}.accept_dad", "0"))
        # no router solicitations: routes are configured, and chatter on the
        # links would shift the engine's seeded random streams between two
        # runs of the same scenario
        values.append((f"net.ipv6.conf.{scope}.router_solicitations", "0"))
    return tuple(values)


# --- the plan's records ---------------------------------------------------------


@dataclass(frozen=True)
class NamespaceSpec:
    """One named network namespace and the sysctls written in it; node None = the wire."""

    name: str
    node: str | None
    sysctls: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class VethSpec:
    """One veth pair: created in the node's namespace, its peer placed in the wire namespace."""

    link: str
    end: str  # "a" or "b"
    node: str
    netns: str
    ifname: str
    ifindex: int
    mac: str
    mtu: int
    link_local: str  # the node side's fe80:: address (EUI-64 of `mac`)
    wire_netns: str
    wire_ifname: str
    wire_ifindex: int
    wire_mac: str
    wire_mtu: int


@dataclass(frozen=True)
class LinkUpSpec:
    """An existing interface to set up (the loopbacks, the wire-side ends)."""

    netns: str
    ifname: str
    ifindex: int
    mtu: int | None = None


@dataclass(frozen=True)
class AddressSpec:
    """One address on one interface; `nodad`: IPv6 without duplicate address detection."""

    netns: str
    ifname: str
    ifindex: int
    address: str  # "198.18.0.1/29"
    nodad: bool


@dataclass(frozen=True)
class RouteSpec:
    """One static route; traffic the node originates leaves from `prefsrc`, its loopback."""

    netns: str
    prefix: str
    via: str
    dev: str
    oif: int
    prefsrc: str


@dataclass(frozen=True)
class NeighbourSpec:
    """One permanent ARP/ND entry: `address` is at `mac` on interface `dev`."""

    netns: str
    dev: str
    ifindex: int
    address: str
    mac: str


@dataclass(frozen=True)
class InterfaceRef:
    """An interface by namespace and name (offloads are switched off by name)."""

    netns: str
    ifname: str


@dataclass(frozen=True)
class RpsSpec:
    """Receive packet steering of one interface: its `rps_cpus` hex mask."""

    netns: str
    ifname: str
    cpu_mask: str

    @property
    def path(self) -> str:
        """The sysfs file, as seen from inside `netns`."""
        return f"/sys/class/net/{self.ifname}/queues/rx-0/rps_cpus"


_RECORDS: dict[str, type] = {
    "namespaces": NamespaceSpec,
    "veths": VethSpec,
    "links_up": LinkUpSpec,
    "addresses": AddressSpec,
    "routes": RouteSpec,
    "neighbours": NeighbourSpec,
    "offloads_off": InterfaceRef,
    "rps": RpsSpec,
}


@dataclass(frozen=True)
class NetworkPlan:
    """Every kernel object of a testbed, in the order they are made."""

    prefix: str
    wire_netns: str
    namespaces: tuple[NamespaceSpec, ...]
    veths: tuple[VethSpec, ...]
    links_up: tuple[LinkUpSpec, ...]
    addresses: tuple[AddressSpec, ...]
    routes: tuple[RouteSpec, ...]
    neighbours: tuple[NeighbourSpec, ...]
    offloads_off: tuple[InterfaceRef, ...]
    rps: tuple[RpsSpec, ...]

    def of_netns(self, kind: str, netns: str) -> list[Any]:
        """The records of one kind (`"routes"`, ...) that belong to namespace `netns`."""
        return [record for record in getattr(self, kind) if record.netns == netns]

    def counts(self) -> dict[str, int]:
        """How many records of each kind."""
        return {kind: len(getattr(self, kind)) for kind in _RECORDS}

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-serialisable dicts and lists."""
        data: dict[str, Any] = {"prefix": self.prefix, "wire_netns": self.wire_netns}
        for kind in _RECORDS:
            data[kind] = [dataclasses.asdict(record) for record in getattr(self, kind)]
        for namespace in data["namespaces"]:
            namespace["sysctls"] = [list(pair) for pair in namespace["sysctls"]]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NetworkPlan":
        """The plan `to_dict()` wrote (KeyError/TypeError for a malformed one)."""
        fields: dict[str, Any] = {"prefix": data["prefix"], "wire_netns": data["wire_netns"]}
        for kind, record in _RECORDS.items():
            items = []
            for item in data[kind]:
                if record is NamespaceSpec:
                    item = {**item, "sysctls": tuple(tuple(pair) for pair in item["sysctls"])}
                items.append(record(**item))
            fields[kind] = tuple(items)
        return cls(**fields)

    def describe(self) -> str:
        """A readable listing, one object per line, in the order they are made."""
        lines = [f"# caspian network plan {self.prefix}: " + ", ".join(f"{n} {k}" for k, n in self.counts().items())]
        for ns in self.namespaces:
            lines.append(f"netns {ns.name}" + (f" (node {ns.node})" if ns.node else " (wire)"))
            lines += [f"  sysctl {key}={value}" for key, value in ns.sysctls]
        for v in self.veths:
            lines.append(
                f"veth {v.netns}/{v.ifname} #{v.ifindex} {v.mac} mtu {v.mtu} <-> "
                f"{v.wire_netns}/{v.wire_ifname} #{v.wire_ifindex} {v.wire_mac} mtu {v.wire_mtu}  (link {v.link} {v.end})"
            )
        lines += [f"up {u.netns}/{u.ifname} #{u.ifindex}" + (f" mtu {u.mtu}" if u.mtu else "") for u in self.links_up]
        lines += [f"address {a.netns}/{a.ifname} {a.address}" + (" nodad" if a.nodad else "") for a in self.addresses]
        lines += [f"route {r.netns}: {r.prefix} via {r.via} dev {r.dev} src {r.prefsrc}" for r in self.routes]
        lines += [f"neighbour {n.netns}/{n.dev}: {n.address} lladdr {n.mac}" for n in self.neighbours]
        lines += [f"offloads off {o.netns}/{o.ifname}" for o in self.offloads_off]
        lines += [f"rps {r.netns}/{r.ifname} cpus {r.cpu_mask}" for r in self.rps]
        return "\n".join(lines) + "\n"


# --- compiling ----------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Names, addresses and routes of a topology: what the plan lays out as requests."""

    interfaces: dict[tuple[str, str], str]
    addresses: AddressPlan
    routes: dict[str, list[Route]]


def layout(topology: Topology) -> Layout:
    """Interface names, the address plan and the static routes of `topology`.

    Raises ScenarioError for node names or addresses that cannot work. Under
    dynamic routing routers get no static routes (their daemons learn them);
    hosts run no daemon and keep theirs.
    """
    naming.check_node_names(topology)
    interfaces = naming.interface_names(topology)
    plan = address_plan(topology)
    routes = compute_routes(topology, plan, interfaces)
    if topology.dynamic_routing:
        routes = {node: [] if topology.node(node).role == "router" else table for node, table in routes.items()}
    return Layout(interfaces, plan, routes)


def mac_address(prefix: str, link_index: int, end: str, wire: bool) -> str:
    """The MAC of link `link_index`'s end `end` ("a"/"b"), node side or wire side.

    02 (locally administered, unicast) : the prefix's 20 bits : link 18 bits : end, side.
    """
    if not naming.is_prefix(prefix):
        raise ValueError(f"{prefix!r} is not a run prefix")
    if not 0 <= link_index < 1 << 18:
        raise ValueError(f"link number {link_index} does not fit a MAC address")
    value = (int(prefix[3:], 16) << 20) | (link_index << 2) | ((end == "b") << 1) | int(wire)
    octets = [0x02] + list(value.to_bytes(5, "big"))
    return ":".join(f"{octet:02x}" for octet in octets)


def eui64_link_local(mac: str) -> str:
    """The fe80::/64 address the kernel derives from `mac` (RFC 4291 appendix A)."""
    octets = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui))


def network_plan(
    topology: Topology, prefix: str, *, rx_cpus: str | None = None, layout_: Layout | None = None,
    machines: MachinesPlan | None = None,
) -> NetworkPlan:
    """Compile `topology` for the run `prefix` (see the module docstring).

    `rx_cpus` (a hex CPU mask) adds RPS on every node-side interface.
    `layout_` reuses a `layout(topology)` already computed. `machines`: the
    machines simulated here; each gets a wire namespace of its own (the
    first one's is `wire_netns`), and the underlay's namespace is made too.
    """
    lay = layout_ or layout(topology)
    wire = naming.wire_netns_name(prefix)
    # one wire namespace, or one per machine simulated here (emulator.network.machines)
    wires = list(machines.wire_netns.values()) if machines is not None else [wire]
    extra = [machines.underlay_netns] if machines is not None else []

    def netns(node: str) -> str:
        return naming.netns_name(prefix, node)

    def wire_of(node: str) -> str:
        return machines.wire_netns_of(node) if machines is not None else wire

    namespaces = [NamespaceSpec(name, None, WIRE_SYSCTLS) for name in wires + extra] + [
        NamespaceSpec(netns(node.name), node.name, node_sysctls(node.role == "router")) for node in topology.nodes
    ]

    # node-side indexes in link order, per node
    next_index = {node.name: IFINDEX_BASE for node in topology.nodes}
    veths: list[VethSpec] = []
    for k, link in enumerate(topology.links):
        for end, name, wire_if in zip("ab", link.nodes, naming.wire_ifnames(k)):
            index = next_index[name]
            next_index[name] += 1
            mac = mac_address(prefix, k, end, wire=False)
            veths.append(
                VethSpec(
                    link=link.name, end=end, node=name, netns=netns(name),
                    ifname=lay.interfaces[(name, link.name)], ifindex=index, mac=mac, mtu=link.mtu,
                    link_local=eui64_link_local(mac),
                    wire_netns=wire_of(name), wire_ifname=wire_if, wire_ifindex=IFINDEX_BASE + 2 * k + (end == "b"),
                    wire_mac=mac_address(prefix, k, end, wire=True), wire_mtu=WIRE_MTU,
                )
            )
    by_end = {(v.node, v.link): v for v in veths}
    dev_index: dict[tuple[str, str], int] = {(v.node, v.ifname): v.ifindex for v in veths}

    links_up = []
    for name in wires:
        links_up.append(LinkUpSpec(name, "lo", LOOPBACK_IFINDEX))
        links_up += [LinkUpSpec(name, v.wire_ifname, v.wire_ifindex)
                     for v in sorted(veths, key=lambda v: v.wire_ifindex) if v.wire_netns == name]
    links_up += [LinkUpSpec(netns(node.name), "lo", LOOPBACK_IFINDEX) for node in topology.nodes]

    addresses: list[AddressSpec] = []
    routes: list[RouteSpec] = []
    neighbours: list[NeighbourSpec] = []
    plan = lay.addresses
    for node in topology.nodes:
        ns = netns(node.name)
        for address in (plan.loopback4[node.name], plan.loopback6[node.name]):
            addresses.append(AddressSpec(ns, "lo", LOOPBACK_IFINDEX, str(address), address.version == 6))
        for link in topology.links_of(node.name):
            v = by_end[(node.name, link.name)]
            for address in (plan.link4[(node.name, link.name)], plan.link6[(node.name, link.name)]):
                # IPv6 without DAD: even with accept_dad=0 a fresh address is
                # tentative until a kernel worker ran, and a route naming it
                # as preferred source would be refused (EINVAL) meanwhile
                addresses.append(AddressSpec(ns, v.ifname, v.ifindex, str(address), address.version == 6))
        for route in lay.routes[node.name]:
            # Traffic a node originates leaves from its own (loopback)
            # address, the one its name resolves to: a UDP server that
            # connect()s back to its client (iperf3 -u) must answer from the
            # address the client sent to.
            # (":" in the prefix, not Route.family: parsing 50,000 prefixes again costs half a second)
            source = plan.loopback6[node.name] if ":" in route.prefix else plan.loopback4[node.name]
            oif = dev_index[(node.name, route.dev)]
            routes.append(RouteSpec(ns, route.prefix, route.via, route.dev, oif, str(source.ip)))

    # Permanent ARP/ND entries for every link's far end: a point-to-point
    # cable needs no address resolution, and with it an impaired link would
    # lose ARP and ND too (a lost ARP reply makes the router drop what it
    # queued for a second, a loss the link's model never drew).
    for link in topology.links:
        for here, there in ((link.a.node, link.b.node), (link.b.node, link.a.node)):
            mine, theirs = by_end[(here, link.name)], by_end[(there, link.name)]
            peers = [str(table[(there, link.name)].ip) for table in (plan.link4, plan.link6)]
            peers.append(theirs.link_local)  # OSPFv3's next hops
            for peer in peers:
                neighbours.append(NeighbourSpec(mine.netns, mine.ifname, mine.ifindex, peer, theirs.mac))

    offloads = []
    for v in veths:
        offloads += [InterfaceRef(v.netns, v.ifname), InterfaceRef(v.wire_netns, v.wire_ifname)]
    rps = [RpsSpec(v.netns, v.ifname, rx_cpus) for v in veths] if rx_cpus else []
    return NetworkPlan(
        prefix=prefix,
        wire_netns=wires[0],
        namespaces=tuple(namespaces),
        veths=tuple(veths),
        links_up=tuple(links_up),
        addresses=tuple(addresses),
        routes=tuple(routes),
        neighbours=tuple(neighbours),
        offloads_off=tuple(offloads),
        rps=tuple(rps),
    )
