"""FRR daemons in the router namespaces of a running network, and what they know.

`FrrDaemons(network)` writes the configuration files of each node that
runs FRR (every router, and every host next to one: `emulator.routing.frr`)
to `{run dir}/frr/{node}/` and starts, inside the node's namespace with
`Network.popen`, zebra first and then bfdd (routers, with BFD) and ospfd:

    /usr/lib/frr/DAEMON -u root -g frrvty -P 0 --vty_socket DIR -z DIR/zserv.api
                        -f DIR/DAEMON.conf -i DIR/DAEMON.pid [--bfdctl DIR/bfdd.sock]

in the foreground (the PID recorded in the run state is the daemon's own;
teardown stops them by PID, newest first). Why these flags: FRR insists
that its user belongs to the vty group it was built with (`frrvty`), so
root runs with `-g frrvty` (`-g root` exits at once); `-P 0` opens no TCP
vty; every socket FRR would put in /var/run/frr (zserv, vty, bfdd control)
goes to the node's own directory, so several nodes and several runs
coexist. zebra must be up (its zserv socket present) before the others
start: a client that finds no zebra retries only 10 s later.

State readers use `vtysh --vty_socket DIR -c ...` with FRR's JSON output
(`ospf_neighbours`, `bfd_sessions`, `routes`) and return the records
`BirdDaemons` returns (`emulator.routing.state`).
`caspian exec ROUTER -- vtysh -c 'show ip ospf neighbor'` adds the router's
`--vty_socket` (the run's meta `routing.vty`).
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import time
from typing import TYPE_CHECKING, Any

from emulator.errors import EnvironmentProblem, TestbedError
from emulator.routing.daemons import MAX_SOCKET_PATH, RoutingDaemons, run_client
from emulator.routing.events import StateEvent, frr_log_events
from emulator.routing.frr import daemons_of, frr_configs, speakers
from emulator.routing.state import BfdSession, OspfNeighbour, Route

if TYPE_CHECKING:
    from emulator.network.network import Network
    from emulator.scenario.topology import Topology

#: where Debian's frr package puts the daemons (not on PATH)
FRR_LIBEXEC = "/usr/lib/frr"
#: the group FRR is built to require of its user (Debian: frrvty)
VTY_GROUP = "frrvty"
#: how long one vtysh call may take
VTYSH_TIMEOUT_S = 5.0
#: FRR keeps a crash-log directory per process here and removes it on a clean exit
FRR_CRASH_DIR = "/var/tmp/frr"
#: the logs that hold protocol state changes
STATE_LOGS = ("bfdd.log", "ospfd.log")
#: how often a starting daemon's socket is looked for
SOCKET_POLL_S = 0.02


def frr_binaries(topology: Topology) -> dict[str, str]:
    """{daemon: path} of the FRR daemons the topology needs, and "vtysh"; EnvironmentProblem naming the fix."""
    fix = "apt-get install frr, or `make run`"
    found = {}
    for daemon in daemons_of(topology):
        path = os.path.join(FRR_LIBEXEC, daemon)
        if not os.access(path, os.X_OK):
            raise EnvironmentProblem(f"FRR's {daemon} ({path}) is missing, and routing: {{daemon: frr}} runs it "
                                     f"in every router ({fix})")
        found[daemon] = path
    vtysh = shutil.which("vtysh") or ("/usr/bin/vtysh" if os.access("/usr/bin/vtysh", os.X_OK) else None)
    if vtysh is None:
        raise EnvironmentProblem(f"FRR's vtysh is missing ({fix})")
    found["vtysh"] = vtysh
    try:
        grp.getgrnam(VTY_GROUP)
    except KeyError:
        raise EnvironmentProblem(f"group {VTY_GROUP!r} is missing: FRR's daemons refuse to start without it "
                                 f"(reinstall frr: {fix})") from None
    return found


def vtysh(socket_dir: str, *commands: str, timeout_s: float = VTYSH_TIMEOUT_S) -> str:
    """Run vtysh commands against the FRR instance whose sockets are in `socket_dir`; the output."""
    argv = [shutil.which("vtysh") or "/usr/bin/vtysh", "--vty_socket", socket_dir]
    for command in commands:
        argv += ["-c", command]
    return run_client(argv, f"vtysh --vty_socket {socket_dir} -c {' -c '.join(commands)}", timeout_s)


# ---------------------------------------------------------------------------
# FRR's JSON, in the records BirdDaemons returns (pure; unit-tested)


def parse_ospf_neighbours(data: dict[str, Any]) -> list[OspfNeighbour]:
    """`show ip ospf neighbor json` -> one OspfNeighbour per neighbour entry."""
    result = []
    for router_id, entries in data.get("neighbors", {}).items():
        for entry in entries if isinstance(entries, list) else [entries]:
            state = entry.get("nbrState") or entry.get("state") or ""
            dead_ms = entry.get("routerDeadIntervalTimerDueMsec", entry.get("deadTimeMsecs"))
            result.append(OspfNeighbour(router_id=router_id,
                                        priority=int(entry.get("nbrPriority", entry.get("priority", 0))),
                                        state=state.split("/")[0],
                                        dead_s=dead_ms / 1000 if dead_ms is not None else None,
                                        interface=str(entry.get("ifaceName", "")).split(":")[0],
                                        address=entry.get("ifaceAddress", entry.get("address"))))
    return result


def parse_bfd_peers(data: list[dict[str, Any]]) -> list[BfdSession]:
    """`show bfd peers json` -> one BfdSession per peer (state as BIRD spells it: `Up`; no `since`)."""
    result = []
    for peer in data:
        interval_ms = peer.get("transmit-interval")
        multiplier = peer.get("detect-multiplier")
        result.append(BfdSession(address=peer.get("peer"), interface=peer.get("interface"),
                                 state=str(peer.get("status", "")).capitalize(),
                                 interval_s=interval_ms / 1000 if interval_ms is not None else None,
                                 timeout_s=(interval_ms * multiplier / 1000
                                            if interval_ms is not None and multiplier is not None else None)))
    return result


def parse_routes(data: dict[str, Any]) -> list[Route]:
    """`show ip route json` -> one Route per route entry (next hop: the first of its next hops)."""
    routes = []
    for prefix, entries in data.items():
        for entry in entries:
            hops = entry.get("nexthops") or [{}]
            routes.append(Route(prefix=prefix, protocol=entry.get("protocol"), via=hops[0].get("ip"),
                                dev=hops[0].get("interfaceName"), best=bool(entry.get("selected"))))
    return routes


# ---------------------------------------------------------------------------
# The daemons of one network


class FrrDaemons(RoutingDaemons):
    """The FRR daemons of a built `Network` whose topology asks for `routing: {protocol: ospf, daemon: frr}`."""

    name = "frr"

    def __init__(self, network: Network) -> None:
        super().__init__(network)
        #: the nodes that run FRR (routers and the hosts next to them) and their daemons, in start order
        self.daemons = {node: daemons_of(self.topology, node) for node in speakers(self.topology)}
        #: each node's directory: configs, logs, pid files and its sockets
        self.dirs = {node: os.path.join(self.dir, node) for node in self.daemons}

    @classmethod
    def check_binaries(cls, topology: Topology) -> None:
        """EnvironmentProblem naming the fix if a daemon the topology needs, vtysh or FRR's vty group is missing."""
        frr_binaries(topology)

    def _argv(self, binaries: dict[str, str], node: str, daemon: str) -> list[str]:
        d = self.dirs[node]
        argv = [binaries[daemon], "-u", "root", "-g", VTY_GROUP, "-P", "0", "--vty_socket", d,
                "-z", os.path.join(d, "zserv.api"), "-f", os.path.join(d, f"{daemon}.conf"),
                "-i", os.path.join(d, f"{daemon}.pid")]
        if daemon == "bfdd":
            argv += ["--bfdctl", os.path.join(d, "bfdd.sock")]
        return argv

    def start(self, *, timeout_s: float = 10.0) -> None:
        """Write every FRR node's configs, start its daemons (zebra first) and wait until all answer.

        Raises EnvironmentProblem if FRR is missing, TestbedError if a daemon
        refuses its config, exits, or does not open its socket within `timeout_s`.
        Every started daemon is recorded in the run state before anything else.
        """
        binaries = frr_binaries(self.topology)
        if not self.daemons:
            return
        too_long = [os.path.join(d, "zserv.api") for d in self.dirs.values()
                    if len(os.path.join(d, "zserv.api").encode()) > MAX_SOCKET_PATH]
        if too_long:
            raise TestbedError(f"FRR socket path {too_long[0]!r} is longer than {MAX_SOCKET_PATH} bytes "
                               "(use a shorter --state-root)")
        self.network.run.set_meta("routing", {
            "protocol": self.routing_config.protocol, "daemon": "frr", "dir": self.dir, "vty": dict(self.dirs),
        })
        for node in self.daemons:
            os.makedirs(self.dirs[node], mode=0o755, exist_ok=True)
            configs = frr_configs(self.topology, self.network.addresses, node, self.network.interfaces,
                                  self.dirs[node])
            for name, text in configs.items():
                with open(os.path.join(self.dirs[node], name), "w") as fh:
                    fh.write(text)
        deadline = time.monotonic() + timeout_s
        # zebra everywhere, then (once its zserv socket is there) the protocol daemons
        for node in self.daemons:
            self._spawn(binaries, node, "zebra")
        for node in self.daemons:
            self._wait_socket(node, "zebra", os.path.join(self.dirs[node], "zserv.api"), deadline)
        for node, daemons in self.daemons.items():
            for daemon in daemons[1:]:
                self._spawn(binaries, node, daemon)
        for node, daemons in self.daemons.items():
            for daemon in daemons:
                self._wait_socket(node, daemon, os.path.join(self.dirs[node], f"{daemon}.vty"), deadline)

    def _spawn(self, binaries: dict[str, str], node: str, daemon: str) -> None:
        out = os.path.join(self.dirs[node], f"{daemon}.out")
        with open(out, "wb") as err:
            proc = self.network.popen(node, self._argv(binaries, node, daemon), stdout=err, stderr=err,
                                      stdin=subprocess.DEVNULL)
        key = f"{node} {daemon}"
        self.processes[key] = proc
        try:
            self.network.record_process(proc.pid, f"frr {daemon} {node}")
        except TestbedError:
            proc.wait()
            raise TestbedError(self._died(node, daemon, proc)) from None

    def _died(self, node: str, daemon: str, proc: subprocess.Popen[bytes]) -> str:
        # a daemon that dies leaves FRR's crash-log directory of its PID behind
        shutil.rmtree(os.path.join(FRR_CRASH_DIR, f"{daemon}.{proc.pid}"), ignore_errors=True)
        return (f"FRR {daemon} in router {node} exited with {proc.returncode}: {self._output(node, daemon)} "
                f"(config {os.path.join(self.dirs[node], daemon + '.conf')})")

    def _wait_socket(self, node: str, daemon: str, path: str, deadline: float) -> None:
        proc = self.processes[f"{node} {daemon}"]
        while not os.path.exists(path):
            if proc.poll() is not None:
                raise TestbedError(self._died(node, daemon, proc))
            if time.monotonic() > deadline:
                raise TestbedError(f"FRR {daemon} in router {node} did not open {path} in time: "
                                   f"{self._output(node, daemon)}")
            time.sleep(SOCKET_POLL_S)

    def _output(self, node: str, daemon: str) -> str:
        """The tail of what a daemon printed before its log file took over."""
        try:
            with open(os.path.join(self.dirs[node], f"{daemon}.out"), errors="replace") as fh:
                lines = [line for line in fh.read().splitlines()
                         if "could chown socket" not in line and "MPLS support" not in line]
        except OSError:
            return "(no output)"
        return " | ".join(lines)[-300:] or "(no output)"

    def _exited(self) -> str | None:
        for key, proc in self.processes.items():
            if proc.poll() is not None:
                node, daemon = key.split()
                return self._died(node, daemon, proc)
        return None

    def state_events(self) -> list[StateEvent]:
        """Every node's logged BFD peer and OSPF adjacency changes so far, in time order."""
        events: list[StateEvent] = []
        for node in self.daemons:
            for name in STATE_LOGS:
                try:
                    with open(os.path.join(self.dirs[node], name), errors="replace") as fh:
                        events += frr_log_events(fh.read(), node)
                except FileNotFoundError:
                    continue   # no BFD, or a daemon that never started
        return sorted(events, key=lambda e: e.t_ns)

    # -- state ------------------------------------------------------------------

    def vtysh(self, node: str, *commands: str) -> str:
        """Output of vtysh commands in router `node`."""
        if node not in self.dirs:
            raise TestbedError(f"{node!r} runs no FRR (nodes that do: {', '.join(self.dirs)})")
        return vtysh(self.dirs[node], *commands)

    def _json(self, node: str, command: str) -> Any:
        text = self.vtysh(node, command)
        try:
            return json.loads(text or "{}")
        except ValueError:
            raise TestbedError(f"vtysh in {node}: {command!r} gave no JSON: {text.strip()[:200]}") from None

    def ospf_neighbours(self, node: str, *, ipv6: bool = False) -> list[OspfNeighbour]:
        """OSPF neighbours of router `node`, as `BirdDaemons.ospf_neighbours`; FRR runs no OSPFv3 here (`ipv6`: [])."""
        if ipv6:
            return []
        return parse_ospf_neighbours(self._json(node, "show ip ospf neighbor json"))

    def bfd_sessions(self, node: str) -> list[BfdSession]:
        """BFD peers of router `node`, as `BirdDaemons.bfd_sessions`; empty without BFD."""
        if self.routing_config.bfd is None:
            return []
        data = self._json(node, "show bfd peers json")
        return parse_bfd_peers(data if isinstance(data, list) else [])

    def routes(self, node: str) -> list[Route]:
        """Routes in zebra's table of router `node`, as `BirdDaemons.routes`."""
        return parse_routes(self._json(node, "show ip route json"))
