"""BIRD 2 daemons in the router namespaces of a running network, and what they know.

`BirdDaemons(network)` writes each router's configuration (`emulator.routing.bird`)
to `{run dir}/bird/{node}.conf` and starts

    bird -c {node}.conf -s {node}.ctl -P {node}.pid -f

inside the router's namespace with `Network.popen` (foreground, so the PID
recorded in the run state is BIRD's own; teardown stops it by PID with the
other recorded processes). `start()` returns once every daemon answers
`birdc -s {node}.ctl show status`; convergence is the base class's
(`emulator.routing.daemons.RoutingDaemons.wait_converged`), with BGP every
session Established too.

State readers parse birdc's text (`ospf_neighbours`, `bgp_sessions`,
`protocols`, `routes`, `bfd_sessions`) into the records of
`emulator.routing.state`. The control sockets are in the run's meta under
`routing.sockets`, so `caspian exec ROUTER -- birdc show ospf neighbors`
finds them (docs/routing.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from emulator.errors import EnvironmentProblem, TestbedError
from emulator.routing.bird import bgp_protocol_names, bird_config
from emulator.routing.daemons import MAX_SOCKET_PATH, RoutingDaemons, run_client
from emulator.routing.events import StateEvent, bird_log_events
from emulator.routing.state import BfdSession, BgpSession, OspfNeighbour, Protocol, Route

if TYPE_CHECKING:
    from emulator.network.network import Network
    from emulator.scenario.topology import Topology

#: kernel route protocol number BIRD installs its routes with (rtnetlink RTPROT_BIRD)
RTPROT_BIRD = 12
#: how long one birdc call may take
BIRDC_TIMEOUT_S = 5.0
#: how long one readiness probe (`show status`) may take while a daemon starts
READY_TIMEOUT_S = 2
#: how often a starting daemon's socket is looked at
READY_POLL_S = 0.05


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


def birdc(socket_path: str, *command: str, timeout_s: float = BIRDC_TIMEOUT_S) -> str:
    """Run one birdc command against the daemon at `socket_path`; its output (TestbedError if it fails)."""
    _, client = bird_binaries()
    return run_client([client, "-s", socket_path, *command], f"birdc -s {socket_path} {' '.join(command)}", timeout_s)


# ---------------------------------------------------------------------------
# Parsers of birdc output (pure; unit-tested)

_NEIGHBOUR = re.compile(r"^(\d+\.\d+\.\d+\.\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


def parse_ospf_neighbours(text: str) -> list[OspfNeighbour]:
    """`show ospf neighbors` -> one OspfNeighbour per line of the table.

    `state` is BIRD's word without the role (`Full`, `Init`, ...).
    """
    result = []
    for line in text.splitlines():
        match = _NEIGHBOUR.match(line.strip())
        if match:
            rid, pri, state, dtime, iface, address = match.groups()
            result.append(OspfNeighbour(router_id=rid, priority=int(pri), state=state.split("/")[0],
                                        dead_s=float(dtime) if re.fullmatch(r"[\d.]+", dtime) else None,
                                        interface=iface, address=address))
    return result


def parse_protocols(text: str) -> list[Protocol]:
    """`show protocols` -> one Protocol per protocol line (`info`: BGP's `Established`, ...)."""
    result = []
    for line in text.splitlines():
        words = line.split(None, 5)
        if len(words) < 5 or words[0] in ("Name", "BIRD") or words[3] not in ("up", "down", "start", "stop", "flush"):
            continue
        result.append(Protocol(name=words[0], proto=words[1], table=words[2], state=words[3], since=words[4],
                               info=words[5].strip() if len(words) > 5 else ""))
    return result


_ROUTE_HEAD = re.compile(r"^(\S+/\d+)\s+(\S+)\s+\[(\S+?)\s")
_ROUTE_CONT = re.compile(r"^\s+(\S+)\s+\[(\S+?)\s")
_VIA = re.compile(r"^\s+via\s+(\S+)\s+on\s+(\S+)")
_DEV = re.compile(r"^\s+dev\s+(\S+)")


def parse_routes(text: str) -> list[Route]:
    """`show route` -> one Route per route, best first per prefix.

    A route's next hop follows on a line of its own (`via ... on ...` or `dev ...`).
    """
    routes: list[Route] = []
    prefix = ""
    for line in text.splitlines():
        head = _ROUTE_HEAD.match(line)
        cont = None if head else _ROUTE_CONT.match(line)
        if head or (cont and prefix and not line.lstrip().startswith(("via", "dev"))):
            if head:
                prefix, protocol = head.group(1), head.group(3)
            elif cont is not None:
                protocol = cont.group(2)
            routes.append(Route(prefix=prefix, protocol=protocol, via=None, dev=None,
                                best="*" in line.split("]")[1][:3] if "]" in line else False))
            continue
        via = _VIA.match(line)
        if via and routes:
            routes[-1] = replace(routes[-1], via=via.group(1), dev=via.group(2))
            continue
        dev = _DEV.match(line)
        if dev and routes:
            routes[-1] = replace(routes[-1], dev=dev.group(1))
    return routes


_BFD = re.compile(r"^(\S+)\s+(\S+)\s+(Up|Down|Init|AdminDown)\s+(.+?)\s+(\d+\.\d+)\s+(\d+\.\d+)\s*$")


def parse_bfd_sessions(text: str) -> list[BfdSession]:
    """`show bfd sessions` -> one BfdSession per session line."""
    result = []
    for line in text.splitlines():
        match = _BFD.match(line.strip())
        if match:
            address, iface, state, since, interval, timeout = match.groups()
            result.append(BfdSession(address=address, interface=iface, state=state, since=since,
                                     interval_s=float(interval), timeout_s=float(timeout)))
    return result


# ---------------------------------------------------------------------------
# The daemons of one network


class BirdDaemons(RoutingDaemons):
    """The BIRD daemons of a built `Network` whose topology asks for OSPF or BGP."""

    name = "bird"

    def __init__(self, network: Network) -> None:
        super().__init__(network)
        self.sockets = {node: os.path.join(self.dir, f"{node}.ctl") for node in self.routers}
        # OSPF runs as v2 (IPv4) and v3 (IPv6); the eBGP sessions carry IPv4 only
        self.routes_ipv6 = self.routing_config.protocol == "ospf"

    @classmethod
    def check_binaries(cls, topology: Topology) -> None:
        """EnvironmentProblem naming the fix if `bird` or `birdc` is missing."""
        bird_binaries()

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
            "protocol": self.routing_config.protocol, "daemon": "bird", "dir": self.dir,
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
                    if "up and running" in birdc(self.sockets[node], "show", "status", timeout_s=READY_TIMEOUT_S):
                        return
                except TestbedError:
                    pass
            if time.monotonic() > deadline:
                raise TestbedError(f"bird in router {node} did not answer on {self.sockets[node]} in time")
            time.sleep(READY_POLL_S)

    def sessions_down(self) -> dict[str, list[str]]:
        """{router: [links whose BGP session is not Established]} (empty = all up, and always without BGP)."""
        if self.routing_config.protocol != "bgp":
            return {}
        down: dict[str, list[str]] = {}
        for node in self.routers:
            states = {p.name: p.info for p in self.protocols(node)}
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

    def ospf_neighbours(self, node: str, *, ipv6: bool = False) -> list[OspfNeighbour]:
        """OSPFv2 (or, with `ipv6`, OSPFv3) neighbours of router `node` (see `parse_ospf_neighbours`)."""
        return parse_ospf_neighbours(self.birdc(node, "show", "ospf", "neighbors", "ospf6" if ipv6 else "ospf4"))

    def protocols(self, node: str) -> list[Protocol]:
        """BIRD's protocols in router `node` (see `parse_protocols`)."""
        return parse_protocols(self.birdc(node, "show", "protocols"))

    def bgp_sessions(self, node: str) -> list[BgpSession]:
        """BGP sessions of router `node`: their protocol lines and links (`info` `Established` when up).

        Empty without BGP.
        """
        if self.routing_config.protocol != "bgp":
            return []
        links = bgp_protocol_names(self.topology, node)
        return [BgpSession(name=p.name, proto=p.proto, table=p.table, state=p.state, since=p.since, info=p.info,
                           link=links[p.name])
                for p in self.protocols(node) if p.name in links]

    def routes(self, node: str) -> list[Route]:
        """Routes in BIRD's table of router `node` (see `parse_routes`)."""
        return parse_routes(self.birdc(node, "show", "route"))

    def bfd_sessions(self, node: str) -> list[BfdSession]:
        """BFD sessions of router `node` (see `parse_bfd_sessions`); empty without BFD."""
        if self.routing_config.bfd is None:
            return []
        return parse_bfd_sessions(self.birdc(node, "show", "bfd", "sessions"))
