"""What every routing daemon family shares: processes, control clients, the kernel's view, convergence.

`RoutingDaemons(network)` is the base of `BirdDaemons`
(`emulator.routing.bird_daemons`) and `FrrDaemons`
(`emulator.routing.frr_daemons`); `emulator.routing.registry` picks one from
the topology's `routing.daemon`. A subclass writes the configs and starts
its daemons (`start`) with `Network.popen`, in the foreground, so the PID
recorded in the run state is the daemon's own (teardown stops it by PID
with the other recorded processes); it says how to tell a dead one
(`_exited`), which sessions are not up yet (`sessions_down`), what the
daemons report (`ospf_neighbours`, `bfd_sessions`, `routes`, as the shared
records of `emulator.routing.state`) and what their logs say
(`state_events`).

Here: `run_client` (birdc, vtysh, run to their end), the kernel's routes read
with pyroute2 inside a node's namespace (`read_kernel_route`), and
`wait_converged`: until every router's kernel table holds a route to every
other node's loopback and no table has changed for ROUTES_STABLE_S (and
every BGP session is Established, every BFD session Up).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pyroute2 import IPRoute

from emulator.errors import TestbedError
from emulator.network import kernel
from emulator.routing.events import MAIN_TABLE, StateEvent
from emulator.routing.state import BfdSession, BgpSession, KernelRoute, OspfNeighbour, Route

if TYPE_CHECKING:
    from emulator.network.network import Network
    from emulator.scenario.topology import RoutingConfig, Topology

#: Linux sun_path holds 108 bytes including the terminating NUL
MAX_SOCKET_PATH = 107
#: converged = every route present and no router's kernel table changed for this long:
#: twice BIRD's 1 s OSPF tick (bird.OSPF_TICK_S; FRR's SPF runs within 50 ms to 1 s), so
#: an SPF run still pending on a busy CPU lands before the scenario starts (a route to
#: every node can exist before the best route does: seen under stress-ng, the
#: corridor's path before its cut traced through the detour)
ROUTES_STABLE_S = 2.0
#: how often wait_converged reads the tables again
CONVERGENCE_POLL_S = 0.2

#: a main-table route as convergence compares it: (prefix, (gateway, interface index, multipath next hops))
TableEntry = tuple[str, tuple[Any, ...]]


def routing_config(topology: Topology) -> RoutingConfig:
    """The topology's `routing:` section; TestbedError if it has none (static routing runs no daemon)."""
    if topology.routing is None:
        raise TestbedError(f"topology {topology.name!r} routes statically: it has no routing daemons to run "
                           "(give it routing: {protocol: ospf} or bgp)")
    return topology.routing


def run_client(argv: list[str], what: str, timeout_s: float) -> str:
    """Run a daemon's control client (birdc, vtysh) to its end; its output (TestbedError naming `what` if it fails)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TestbedError(f"{what}: no answer in {timeout_s:g} s") from None
    if done.returncode != 0:
        raise TestbedError(f"{what}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[-200:]}")
    return done.stdout


# ---------------------------------------------------------------------------
# Kernel routes, read inside a node's namespace


def read_kernel_route(netns: str, prefix: str) -> KernelRoute | None:
    """The kernel's route for exactly `prefix` in namespace `netns` (main table), or None."""
    network = ipaddress.ip_network(prefix, strict=False)
    family = 2 if network.version == 4 else 10
    with kernel.in_netns(netns):
        ipr = IPRoute()
    try:
        for route in ipr.get_routes(family=family, table=MAIN_TABLE):
            if route["dst_len"] != network.prefixlen:
                continue
            dst = route.get_attr("RTA_DST")
            if network.prefixlen and (dst is None or ipaddress.ip_address(dst) != network.network_address):
                continue
            oif = route.get_attr("RTA_OIF")
            names = ipr.get_links(oif) if oif else []
            return KernelRoute(prefix=str(network), gateway=route.get_attr("RTA_GATEWAY"),
                               dev=names[0].get_attr("IFLA_IFNAME") if names else None, protocol=route["proto"])
        return None
    finally:
        ipr.close()


def _kernel_routes(ipr: IPRoute, family: int = 2) -> set[TableEntry]:
    """(prefix, (gateway, interface index, multipath next hops)) of each main-table route (IPv4: 2, IPv6: 10)."""
    found = set()
    for route in ipr.get_routes(family=family, table=MAIN_TABLE):
        dst = route.get_attr("RTA_DST")
        if dst is not None:
            hops = tuple(sorted((str(h.get_attr("RTA_GATEWAY")), h.get("oif", 0))
                                for h in (route.get_attr("RTA_MULTIPATH") or [])))
            found.add((f"{dst}/{route['dst_len']}", (route.get_attr("RTA_GATEWAY"), route.get_attr("RTA_OIF"), hops)))
    return found


# ---------------------------------------------------------------------------
# The daemons of one network


class RoutingDaemons(ABC):
    """What every daemon family shares: the routers, their processes, convergence and the kernel's view."""

    #: the daemon family's name in messages, the run's meta and its directory ("bird", "frr")
    name: ClassVar[str] = ""
    #: whether the daemons route IPv6 too (then convergence waits for the IPv6 loopbacks as well)
    routes_ipv6 = False

    def __init__(self, network: Network) -> None:
        self.network = network
        self.topology = network.topology
        #: the topology's `routing:` section (protocol, daemon, timers, BFD)
        self.routing_config = routing_config(self.topology)
        self.dir = os.path.join(network.run.dir, self.name)
        self.routers = [node.name for node in self.topology.routers()]
        #: every daemon process started, by "ROUTER" (BIRD) or "ROUTER DAEMON" (FRR)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    @abstractmethod
    def check_binaries(cls, topology: Topology) -> None:
        """EnvironmentProblem naming the fix if a program the topology's daemons need is missing."""

    @abstractmethod
    def start(self, *, timeout_s: float = 10.0) -> None:
        """Write the configs, start every daemon and wait until all answer (TestbedError if one does not)."""

    @abstractmethod
    def state_events(self) -> list[StateEvent]:
        """Every router's logged protocol state changes so far, in time order."""

    @abstractmethod
    def ospf_neighbours(self, node: str, *, ipv6: bool = False) -> list[OspfNeighbour]:
        """OSPFv2 (or, with `ipv6`, OSPFv3) neighbours of router `node`."""

    @abstractmethod
    def bfd_sessions(self, node: str) -> list[BfdSession]:
        """BFD sessions of router `node`; empty without BFD."""

    @abstractmethod
    def routes(self, node: str) -> list[Route]:
        """Routes in the daemon's own table of router `node`."""

    def bgp_sessions(self, node: str) -> list[BgpSession]:
        """BGP sessions of router `node`; empty unless the daemons run BGP."""
        return []

    def sessions_down(self) -> dict[str, list[str]]:
        """{router: [links whose session is not up]} (empty = all up; only BGP has such sessions)."""
        return {}

    def bfd_down(self) -> dict[str, list[str]]:
        """{router: [BFD peers not Up]} (empty = every router-to-router link has its session Up, or no BFD).

        A cut before BFD is up would be found by the dead or hold timer
        instead: convergence waits for BFD too.
        """
        if self.routing_config.bfd is None:
            return {}
        roles = {n.name: n.role for n in self.topology.nodes}
        plan = self.network.addresses
        down: dict[str, list[str]] = {}
        for node in self.routers:
            sessions = [s for s in self.bfd_sessions(node) if s.state == "Up"]
            up = {s.address for s in sessions}
            for link in self.topology.links_of(node):
                peer = link.b.node if link.a.node == node else link.a.node
                if roles[peer] != "router":
                    continue
                if str(plan.link4[(peer, link.name)].ip) not in up:
                    down.setdefault(node, []).append(f"BFD to {peer}")
                # OSPFv3's session runs between link-local addresses: one more Up on the interface
                ifname = self.network.interfaces[(node, link.name)]
                if self.routes_ipv6 and not any(s.interface == ifname and str(s.address).startswith("fe80:")
                                                for s in sessions):
                    down.setdefault(node, []).append(f"BFD (IPv6) to {peer}")
        return down

    def _exited(self) -> str | None:
        """A message naming a daemon that has exited, or None while all run."""
        for key, proc in self.processes.items():
            if proc.poll() is not None:
                return f"{self.name} {key} exited with {proc.returncode}: {self._stderr(key.split()[0])}"
        return None

    def _stderr(self, node: str) -> str:
        """The tail of what `node`'s daemon printed (a subclass that keeps it says)."""
        return "(no output)"

    def missing_routes(self) -> dict[str, list[str]]:
        """{router: [other nodes whose loopback is not in its kernel table]} (empty = converged).

        IPv4 loopbacks (/32) always; IPv6 loopbacks (/128, named `NODE (IPv6)`) when the daemons route IPv6.
        """
        return self._read_tables()[0]

    def _read_tables(self) -> tuple[dict[str, list[str]], dict[str, frozenset[TableEntry]]]:
        """What missing_routes returns, and every router's main table (prefix and next hops)."""
        plan = self.network.addresses
        missing: dict[str, list[str]] = {}
        tables: dict[str, frozenset[TableEntry]] = {}
        for node in self.routers:
            with kernel.in_netns(self.network.node_netns(node)):
                ipr = IPRoute()
            try:
                routes = _kernel_routes(ipr)
                routes6 = _kernel_routes(ipr, 10) if self.routes_ipv6 else set()
            finally:
                ipr.close()
            tables[node] = frozenset(routes | routes6)
            have = {prefix for prefix, _ in routes}
            have6 = {prefix for prefix, _ in routes6}
            lacking = [other.name for other in self.topology.nodes
                       if other.name != node and str(plan.loopback4[other.name].network) not in have]
            if self.routes_ipv6:
                lacking += [f"{other.name} (IPv6)" for other in self.topology.nodes
                            if other.name != node and str(plan.loopback6[other.name].network) not in have6]
            if lacking:
                missing[node] = lacking
        return missing, tables

    def wait_converged(self, *, timeout_s: float = 30.0) -> float:
        """Wait until every router has a kernel route to every other node's loopback
        and no router's table has changed for ROUTES_STABLE_S; seconds it took (to the
        last change).

        With BGP, also until every session is Established; with BFD, until
        every BFD session is Up. TestbedError after
        `timeout_s`, naming which router lacks which routes (or sessions).
        """
        start = time.monotonic()
        last_tables: dict[str, frozenset[TableEntry]] | None = None
        stable_since = start
        while True:
            missing, tables = self._read_tables()
            if tables != last_tables:
                last_tables, stable_since = tables, time.monotonic()
            down = {} if missing else (self.sessions_down() or self.bfd_down())
            if not missing and not down and time.monotonic() - stable_since >= ROUTES_STABLE_S:
                return stable_since - start
            exited = self._exited()
            if exited:
                raise TestbedError(exited)
            if time.monotonic() - start > timeout_s:
                detail = "; ".join(f"{node} lacks {', '.join(others)}" for node, others in missing.items())
                detail = detail or "; ".join(f"{node}: not up: {', '.join(items)}" for node, items in down.items())
                protocol = self.routing_config.protocol.upper()
                raise TestbedError(f"{protocol} did not converge in {timeout_s:g} s: {detail}")
            time.sleep(CONVERGENCE_POLL_S)

    def kernel_route(self, node: str, prefix: str) -> KernelRoute | None:
        """The kernel route for exactly `prefix` in `node`'s namespace (see `read_kernel_route`)."""
        return read_kernel_route(self.network.node_netns(node), prefix)
