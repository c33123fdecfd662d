"""BIRD 2 daemons in the router namespaces of a running network, and what they know.

`BirdDaemons(network)` writes each router's configuration (`emulator.routing.bird`)
to `{run dir}/bird/{node}.conf` and starts

    bird -c {node}.conf -s {node}.ctl -P {node}.pid -f

inside the router's namespace with `Network.popen` (foreground, so the PID
recorded in the run state is BIRD's own; teardown stops it by PID with the
other recorded processes). `start()` returns once every daemon answers
`birdc -s {node}.ctl show status`; `wait_converged()` once every router's
kernel table holds a route to every other node's loopback and no table has
changed for ROUTES_STABLE_S (and, with BGP, every session is Established).

State readers parse birdc's text (`ospf_neighbours`, `bgp_sessions`,
`protocols`, `routes`, `bfd_sessions`) or read the kernel (`kernel_route`, with pyroute2 inside the
node's namespace). The control sockets are in the run's meta under
`routing.sockets`, so `caspian exec ROUTER -- birdc show ospf neighbors`
finds them (docs/routing.md).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import time
from typing import Any

from pyroute2 import IPRoute

from emulator.errors import EnvironmentProblem, TestbedError
from emulator.network import kernel
from emulator.routing.bird import bgp_protocol_names, bird_config
from emulator.routing.events import StateEvent, bird_log_events

#: Linux sun_path holds 108 bytes including the terminating NUL
MAX_SOCKET_PATH = 107
#: kernel route protocol number BIRD installs its routes with (rtnetlink RTPROT_BIRD)
RTPROT_BIRD = 12
#: how long one birdc call may take
BIRDC_TIMEOUT_S = 5.0
#: converged = every route present and no router's kernel table changed for this long:
#: twice BIRD's 1 s OSPF tick (bird.OSPF_TICK_S; FRR's SPF runs within 50 ms to 1 s), so
#: an SPF run still pending on a busy CPU lands before the scenario starts (a route to
#: every node can exist before the best route does: seen under stress-ng, the
#: corridor's path before its cut traced through the detour)
ROUTES_STABLE_S = 2.0


def bird_binaries() -> tuple[str, str]:
    """Paths of `bird` and `birdc`; EnvironmentProblem naming the fix if either is missing."""
    found = []
    for name in ("bird", "birdc"):
        path = shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)), None
        )
        if path is None:
            raise EnvironmentProblem(
                f"{name} (BIRD 2) is missing, and routing: ospf or bgp runs it in every router "
                "(apt-get install bird2, or `make run`)"
            )
        found.append(path)
    return found[0], found[1]


def run_client(argv: list[str], what: str, timeout_s: float) -> str:
    """Run a daemon's control client (birdc, vtysh) to its end; its output (TestbedError naming `what` if it fails)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TestbedError(f"{what}: no answer in {timeout_s:g} s") from None
    if done.returncode != 0:
        raise TestbedError(f"{what}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[-200:]}")
    return done.stdout


def birdc(socket_path: str, *command: str, timeout_s: float = BIRDC_TIMEOUT_S) -> str:
    """Run one birdc command against the daemon at `socket_path`; its output (TestbedError if it fails)."""
    _, client = bird_binaries()
    return run_client([client, "-s", socket_path, *command], f"birdc -s {socket_path} {' '.join(command)}", timeout_s)


# ---------------------------------------------------------------------------
# Parsers of birdc output (pure; unit-tested)

_NEIGHBOUR = re.compile(r"^(\d+\.\d+\.\d+\.\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


def parse_ospf_neighbours(text: str) -> list[dict[str, Any]]:
    """`show ospf neighbors` -> [{router_id, priority, state, dead_s, interface, address}].

    `state` is BIRD's word without the role (`Full`, `Init`, ...).
    """
    result = []
    for line in text.splitlines():
        match = _NEIGHBOUR.match(line.strip())
        if match:
            rid, pri, state, dtime, iface, address = match.groups()
            result.append({"router_id": rid, "priority": int(pri), "state": state.split("/")[0],
                           "dead_s": float(dtime) if re.fullmatch(r"[\d.]+", dtime) else None,
                           "interface": iface, "address": address})
    return result


def parse_protocols(text: str) -> list[dict[str, Any]]:
    """`show protocols` -> [{name, proto, table, state, since, info}] (`info`: BGP's `Established`, ...)."""
    result = []
    for line in text.splitlines():
        words = line.split(None, 5)
        if len(words) < 5 or words[0] in ("Name", "BIRD") or words[3] not in ("up", "down", "start", "stop", "flush"):
            continue
        result.append({"name": words[0], "proto": words[1], "table": words[2], "state": words[3],
                       "since": words[4], "info": words[5].strip() if len(words) > 5 else ""})
    return result


_ROUTE_HEAD = re.compile(r"^(\S+/\d+)\s+(\S+)\s+\[(\S+?)\s")
_ROUTE_CONT = re.compile(r"^\s+(\S+)\s+\[(\S+?)\s")
_VIA = re.compile(r"^\s+via\s+(\S+)\s+on\s+(\S+)")
_DEV = re.compile(r"^\s+dev\s+(\S+)")


def parse_routes(text: str) -> list[dict[str, Any]]:
    """`show route` -> [{prefix, protocol, via, dev, best}] (one entry per route, best first per prefix)."""
    routes: list[dict[str, Any]] = []
    prefix = None
    for line in text.splitlines():
        head = _ROUTE_HEAD.match(line)
        cont = None if head else _ROUTE_CONT.match(line)
        if head or (cont and prefix and not line.lstrip().startswith(("via", "dev"))):
            if head:
                prefix = head.group(1)
                protocol = head.group(3)
            else:
                protocol = cont.group(2)
            routes.append({"prefix": prefix, "protocol": protocol, "via": None, "dev": None,
                           "best": "*" in line.split("]")[1][:3] if "]" in line else False})
            continue
        via = _VIA.match(line)
        if via and routes:
            routes[-1]["via"], routes[-1]["dev"] = via.group(1), via.group(2)
            continue
        dev = _DEV.match(line)
        if dev and routes:
            routes[-1]["dev"] = dev.group(1)
    return routes


_BFD = re.compile(r"^(\S+)\s+(\S+)\s+(Up|Down|Init|AdminDown)\s+(.+?)\s+(\d+\.\d+)\s+(\d+\.\d+)\s*$")


def parse_bfd_sessions(text: str) -> list[dict[str, Any]]:
    """`show bfd sessions` -> [{address, interface, state, since, interval_s, timeout_s}]."""
    result = []
    for line in text.splitlines():
        match = _BFD.match(line.strip())
        if match:
            address, iface, state, since, interval, timeout = match.groups()
            result.append({"address": address, "interface": iface, "state": state, "since": since,
                           "interval_s": float(interval), "timeout_s": float(timeout)})
    return result


# ---------------------------------------------------------------------------
# Kernel routes, read inside a node's namespace


def read_kernel_route(netns: str, prefix: str) -> dict[str, Any] | None:
    """The kernel's route for exactly `prefix` in namespace `netns` (main table), or None.

    Returns {prefix, gateway, dev, protocol} (`protocol` 12 = BIRD, 4 = static).
    """
    network = ipaddress.ip_network(prefix, strict=False)
    family = 2 if network.version == 4 else 10
    with kernel.in_netns(netns):
        ipr = IPRoute()
    try:
        for route in ipr.get_routes(family=family, table=254):
            if route["dst_len"] != network.prefixlen:
                continue
            dst = route.get_attr("RTA_DST")
            if network.prefixlen and (dst is None or ipaddress.ip_address(dst) != network.network_address):
                continue
            oif = route.get_attr("RTA_OIF")
            names = ipr.get_links(oif) if oif else []
            return {
                "prefix": str(network),
                "gateway": route.get_attr("RTA_GATEWAY"),
                "dev": names[0].get_attr("IFLA_IFNAME") if names else None,
                "protocol": route["proto"],
            }
        return None
    finally:
        ipr.close()


def _kernel_prefixes(ipr: IPRoute, family: int = 2) -> set[str]:
    """Destination prefixes of the main table (IPv4: family 2, IPv6: 10) seen through `ipr`."""
    return {prefix for prefix, _ in _kernel_routes(ipr, family)}


def _kernel_routes(ipr: IPRoute, family: int = 2) -> set[tuple[str, tuple[Any, ...]]]:
    """(prefix, (gateway, interface index, multipath next hops)) of each main-table route."""
    found = set()
    for route in ipr.get_routes(family=family, table=254):
        dst = route.get_attr("RTA_DST")
        if dst is not None:
            hops = tuple(sorted((str(h.get_attr("RTA_GATEWAY")), h.get("oif", 0))
                                for h in (route.get_attr("RTA_MULTIPATH") or [])))
            found.add((f"{dst}/{route['dst_len']}", (route.get_attr("RTA_GATEWAY"), route.get_attr("RTA_OIF"), hops)))
    return found


# ---------------------------------------------------------------------------
# The daemons of one network


class RoutingDaemons:
    """What every daemon family shares: the routers, their processes, convergence and the kernel's view.

    A subclass starts the daemons (`start`), says how to tell a dead one
    (`_exited`), which sessions are not up yet (`sessions_down`) and what
    its logs say (`state_events`).
    """

    #: the daemon family's name in messages and the run's meta ("bird", "frr")
    name = ""

    def __init__(self, network: Any) -> None:
        self.network = network
        self.topology = network.topology
        self.dir = os.path.join(network.run.dir, self.name)
        self.routers = [node.name for node in self.topology.routers()]
        #: every daemon process started, by "ROUTER" (BIRD) or "ROUTER DAEMON" (FRR)
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, *, timeout_s: float = 10.0) -> None:
        raise NotImplementedError

    def state_events(self) -> list[StateEvent]:
        """Every router's logged protocol state changes so far, in time order."""
        raise NotImplementedError

    def sessions_down(self) -> dict[str, list[str]]:
        """{router: [links whose session is not up]} (empty = all up; only BGP has such sessions)."""
        return {}

    def bfd_sessions(self, node: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def bfd_down(self) -> dict[str, list[str]]:
        """{router: [BFD peers not Up]} (empty = every router-to-router link has its session Up, or no BFD).

        A cut before BFD is up would be found by the dead or hold timer
        instead: convergence waits for BFD too.
        """
        if self.topology.routing.bfd is None:
            return {}
        roles = {n.name: n.role for n in self.topology.nodes}
        plan = self.network.addresses
        down: dict[str, list[str]] = {}
        for node in self.routers:
            sessions = [s for s in self.bfd_sessions(node) if s["state"] == "Up"]
            up = {s["address"] for s in sessions}
            for link in self.topology.links_of(node):
                peer = link.b.node if link.a.node == node else link.a.node
                if roles[peer] != "router":
                    continue
                if str(plan.link4[(peer, link.name)].ip) not in up:
                    down.setdefault(node, []).append(f"BFD to {peer}")
                # OSPFv3's session runs between link-local addresses: one more Up on the interface
                ifname = self.network.interfaces[(node, link.name)]
                if self.routes_ipv6 and not any(s["interface"] == ifname and str(s["address"]).startswith("fe80:")
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
        return "(no output)"

    #: whether the daemons route IPv6 too (then convergence waits for the IPv6 loopbacks as well)
    routes_ipv6 = False

    def missing_routes(self) -> dict[str, list[str]]:
        """{router: [other nodes whose loopback is not in its kernel table]} (empty = converged).

        IPv4 loopbacks (/32) always; IPv6 loopbacks (/128, named `NODE (IPv6)`) when the daemons route IPv6.
        """
        return self._read_tables()[0]

    def _read_tables(self) -> tuple[dict[str, list[str]], dict[str, frozenset[Any]]]:
        """What missing_routes returns, and every router's main table (prefix and next hops)."""
        plan = self.network.addresses
        missing: dict[str, list[str]] = {}
        tables: dict[str, frozenset[Any]] = {}
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
        last_tables: dict[str, frozenset[Any]] | None = None
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
                protocol = self.topology.routing.protocol.upper()
                raise TestbedError(f"{protocol} did not converge in {timeout_s:g} s: {detail}")
            time.sleep(0.2)

    def kernel_route(self, node: str, prefix: str) -> dict[str, Any] | None:
        """The kernel route for exactly `prefix` in `node`'s namespace (see `read_kernel_route`)."""
        return read_kernel_route(self.network.node_netns(node), prefix)


def routing_daemons(network: Any) -> RoutingDaemons:
    """The daemon family the network's topology asks for (`routing.daemon`), not started yet."""
    if network.topology.routing.daemon == "frr":
        from emulator.routing.frr_daemons import FrrDaemons

        return FrrDaemons(network)
    return BirdDaemons(network)


def check_binaries(topology: Any) -> None:
    """EnvironmentProblem, before anything is made, if the topology's routing daemon is not installed."""
    if topology.routing.daemon == "frr":
        from emulator.routing.frr_daemons import frr_binaries

        frr_binaries(topology)
    else:
        bird_binaries()


class BirdDaemons(RoutingDaemons):
    """The BIRD daemons of a built `Network` whose topology asks for OSPF or BGP."""

    name = "bird"

    def __init__(self, network: Any) -> None:
        super().__init__(network)
        self.sockets = {node: os.path.join(self.dir, f"{node}.ctl") for node in self.routers}
        # OSPF runs as v2 (IPv4) and v3 (IPv6); the eBGP sessions carry IPv4 only
        self.routes_ipv6 = self.topology.routing.protocol == "ospf"

    def paths(self, node: str) -> dict[str, str]:
        """Config, socket, pid and log file of `node`'s daemon."""
        base = os.path.join(self.dir, node)
        return {"config": base + ".conf", "socket": base + ".ctl", "pid": base + ".pid", "log": base + ".log"}

    # -- lifecycle ------------------------------------------------------------

    def start(self, *, timeout_s: float = 10.0) -> None:
        """Write every router's config, start its BIRD and wait until all answer on their sockets.

        Raises EnvironmentProblem if BIRD is missing, TestbedError if a daemon
        refuses its config, exits, or does not answer within `timeout_s`.
        Every started daemon is recorded in the run state before anything else.
        """
        daemon, _ = bird_binaries()
        if not self.routers:
            return
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        too_long = [p for p in self.sockets.values() if len(p.encode()) > MAX_SOCKET_PATH]
        if too_long:
            raise TestbedError(f"BIRD control socket path {too_long[0]!r} is longer than {MAX_SOCKET_PATH} bytes "
                               "(use a shorter --state-root)")
        self.network.run.set_meta("routing", {
            "protocol": self.topology.routing.protocol, "daemon": "bird", "dir": self.dir,
            "sockets": dict(self.sockets),
        })
        for node in self.routers:
            files = self.paths(node)
            text = bird_config(self.topology, self.network.addresses, node, self.network.interfaces,
                               log_file=files["log"])
            with open(files["config"], "w") as fh:
                fh.write(text)
            argv = [daemon, "-c", files["config"], "-s", files["socket"], "-P", files["pid"], "-f"]
            with open(files["log"] + ".stderr", "wb") as err:
                proc = self.network.popen(node, argv, stdout=subprocess.DEVNULL, stderr=err,
                                          stdin=subprocess.DEVNULL)
            self.processes[node] = proc
            try:
                self.network.record_process(proc.pid, f"bird {node}")
            except TestbedError:
                raise TestbedError(f"bird in router {node} exited at once: {self._stderr(node)}") from None
        deadline = time.monotonic() + timeout_s
        for node in self.routers:
            self._wait_ready(node, deadline)

    def state_events(self) -> list[StateEvent]:
        """Every router's logged BFD/OSPF/BGP state changes so far, in time order."""
        events: list[StateEvent] = []
        for node in self.routers:
            try:
                with open(self.paths(node)["log"], errors="replace") as fh:
                    events += bird_log_events(fh.read(), node)
            except FileNotFoundError:
                continue   # a daemon that never started writes no log
        return sorted(events, key=lambda e: e.t_ns)

    def _stderr(self, node: str) -> str:
        try:
            with open(self.paths(node)["log"] + ".stderr", errors="replace") as fh:
                return fh.read().strip()[-300:] or "(no output)"
        except OSError:
            return "(no output)"

    def _wait_ready(self, node: str, deadline: float) -> None:
        proc = self.processes[node]
        while True:
            if proc.poll() is not None:
                raise TestbedError(f"bird in router {node} exited with {proc.returncode}: {self._stderr(node)} "
                                   f"(config {self.paths(node)['config']})")
            if os.path.exists(self.sockets[node]):
                try:
                    if "up and running" in birdc(self.sockets[node], "show", "status", timeout_s=2):
                        return
                except TestbedError:
                    pass
            if time.monotonic() > deadline:
                raise TestbedError(f"bird in router {node} did not answer on {self.sockets[node]} in time")
            time.sleep(0.05)

    def sessions_down(self) -> dict[str, list[str]]:
        """{router: [links whose BGP session is not Established]} (empty = all up, and always without BGP)."""
        if self.topology.routing.protocol != "bgp":
            return {}
        down: dict[str, list[str]] = {}
        for node in self.routers:
            states = {s["name"]: s["info"] for s in self.protocols(node)}
            for name, link in bgp_protocol_names(self.topology, node).items():
                if not states.get(name, "").startswith("Established"):
                    down.setdefault(node, []).append(f"BGP on {link}")
        return down

    # -- state ------------------------------------------------------------------

    def _socket(self, node: str) -> str:
        try:
            return self.sockets[node]
        except KeyError:
            raise TestbedError(f"{node!r} runs no BIRD (routers: {', '.join(self.routers)})") from None

    def birdc(self, node: str, *command: str) -> str:
        """Output of a birdc command in router `node`."""
        return birdc(self._socket(node), *command)

    def ospf_neighbours(self, node: str, *, ipv6: bool = False) -> list[dict[str, Any]]:
        """OSPFv2 (or, with `ipv6`, OSPFv3) neighbours of router `node` (see `parse_ospf_neighbours`)."""
        return parse_ospf_neighbours(self.birdc(node, "show", "ospf", "neighbors", "ospf6" if ipv6 else "ospf4"))

    def protocols(self, node: str) -> list[dict[str, Any]]:
        """BIRD's protocols in router `node` (see `parse_protocols`)."""
        return parse_protocols(self.birdc(node, "show", "protocols"))

    def bgp_sessions(self, node: str) -> list[dict[str, Any]]:
        """BGP sessions of router `node`: [{name, link, state, info, since}] (`info` `Established` when up).

        Empty without BGP.
        """
        if self.topology.routing.protocol != "bgp":
            return []
        links = bgp_protocol_names(self.topology, node)
        return [{**p, "link": links[p["name"]]} for p in self.protocols(node) if p["name"] in links]

    def routes(self, node: str) -> list[dict[str, Any]]:
        """Routes in BIRD's table of router `node` (see `parse_routes`)."""
        return parse_routes(self.birdc(node, "show", "route"))

    def bfd_sessions(self, node: str) -> list[dict[str, Any]]:
        """BFD sessions of router `node` (see `parse_bfd_sessions`); empty without BFD."""
        if self.topology.routing.bfd is None:
            return []
        return parse_bfd_sessions(self.birdc(node, "show", "bfd", "sessions"))
