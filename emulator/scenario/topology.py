"""The topology: nodes and the links between them, as a pure graph.

These dataclasses are what the network layer makes real; they hold no system
state. `emulator.scenario.loader` builds them from a YAML file and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from emulator.model.capacity import LinkCapacity
from emulator.model.linkparams import LinkParams
from emulator.model.placement import Placement
from emulator.model.underlay import SimulatedUnderlay

NODE_ROLES = ("host", "router")
DEFAULT_MTU = 1500
#: Routing protocols a topology may ask for; `static` is caspian's computed routes.
ROUTING_PROTOCOLS = ("static", "ospf", "bgp")
#: The protocols caspian runs today (BIRD 2 runs ospf and bgp).
SUPPORTED_ROUTING = ("static", "ospf", "bgp")
#: The routing daemons and the protocols each runs here (`routing.daemon`; bird is the default)
ROUTING_DAEMONS: dict[str, tuple[str, ...]] = {"bird": ("ospf", "bgp"), "frr": ("ospf",)}
#: OSPF interface cost range (RFC 2328: a 16-bit metric, at least 1)
OSPF_COST_RANGE = (1, 65535)
#: Default OSPF cost unit: one cost point per 10 us of one-way delay
COST_UNIT_NS = 10_000
#: Default private AS number of a router under BGP: BGP_ASN_BASE + its index among the routers (RFC 6996)
BGP_ASN_BASE = 64512
#: Past the 1023 private 2-byte AS numbers, routers count on from the 4-byte private range
BGP_ASN_BASE4 = 4_200_000_000
#: Per-link AS-path prepending (extra copies of the exporting router's AS), 0..BGP_PREPEND_MAX
BGP_PREPEND_MAX = 16


@dataclass(frozen=True)
class Node:
    """A host or router: one network namespace."""

    name: str
    role: str = "host"
    #: the node's own address (on `lo`), by which other nodes reach it by name;
    #: None = assigned from the address plan
    address: str | None = None
    address6: str | None = None
    #: BGP AS number (routing.protocol bgp only); None = BGP_ASN_BASE + the router's index
    asn: int | None = None


@dataclass(frozen=True)
class LinkEnd:
    """One end of a link: the node it attaches to and optional fixed addresses."""

    node: str
    #: "198.18.0.1/30"-style; None = assigned from the address plan
    address: str | None = None
    address6: str | None = None


@dataclass(frozen=True)
class Link:
    """A point-to-point emulated link between ends `a` and `b`.

    `a_to_b` shapes frames sent by `a`'s node toward `b`'s; `b_to_a` the reverse.
    """

    name: str
    a: LinkEnd
    b: LinkEnd
    a_to_b: LinkParams = field(default_factory=LinkParams)
    b_to_a: LinkParams = field(default_factory=LinkParams)
    mtu: int = DEFAULT_MTU
    #: where the parameters came from, for reports (`preset aktau-sumgait`)
    preset: str | None = None
    length_km: float | None = None
    #: OSPF cost of both ends' interfaces; None = derived from the delay (`ospf_cost`)
    cost: int | None = None
    #: BGP: extra copies of its own AS each end prepends to the routes it exports over this link
    bgp_prepend: int = 0
    #: fiber pairs x waves x rate and the lit share (`capacity:`/`lit:`), None = a plain rate
    capacity: LinkCapacity | None = None
    #: the replica factor (`scale:`/`fit:`): rates and byte queue limits are multiplied by it
    scale: float = 1.0

    @property
    def ospf_cost(self) -> int:
        """The OSPF cost: `cost` if given, else the a_to_b delay in 10 us units (at least 1)."""
        if self.cost is not None:
            return self.cost
        return min(OSPF_COST_RANGE[1], max(OSPF_COST_RANGE[0], round(self.a_to_b.delay_ns / COST_UNIT_NS)))

    @property
    def nodes(self) -> tuple[str, str]:
        """Names of the two nodes this link joins, `a` first."""
        return (self.a.node, self.b.node)

    def direction(self, sender: str) -> LinkParams:
        """Parameters of the direction whose frames `sender` transmits."""
        if sender == self.a.node:
            return self.a_to_b
        if sender == self.b.node:
            return self.b_to_a
        raise KeyError(f"node {sender!r} is not an end of link {self.name!r}")


@dataclass(frozen=True)
class BfdConfig:
    """BFD timers: a session is declared down after `multiplier` missed intervals."""

    interval_ns: int = 100_000_000
    multiplier: int = 3

    @property
    def detect_ns(self) -> int:
        """Detection time: interval x multiplier."""
        return self.interval_ns * self.multiplier


@dataclass(frozen=True)
class RoutingConfig:
    """How routers learn routes (the top-level `routing:` section).

    `static`: caspian computes and installs static routes (no daemon).
    `ospf`: BIRD 2 (or FRR, `daemon: frr`) runs OSPFv2 in every router
    namespace (docs/routing.md); `bgp`: BIRD 2 runs eBGP, one private AS per
    router, one session per router-to-router link. Hosts keep their static
    default routes and run no daemon.
    """

    protocol: str = "static"
    #: the routing daemon in each router: "bird" (BIRD 2) or "frr" (FRR: zebra, staticd, ospfd, bfdd)
    daemon: str = "bird"
    bfd: BfdConfig | None = None
    #: OSPF hello interval (whole seconds, BIRD's unit)
    hello_ns: int = 1_000_000_000
    #: OSPF router dead interval; None = 4 x hello
    dead_ns: int | None = None
    #: BGP hold time (whole seconds, at least 3: BIRD's minimum)
    hold_ns: int = 9_000_000_000
    #: BGP keepalive interval; None = hold / 3 (RFC 4271), at least 1 s
    keepalive_ns: int | None = None

    @property
    def keepalive_interval_ns(self) -> int:
        """The keepalive interval in force: `keepalive_ns`, or a third of the hold time in whole seconds (>= 1 s)."""
        if self.keepalive_ns is not None:
            return self.keepalive_ns
        return max(1, self.hold_ns // 3_000_000_000) * 1_000_000_000

    @property
    def dead_interval_ns(self) -> int:
        """The dead interval in force: `dead_ns`, or 4 x hello."""
        return self.dead_ns if self.dead_ns is not None else 4 * self.hello_ns

    @property
    def uses_daemons(self) -> bool:
        """True when routers run a routing daemon (anything but static)."""
        return self.protocol != "static"


@dataclass(frozen=True)
class Topology:
    """Nodes and links; `source` names the file it came from (for messages)."""

    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    name: str = "testbed"
    source: str = "<default>"
    seed: int | None = None
    #: None = static routes (as `RoutingConfig()`)
    routing: RoutingConfig | None = None
    #: engine loops sharing the links (`engine: {shards: N}`); None = the default for this machine
    engine_shards: int | None = None
    #: the machines that run the nodes (`placement:`): the split as written, or how many
    #: machines to split over when the run is planned; None = all on this machine
    placement: Placement | int | None = None
    #: the machines simulated on this host and the underlay joining them (`underlay:`);
    #: None with a placement = real machines (their agents), which only `validate` and
    #: `deploy` take so far
    underlay: SimulatedUnderlay | None = None

    @property
    def dynamic_routing(self) -> bool:
        """True when a routing daemon runs in the routers (routing.protocol is not static)."""
        return self.routing is not None and self.routing.uses_daemons

    def asn(self, node: str) -> int:
        """The BGP AS number of router `node`: its `asn`, else BGP_ASN_BASE + its index among the routers."""
        for candidate, asn in zip(self.routers(), self.router_asns()):
            if candidate.name == node:
                return asn
        raise KeyError(node)

    def router_asns(self) -> list[int]:
        """The AS number of every router, in `routers()` order (one pass, for checking them all)."""
        return [router.asn if router.asn is not None else (BGP_ASN_BASE + index if index < 1023 else BGP_ASN_BASE4 + index)
                for index, router in enumerate(self.routers())]

    def routers(self) -> list[Node]:
        """The router nodes, in file order."""
        return [node for node in self.nodes if node.role == "router"]

    def node(self, name: str) -> Node:
        """The node called `name` (KeyError if there is none)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def link(self, name: str) -> Link:
        """The link called `name` (KeyError if there is none)."""
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def links_of(self, node: str) -> Iterator[Link]:
        """Links with `node` at one end, in file order."""
        return (link for link in self.links if node in link.nodes)
