"""`Network`: a validated Topology made real as namespaces, veths, addresses and routes.

Layout of a run with prefix P:

- one namespace per node, `P-NODE`, and one wire namespace `P-wire`;
- per link k and end a/b a veth pair: the node side inside the node's
  namespace, named after the peer node, MTU = link.mtu; the wire side
  `lk a`/`lk b` in the wire namespace, MTU 9000 so that frames above the
  link MTU reach the engine (which counts them) instead of vanishing in
  the kernel. The pair is created in the node namespace with its peer
  placed straight into the wire namespace: nothing ever appears in the
  root namespace;
- every offload off on every veth end (see `kernel.offloads_off`);
- IPv6 disabled in the wire namespace before any interface exists there,
  so the link ends never send a frame of their own.

Each object is written to the run's state right after the kernel made it;
a build that fails part-way removes everything it made and re-raises.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from emulator.errors import TestbedError
from emulator.network import kernel, naming
from emulator.network.addressing import (
    AddressPlan,
    Route,
    address_plan,
    compute_routes,
    hosts_file_text,
)
from emulator.network.state import RunState
from emulator.network.sysfs import write_in_netns
from emulator.network.teardown import teardown
from emulator.scenario.topology import Topology

log = logging.getLogger(__name__)

#: address flag: skip duplicate address detection (linux/if_addr.h)
IFA_F_NODAD = 0x02
#: neighbour state of a static ARP/ND entry (linux/neighbour.h)
NUD_PERMANENT = 0x80

#: MTU of the wire-side ends: above any link MTU, so the engine sees oversized frames
WIRE_MTU = 9000


def _netlink(what: str, exc: NetlinkError) -> TestbedError:
    code = exc.code if hasattr(exc, "code") else 0
    return TestbedError(f"{what}: {os.strerror(code) if code else exc}")


class Network:
    """The kernel side of a testbed. Build with `Network.build`; use as a context manager."""

    def __init__(
        self,
        topology: Topology,
        run: RunState,
        interfaces: dict[tuple[str, str], str],
        addresses: AddressPlan,
        routes: dict[str, list[Route]],
    ) -> None:
        self.topology = topology
        self.run = run
        self.interfaces = interfaces
        self.addresses = addresses
        self.routes = routes
        self.wire_netns = naming.wire_netns_name(run.prefix)
        self.link_ends: dict[str, tuple[str, str]] = {
            link.name: naming.wire_ifnames(k) for k, link in enumerate(topology.links)
        }
        self.hosts_file = os.path.join(run.dir, "hosts")
        self._torn_down = False

    @property
    def prefix(self) -> str:
        """The run prefix every object carries."""
        return self.run.prefix

    def node_netns(self, name: str) -> str:
        """Network namespace of node `name` (KeyError for an unknown node)."""
        self.topology.node(name)
        return naming.netns_name(self.run.prefix, name)

    # --- building ------------------------------------------------------------------

    @classmethod
    def build(cls, topology: Topology, run: RunState, *, rx_cpus: str | None = None) -> "Network":
        """Create every namespace, veth, address, route and sysctl of `topology`.

        Raises EnvironmentProblem when not root or namespaces are missing,
        ScenarioError for names or addresses that cannot work, TestbedError
        when the kernel refuses a step. On any failure (also Ctrl-C) the
        objects made so far are removed before the exception propagates.
        """
        kernel.check_environment()
        naming.check_node_names(topology)
        interfaces = naming.interface_names(topology)
        plan = address_plan(topology)
        routes = compute_routes(topology, plan, interfaces)
        if topology.dynamic_routing:
            # Routers learn their routes from the routing daemons
            # (emulator.routing); hosts run none and keep their static routes.
            routes = {node: [] if topology.node(node).role == "router" else table for node, table in routes.items()}
        network = cls(topology, run, interfaces, plan, routes)
        try:
            network._build()
            if rx_cpus:
                network.steer_receive(rx_cpus)
        except BaseException:
            problems = teardown(run)
            for problem in problems:
                log.error("cleanup after failed build: %s", problem)
            raise
        return network

    def _build(self) -> None:
        run = self.run
        run.set_meta("topology", {"name": self.topology.name, "source": self.topology.source})

        # Wire namespace first, IPv6 off before it holds any interface.
        self._make_netns(self.wire_netns)
        with kernel.in_netns(self.wire_netns):
            kernel.write_sysctl("net.ipv6.conf.all.disable_ipv6", 1)
            kernel.write_sysctl("net.ipv6.conf.default.disable_ipv6", 1)

        for node in self.topology.nodes:
            name = self.node_netns(node.name)
            self._make_netns(name)
            with kernel.in_netns(name):
                router = node.role == "router"
                kernel.write_sysctl("net.ipv4.ip_forward", int(router))
                kernel.write_sysctl("net.ipv6.conf.all.forwarding", int(router))
                for scope in ("all", "default"):
                    kernel.write_sysctl(f"net.ipv4.conf.{scope}.rp_filter", 0)
                    # no duplicate address detection: addresses usable at once
                    kernel.write_sysctl(f"net.ipv6.conf.{scope}.accept_dad", 0)
                    # no router solicitations: routes are configured, and
                    # chatter on the links would shift the engine's seeded
                    # random streams between two runs of the same scenario
                    kernel.write_sysctl(f"net.ipv6.conf.{scope}.router_solicitations", 0)

        handles: dict[str, IPRoute] = {}
        sockets: dict[str, socket.socket] = {}
        try:
            for name in [self.wire_netns] + [self.node_netns(n.name) for n in self.topology.nodes]:
                with kernel.in_netns(name):
                    # sockets made here stay in this namespace when we leave it
                    handles[name] = IPRoute()
                    sockets[name] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            wire = handles[self.wire_netns]
            self._up(wire, "lo", self.wire_netns)
            for k, link in enumerate(self.topology.links):
                for end, wire_if in zip((link.a, link.b), self.link_ends[link.name]):
                    self._make_veth(handles, sockets, k, link.name, link.mtu, end.node, wire_if)
            for node in self.topology.nodes:
                self._configure_node(handles[self.node_netns(node.name)], node.name)
            self._static_neighbours(handles)
        finally:
            for handle in handles.values():
                handle.close()
            for sock in sockets.values():
                sock.close()

        with open(self.hosts_file, "x") as f:
            f.write(hosts_file_text(self.topology, self.addresses))
        run.record("file", path=self.hosts_file)
        run.set_meta(
            "network",
            {
                "wire_netns": self.wire_netns,
                "nodes": {n.name: self.node_netns(n.name) for n in self.topology.nodes},
                "link_ends": self.link_ends,
                "hosts_file": self.hosts_file,
                "interfaces": {f"{node}/{link}": ifname for (node, link), ifname in self.interfaces.items()},
            },
        )

    def steer_receive(self, cpu_mask: str) -> None:
        """Process frames arriving at node-side interfaces on the CPUs in `cpu_mask` (RPS).

        The engine's sendmmsg into a veth would otherwise run the receiving
        node's whole stack (and, for TCP, the sender's ACK-clocked
        transmissions) in the engine's own context, on the engine's core.
        Steering that work to the other CPUs (`rps_cpus`, a hex mask) is what
        lets the engine keep up: see docs/benchmark.md.
        """
        for node in self.topology.nodes:
            values = {
                f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus": cpu_mask
                for (owner, _link), ifname in self.interfaces.items()
                if owner == node.name
            }
            write_in_netns(self.node_netns(node.name), values)
        self.run.set_meta("rx_cpus", cpu_mask)

    def _make_netns(self, name: str) -> None:
        # Recorded before it is made: a builder killed (SIGKILL) between the
        # two steps must not leave a namespace no record names. Teardown
        # tolerates a recorded name that was never made; a failed create made
        # nothing of ours (or hit someone else's name), so its record goes.
        entry = self.run.record("netns", name=name)
        try:
            kernel.create_netns(name)
        except TestbedError:
            self.run.forget(entry)
            raise

    def _up(self, ipr: IPRoute, ifname: str, netns: str, **settings: Any) -> int:
        """Look up `ifname` in `ipr`'s namespace, apply `settings`, bring it up; its index."""
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise TestbedError(f"interface {ifname} vanished from namespace {netns}")
        try:
            ipr.link("set", index=found[0], state="up", **settings)
        except NetlinkError as exc:
            raise _netlink(f"cannot set {ifname} in {netns} up with {settings}", exc) from exc
        return int(found[0])

    def _make_veth(
        self,
        handles: dict[str, IPRoute],
        sockets: dict[str, socket.socket],
        k: int,
        link: str,
        mtu: int,
        node: str,
        wire_if: str,
    ) -> None:
        node_ns = self.node_netns(node)
        node_if = self.interfaces[(node, link)]
        try:
            handles[node_ns].link(
                "add", ifname=node_if, kind="veth", peer={"ifname": wire_if, "net_ns_fd": self.wire_netns}
            )
        except NetlinkError as exc:
            raise _netlink(f"cannot create veth {node_if} ({node_ns}) <-> {wire_if} ({self.wire_netns})", exc) from exc
        # No record of its own: the pair lives in recorded namespaces and
        # goes with them.
        kernel.offloads_off(sockets[node_ns], node_if)
        kernel.offloads_off(sockets[self.wire_netns], wire_if)
        self._up(handles[node_ns], node_if, node_ns, mtu=mtu)
        self._up(handles[self.wire_netns], wire_if, self.wire_netns, mtu=WIRE_MTU)

    def _configure_node(self, ipr: IPRoute, node: str) -> None:
        netns = self.node_netns(node)
        plan = self.addresses
        lo = self._up(ipr, "lo", netns)
        for address in (plan.loopback4[node], plan.loopback6[node]):
            self._add_address(ipr, lo, "lo", netns, address)
        for link in self.topology.links_of(node):
            ifname = self.interfaces[(node, link.name)]
            index = ipr.link_lookup(ifname=ifname)[0]
            for address in (plan.link4[(node, link.name)], plan.link6[(node, link.name)]):
                self._add_address(ipr, index, ifname, netns, address)
        for route in self.routes[node]:
            index = ipr.link_lookup(ifname=route.dev)[0]
            # Traffic a node originates leaves from its own (loopback)
            # address, the one its name resolves to: a UDP server that
            # connect()s back to its client (iperf3 -u) must answer from the
            # address the client sent to, or the client's connected socket
            # refuses the reply.
            source = plan.loopback4[node] if route.family == 4 else plan.loopback6[node]
            try:
                ipr.route("add", dst=route.prefix, gateway=route.via, oif=index, prefsrc=str(source.ip))
            except NetlinkError as exc:
                raise _netlink(f"cannot add route {route.prefix} via {route.via} dev {route.dev} in {netns}", exc) from exc

    def _static_neighbours(self, handles: dict[str, IPRoute]) -> None:
        """Permanent ARP/ND entries for every link's far end.

        A point-to-point cable needs no address resolution, and with it an
        impaired link would lose ARP and ND too: a lost ARP reply makes the
        sending router drop everything queued for that neighbour for a
        second, a loss the link's model never drew. With static entries the
        link's loss, cuts and delays apply to the traffic alone.
        """
        macs: dict[tuple[str, str], str] = {}
        link_local: dict[tuple[str, str], str] = {}
        for (node, link), ifname in self.interfaces.items():
            ipr = handles[self.node_netns(node)]
            index = ipr.link_lookup(ifname=ifname)[0]
            macs[(node, link)] = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
            # the IPv6 link-local address (OSPFv3's next hops), made by the kernel when the link came up
            for address in ipr.get_addr(family=10, index=index):
                value = address.get_attr("IFA_ADDRESS")
                if value and value.startswith("fe80:"):
                    link_local[(node, link)] = value
        for link in self.topology.links:
            for here, there in ((link.a.node, link.b.node), (link.b.node, link.a.node)):
                ipr = handles[self.node_netns(here)]
                index = ipr.link_lookup(ifname=self.interfaces[(here, link.name)])[0]
                peers = [str(plan[(there, link.name)].ip) for plan in (self.addresses.link4, self.addresses.link6)]
                if (there, link.name) in link_local:
                    peers.append(link_local[(there, link.name)])
                for peer in peers:
                    try:
                        ipr.neigh("add", dst=peer, lladdr=macs[(there, link.name)], ifindex=index,
                                  state=NUD_PERMANENT)
                    except NetlinkError as exc:
                        raise _netlink(f"cannot add neighbour {peer} on {here}/{link.name}", exc) from exc

    @staticmethod
    def _add_address(ipr: IPRoute, index: int, ifname: str, netns: str, address: Any) -> None:
        # IPv6: no DAD at all (IFA_F_NODAD). Even with accept_dad=0 a fresh
        # address is "tentative" until a kernel worker has run, and a route
        # naming it as preferred source would be refused (EINVAL) meanwhile.
        extra = {"flags": IFA_F_NODAD} if address.version == 6 else {}
        try:
            ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen, **extra)
        except NetlinkError as exc:
            raise _netlink(f"cannot add address {address} to {ifname} in {netns}", exc) from exc

    # --- running things in nodes ------------------------------------------------------

    def popen(self, node: str, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen:
        """Start `argv` in node `node` with the testbed's hosts file; its subprocess.Popen.

        The caller owns the process; record it (`run.record("process", ...)`)
        if it must be killed at teardown.
        """
        from emulator.network.exec import popen_in_node

        return popen_in_node(self.node_netns(node), argv, self.hosts_file, **popen_kwargs)

    def record_process(self, pid: int, role: str) -> None:
        """Record a started process so teardown stops it (PID + start time)."""
        starttime = kernel.process_starttime(pid)
        if starttime is None:
            raise TestbedError(f"process {pid} ({role}) is already gone")
        self.run.record("process", pid=pid, starttime=starttime, role=role)

    # --- tearing down -------------------------------------------------------------

    def teardown(self, *, timeout_s: float = 5) -> list[str]:
        """Remove everything the run recorded; the problems found (empty = clean)."""
        self._torn_down = True
        return teardown(self.run, timeout_s=timeout_s)

    def __enter__(self) -> "Network":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        problems = self.teardown()
        if problems and exc_type is None:
            raise TestbedError("teardown left problems: " + "; ".join(problems))
        for problem in problems:
            log.error("teardown: %s", problem)
