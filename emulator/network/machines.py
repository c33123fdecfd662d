"""Two machines simulated on one host: their wire namespaces, the underlay, the tunnels. Pure data.

A run whose topology has a `placement:` and an `underlay:` (issue 11) gives
each machine what a real machine of a run across machines would have: a
wire namespace of its own, holding the wire-side ends of its nodes' links,
and an engine of its own forwarding them. The two are joined as two hosts
are, by an underlay network, and a link whose ends are on both machines
(a *crossing* link) is carried over it in a VXLAN tunnel (RFC 7348):

- the underlay: a veth pair per machine from its wire namespace (`ul`,
  198.19.254.1 and .2) into an underlay namespace, where a third engine
  forwards the pair with the underlay's delay (this kernel has no netem);
- per crossing link k a VXLAN device `vxK` (VNI k + 1, UDP 4789) in both
  machines' wire namespaces, over `ul`. The owning machine's engine
  (`Placement.owner`: the machine of the link's `a` end) takes it as the
  link's far end and impairs both directions; on the other machine a
  bridge `brK` of two ports, the VXLAN device and the link's wire-side
  end, passes frames unchanged, so the impairment is applied once;
- MTUs: the VXLAN devices 9000 like every wire-side end, so the engine
  sees whatever a node sends (and counts what is over the link's MTU);
  the underlay 9050, room for VXLAN's 50 bytes of outer headers.

`MachinesPlan.commands()` lays this out as `ip -batch` lines per
namespace, made after the nodes' veths exist (emulator.network.network).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from emulator.model.placement import Placement
from emulator.network import naming
from emulator.network.plan import WIRE_MTU
from emulator.scenario.topology import Topology

#: the underlay's addresses, inside the project's 198.18.0.0/15 and outside the
#: pools of links (198.18.0.0/16) and of loopbacks that exist (198.19.0.0 + node count)
UNDERLAY_NET = IPv4Network("198.19.254.0/24")
#: VXLAN's IANA port (RFC 7348 section 5)
VXLAN_PORT = 4789
#: outer Ethernet, IPv4, UDP and VXLAN headers
VXLAN_OVERHEAD = 50
UNDERLAY_MTU = WIRE_MTU + VXLAN_OVERHEAD
#: the underlay's end in each machine's wire namespace
UNDERLAY_IFNAME = "ul"
#: the name of the underlay, as its engine and the report call it
UNDERLAY_LINK = "underlay"


def machine_wire_netns(prefix: str, machine: str) -> str:
    """Machine `machine`'s wire namespace. '+' is in no node name (naming), so
    it can never be a node's namespace."""
    return f"{prefix}+wire-{machine}"


def underlay_netns(prefix: str) -> str:
    """The namespace of the simulated underlay and its engine."""
    return f"{prefix}+underlay"


@dataclass(frozen=True)
class Crossing:
    """One link whose ends are on the two machines, and its tunnel."""

    link: str
    index: int
    owner: str          # the machine whose engine impairs it
    other: str          # the machine that bridges its end to the tunnel
    owner_end: str      # the link's wire-side end on the owner ("l3a")
    other_end: str      # and on the other machine
    vni: int
    vxlan: str          # the VXLAN device, the same name on both machines
    bridge: str         # the bridge on the other machine

    def to_dict(self) -> dict[str, Any]:
        return {"owner": self.owner, "bridged_on": self.other, "vni": self.vni, "vxlan": self.vxlan}


@dataclass(frozen=True)
class MachinesPlan:
    """The machines of a run, their namespaces, underlay addresses and tunnels."""

    prefix: str
    placement: Placement
    wire_netns: dict[str, str]          # machine -> its wire namespace
    underlay_netns: str
    underlay_address: dict[str, str]    # machine -> its underlay address (no prefix length)
    underlay_ends: tuple[str, str]      # the underlay's two ends in the underlay namespace
    crossing: tuple[Crossing, ...]

    @property
    def machines(self) -> list[str]:
        return self.placement.names

    def wire_netns_of(self, node: str) -> str:
        """The wire namespace that holds `node`'s links' wire-side ends."""
        return self.wire_netns[self.placement.machine_of(node)]

    def crossing_link(self, name: str) -> Crossing | None:
        """The tunnel of link `name`, None when the link stays inside a machine."""
        return next((c for c in self.crossing if c.link == name), None)

    def commands(self) -> dict[str, list[str]]:
        """`ip -batch` lines per namespace, in the order they are run: the
        underlay namespace's first (it makes the veth pairs into both wires)."""
        first, second = self.machines
        out: dict[str, list[str]] = {self.underlay_netns: []}
        for machine, end in zip((first, second), self.underlay_ends):
            out[self.underlay_netns] += [
                f"link add {end} mtu {UNDERLAY_MTU} type veth peer name {UNDERLAY_IFNAME} "
                f"mtu {UNDERLAY_MTU} netns {self.wire_netns[machine]}",
                f"link set {end} up",
            ]
        out[self.underlay_netns].append("link set lo up")
        length = UNDERLAY_NET.prefixlen
        for machine in (first, second):
            peer = second if machine == first else first
            lines = [f"address add {self.underlay_address[machine]}/{length} dev {UNDERLAY_IFNAME}",
                     f"link set {UNDERLAY_IFNAME} up"]
            for c in self.crossing:
                lines += [
                    f"link add {c.vxlan} mtu {WIRE_MTU} type vxlan id {c.vni} local {self.underlay_address[machine]} "
                    f"remote {self.underlay_address[peer]} dstport {VXLAN_PORT} dev {UNDERLAY_IFNAME}",
                ]
                if machine == c.other:
                    lines += [f"link add {c.bridge} type bridge", f"link set {c.other_end} master {c.bridge}",
                              f"link set {c.vxlan} master {c.bridge}", f"link set {c.bridge} up"]
                lines.append(f"link set {c.vxlan} up")
            out[self.wire_netns[machine]] = lines
        return out

    def offloads_off(self) -> list[tuple[str, str]]:
        """(namespace, interface) of every new device a frame of a link crosses:
        their offloads go off, as on every veth end (kernel.offloads_off)."""
        refs = [(self.underlay_netns, end) for end in self.underlay_ends]
        for machine in self.machines:
            refs.append((self.wire_netns[machine], UNDERLAY_IFNAME))
            refs += [(self.wire_netns[machine], c.vxlan) for c in self.crossing]
        return refs

    def to_dict(self) -> dict[str, Any]:
        """As report.json's `placement` shows it (with the measured underlay added by the run)."""
        return {"machines": self.placement.to_dict(),
                "wire_netns": dict(self.wire_netns),
                "crossing": {c.link: c.to_dict() for c in self.crossing}}


def machines_plan(topology: Topology, placement: Placement, prefix: str) -> MachinesPlan:
    """The machines of `topology` placed as `placement` (two machines) for run `prefix`."""
    if len(placement.machines) != 2:
        raise ValueError(f"a simulated underlay joins two machines, not {len(placement.machines)}")
    wire = {machine: machine_wire_netns(prefix, machine) for machine in placement.names}
    hosts = list(UNDERLAY_NET.hosts())
    addresses = {machine: str(hosts[k]) for k, machine in enumerate(placement.names)}
    where = placement.by_node()
    crossing = []
    for k, link in enumerate(topology.links):
        a, b = where[link.a.node], where[link.b.node]
        if a == b:
            continue
        end_a, end_b = naming.wire_ifnames(k)
        crossing.append(Crossing(link=link.name, index=k, owner=a, other=b, owner_end=end_a, other_end=end_b,
                                 vni=k + 1, vxlan=f"vx{k}", bridge=f"br{k}"))
    return MachinesPlan(prefix=prefix, placement=placement, wire_netns=wire, underlay_netns=underlay_netns(prefix),
                        underlay_address=addresses, underlay_ends=("u0", "u1"), crossing=tuple(crossing))
