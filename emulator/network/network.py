"""`Network`: a validated Topology made real as namespaces, veths, addresses and routes.

Layout of a run with prefix P:

- one namespace per node, `P-NODE`, and one wire namespace `P-wire` (or,
  with machines simulated on this host, one per machine, `P+wire-MACHINE`,
  and the underlay's `P+underlay`, joined as `emulator.network.machines`
  lays out);
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

What to make is compiled first, as data (`emulator.network.plan`): every
interface index and MAC address is decided there, so nothing is looked up.
The requests then go out pipelined, one rtnetlink socket per namespace
(`emulator.network.rtnl`), instead of one round trip per object.

Namespaces are recorded (in one write) before they are made; everything
else lives inside them and goes with them. A build that fails part-way
removes everything it made and re-raises.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections import defaultdict
from types import TracebackType
from typing import Any, Iterable, TypeVar

from emulator.errors import TestbedError
from emulator.network import kernel, naming, processes, rtnl
from emulator.network.addressing import AddressPlan, Route, hosts_file_text
from emulator.network.machines import MachinesPlan
from emulator.network.plan import WIRE_MTU, Layout, NetworkPlan, layout, network_plan
from emulator.network.state import RunState
from emulator.network.signals import shielded
from emulator.network.sandbox import in_user_namespace
from emulator.network.sysfs import write_in_namespaces
from emulator.network.teardown import teardown
from emulator.scenario.topology import Topology

log = logging.getLogger(__name__)

__all__ = ["Network", "WIRE_MTU"]

#: helper threads creating namespaces: one, since a second won nothing
#: measurable (103 namespaces in 0.078 s against 0.073 s, 2 cores)
NETNS_THREADS = 1

_Record = TypeVar("_Record")


class _BuildInterrupted(Exception):
    """Raised in a namespace helper thread to stop it: the build was interrupted."""


#: how often the building thread looks whether the namespace helpers are done
_POLL_S = 0.005


def _wait_for(flag: threading.Event) -> None:
    """Wait until `flag` is set, by polling: a signal's exception then lands in
    time.sleep, never inside a lock's internals (see Network._make_namespaces)."""
    while not flag.is_set():
        time.sleep(_POLL_S)


def _by_netns(records: Iterable[_Record]) -> dict[str, list[_Record]]:
    grouped: dict[str, list[_Record]] = defaultdict(list)
    for record in records:
        grouped[record.netns].append(record)  # type: ignore[attr-defined]
    return grouped


def _make_machines(machines: MachinesPlan, ioctl: dict[str, socket.socket]) -> None:
    """The simulated machines' underlay, tunnels and bridges (`MachinesPlan.commands`),
    by one `ip -batch` per namespace: a handful of objects, made once."""
    for netns, lines in machines.commands().items():
        done = subprocess.run(["ip", "-n", netns, "-batch", "-"], input="\n".join(lines) + "\n",
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise TestbedError(f"cannot make the simulated machines' devices in {netns}: "
                               f"{done.stderr.strip() or done.stdout.strip()}")
    for netns, ifname in machines.offloads_off():
        kernel.offloads_off(ioctl[netns], ifname)


class Network:
    """The kernel side of a testbed. Build with `Network.build`; use as a context manager."""

    def __init__(
        self,
        topology: Topology,
        run: RunState,
        interfaces: dict[tuple[str, str], str],
        addresses: AddressPlan,
        routes: dict[str, list[Route]],
        plan: NetworkPlan | None = None,
        machines: MachinesPlan | None = None,
    ) -> None:
        self.topology = topology
        self.run = run
        self.interfaces = interfaces
        self.addresses = addresses
        self.routes = routes
        #: the machines simulated on this host, each with a wire namespace (None: one machine)
        self.machines = machines
        self.wire_netns = (next(iter(machines.wire_netns.values())) if machines is not None
                           else naming.wire_netns_name(run.prefix))
        self.link_ends: dict[str, tuple[str, str]] = {
            link.name: naming.wire_ifnames(k) for k, link in enumerate(topology.links)
        }
        self.hosts_file = os.path.join(run.dir, "hosts")
        #: what `build` makes (None for a Network made by hand)
        self.plan = plan
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

    def wire_netns_of(self, link: str) -> tuple[str, str]:
        """The wire namespaces of link `link`'s two wire-side ends (a, b)."""
        if self.machines is None:
            return (self.wire_netns, self.wire_netns)
        found = self.topology.link(link)
        return (self.machines.wire_netns_of(found.a.node), self.machines.wire_netns_of(found.b.node))

    @classmethod
    def build(cls, topology: Topology, run: RunState, *, rx_cpus: str | None = None,
              layout_: Layout | None = None, machines: MachinesPlan | None = None) -> "Network":
        """Create every namespace, veth, address, route and sysctl of `topology`.

        `layout_` is `plan.layout(topology)` when the caller has computed it
        already (before making the run's state: a file whose addresses
        cannot be planned then creates nothing at all).
        Raises EnvironmentProblem when not root or namespaces are missing,
        ScenarioError for names or addresses that cannot work, TestbedError
        when the kernel refuses a step. On any failure (also Ctrl-C) the
        objects made so far are removed before the exception propagates.
        """
        kernel.check_environment()
        lay = layout_ or layout(topology)
        # RPS is written by `steer_receive`, after the build, as before
        plan = network_plan(topology, run.prefix, layout_=lay, machines=machines)
        network = cls(topology, run, lay.interfaces, lay.addresses, lay.routes, plan, machines)
        try:
            network._build()
            # RPS masks are sysfs files of the host's root: a rootless sandbox
            # cannot write them, so the nodes' stacks share the engine's CPU there
            # (docs/rootless.md)
            if rx_cpus and not in_user_namespace():
                network.steer_receive(rx_cpus)
        except BaseException:
            problems = teardown(run)
            for problem in problems:
                log.error("cleanup after failed build: %s", problem)
            raise
        return network

    def _build(self) -> None:
        run, plan = self.run, self.plan
        assert plan is not None
        run.set_meta("topology", {"name": self.topology.name, "source": self.topology.source})
        self._make_namespaces(plan)

        netlink: dict[str, rtnl.RtnlSocket] = {}
        ioctl: dict[str, socket.socket] = {}
        wires = [ns.name for ns in plan.namespaces if ns.node is None]
        wire_fds: dict[str, int] = {}
        try:
            for name in wires:
                wire_fds[name] = os.open(kernel.netns_path(name), os.O_RDONLY)
            for ns in plan.namespaces:
                netlink[ns.name] = rtnl.RtnlSocket(ns.name)
                ioctl[ns.name] = kernel.netns_socket(ns.name)
            # The veth pairs, each made in its node's namespace with its peer
            # sent into the wire namespace (IFLA_NET_NS_FD), already up.
            for v in plan.veths:
                netlink[v.netns].queue(
                    rtnl.new_veth(v.ifname, v.ifindex, v.mac, v.mtu, v.wire_ifname, v.wire_ifindex, v.wire_mac,
                                  v.wire_mtu, wire_fds[v.wire_netns]),
                    f"create veth {v.ifname} <-> {v.wire_ifname} ({v.wire_netns})",
                )
            for ns in plan.namespaces:
                netlink[ns.name].flush()
            for ref in plan.offloads_off:
                kernel.offloads_off(ioctl[ref.netns], ref.ifname)
            # The kernel ignores a veth peer's flags at creation: up here.
            for name in wires:
                wire = netlink[name]
                for up in plan.of_netns("links_up", name):
                    wire.queue(rtnl.set_link(up.ifindex, mtu=up.mtu), f"set {up.ifname} up")
                wire.flush()
            self._per_node = {
                kind: _by_netns(getattr(plan, kind)) for kind in ("links_up", "addresses", "routes", "neighbours")
            }
            for node in self.topology.nodes:
                self._configure_node(netlink[self.node_netns(node.name)], node.name)
            # One thread: two sending in parallel made it slower (rtnl lock
            # contention), 4.3 s against 2.7 s for a 10x10 grid.
            for node in self.topology.nodes:
                netlink[self.node_netns(node.name)].flush()
            if self.machines is not None:
                _make_machines(self.machines, ioctl)
        finally:
            for fd in wire_fds.values():
                os.close(fd)
            for sock in netlink.values():
                sock.close()
            for ioctl_sock in ioctl.values():
                ioctl_sock.close()

        with open(self.hosts_file, "x") as f:
            f.write(hosts_file_text(self.topology, self.addresses))
        run.record("file", path=self.hosts_file)
        run.set_meta(
            "network",
            {
                "wire_netns": self.wire_netns,
                **({"machines": self.machines.to_dict()} if self.machines is not None else {}),
                "nodes": {n.name: self.node_netns(n.name) for n in self.topology.nodes},
                "link_ends": self.link_ends,
                "hosts_file": self.hosts_file,
                "interfaces": {f"{node}/{link}": ifname for (node, link), ifname in self.interfaces.items()},
            },
        )

    def _make_namespaces(self, plan: NetworkPlan) -> None:
        # Recorded before they are made (one write for all): a builder killed
        # (SIGKILL) between the two steps must not leave a namespace no
        # record names. Teardown tolerates a recorded name that was never
        # made; a failed create made nothing of ours (or hit someone else's
        # name), so the records of the ones not made go.
        sysctls = {ns.name: ns.sysctls for ns in plan.namespaces}
        entries = self.run.record_all("netns", [{"name": ns.name} for ns in plan.namespaces])
        created: list[str] = []
        stopping = threading.Event()
        failure: list[BaseException] = []

        def setup(name: str) -> None:
            # runs in the helper thread, inside the fresh namespace, before
            # it holds any interface (the wire's IPv6 is off from the start)
            for key, value in sysctls[name]:
                kernel.write_sysctl(key, value)
            if stopping.is_set():
                # an interrupted build ends the helper after its current namespace
                raise _BuildInterrupted(name)

        def create() -> None:
            try:
                kernel.create_netns_many([ns.name for ns in plan.namespaces], created, setup=setup,
                                         threads=NETNS_THREADS)
            except BaseException as exc:  # handed to the building thread
                failure.append(exc)
            finally:
                done.set()

        # The helpers run under a thread of our own that this (main) thread
        # waits for. A signal that interrupts the wait (SIGTERM, Ctrl-C:
        # Terminated or KeyboardInterrupt from emulator.network.signals)
        # stops the helpers and waits until they have ended before it goes
        # on: a helper still making namespaces while teardown removes them
        # left namespaces behind that were made after teardown had looked.
        # Both waits poll a flag rather than join(): an exception raised
        # inside Thread.join() or Thread.start() can leave the thread marked
        # stopped while it still runs (CPython's tstate lock is released on
        # the way out), and a second join() then returns at once.
        done = threading.Event()
        maker = threading.Thread(target=create, name=f"{self.run.prefix}-namespaces")
        started = False
        try:
            with shielded():  # a signal is delivered after start(), not inside it
                maker.start()
                started = True
            _wait_for(done)
        except BaseException:
            stopping.set()
            if started:
                _wait_for(done)
            raise
        if failure:
            if isinstance(failure[0], TestbedError):
                made = set(created)
                self.run.forget_all([entry for entry in entries if entry["name"] not in made])
            raise failure[0]

    def _configure_node(self, sock: rtnl.RtnlSocket, node: str) -> None:
        """Queue loopback up, addresses, routes and permanent neighbours of `node` on `sock`.

        In this order on one socket, which the kernel handles in order: a
        route's gateway and preferred source exist before the route. The
        caller flushes.
        """
        netns = self.node_netns(node)
        per_node = self._per_node
        for up in per_node["links_up"].get(netns, []):
            sock.queue(rtnl.set_link(up.ifindex, mtu=up.mtu), f"set {up.ifname} up")
        for a in per_node["addresses"].get(netns, []):
            sock.queue(rtnl.new_address(a.ifindex, a.address, nodad=a.nodad), f"add address {a.address} to {a.ifname}")
        for r in per_node["routes"].get(netns, []):
            sock.queue(rtnl.new_route(r.prefix, r.via, r.oif, r.prefsrc),
                       f"add route {r.prefix} via {r.via} dev {r.dev}")
        for n in per_node["neighbours"].get(netns, []):
            sock.queue(rtnl.new_neighbour(n.ifindex, n.address, n.mac),
                       f"add neighbour {n.address} lladdr {n.mac} on {n.dev}")

    def steer_receive(self, cpu_mask: str) -> None:
        """Process frames arriving at node-side interfaces on the CPUs in `cpu_mask` (RPS).

        The engine's sendmmsg into a veth would otherwise run the receiving
        node's whole stack (and, for TCP, the sender's ACK-clocked
        transmissions) in the engine's own context, on the engine's core.
        Steering that work to the other CPUs (`rps_cpus`, a hex mask) is what
        lets the engine keep up: see docs/benchmark.md.
        """
        values: dict[str, dict[str, str]] = defaultdict(dict)
        for (owner, _link), ifname in self.interfaces.items():
            values[self.node_netns(owner)][f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus"] = cpu_mask
        if self.machines is not None:
            # The simulated machines' underlay and tunnels: a frame a machine's
            # engine (or the underlay's) sends is received, decapsulated and
            # bridged by the kernel in that engine's context, on its CPU, where
            # a deferred softirq waits behind the engines' real-time loops.
            for netns, ifname in self.machines.offloads_off():
                values[netns][f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus"] = cpu_mask
        write_in_namespaces(values)  # one child process for every namespace
        self.run.set_meta("rx_cpus", cpu_mask)

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
        starttime = processes.process_starttime(pid)
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
