"""`Testbed`: a topology made real and forwarded by the engine.

The Python API mirrors the command line:

    with Testbed(load_topology("corridor.yaml")) as tb:
        tb.cut("aktau-sumgait")
        print(tb.stats())

`Testbed.start()` builds the namespaces and veths (network layer), starts the
engine process in the wire namespace and waits until it answers. Everything
is recorded in the run's state directory; `stop()` (or leaving the `with`
block, or SIGINT/SIGTERM) removes exactly that. A testbed left up
(`caspian up`) is found again with `Testbed.attach()`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Sequence

from emulator.engine.control import EngineClient
from emulator.engine.fastpath import EngineOptions, LinkSpec
from emulator.engine.machines import MachineEngines, resolve_placement
from emulator.engine.process import EngineProcess
from emulator.engine.shards import default_shards
from emulator.errors import EngineError, InputError, TestbedError
from emulator.model.direction import each_direction
from emulator.model.linkparams import LinkParams
from emulator.model.netem import parse_netem_words
from emulator.model.underlay import Underlay, carried, from_rtts
from emulator.network.signals import shielded
from emulator.network.state import DEFAULT_ROOT, RunState
from emulator.network.teardown import teardown
from emulator.scenario.scenario import Scenario
from emulator.scenario.topology import Topology

if TYPE_CHECKING:
    from emulator.network.machines import MachinesPlan
    from emulator.network.network import Network
    from emulator.routing.daemons import RoutingDaemons

#: Ethernet header + one VLAN tag on top of the link MTU
FRAME_OVERHEAD_BYTES = 18
#: How long routing daemons may take to give every router a route to every node
CONVERGENCE_TIMEOUT_S = 30.0
#: kernel-stamped echoes that measure a simulated underlay (the preflight's count)
UNDERLAY_ECHOES = 200
#: the busy-poll before a deadline, and the longest spin between two dozes, of
#: each engine of machines simulated on one host (they share its last CPU)
SHARED_CPU_SPIN_NS = 100_000
SHARED_CPU_MAX_SPIN_NS = 80_000


def engine_shards(topology: Topology, asked: int | None) -> int:
    """Engine loops for `topology`: as asked (`--shards`), else as the file says
    (`engine: {shards: N}`), else this machine's default (never more than links).

    Raises InputError for fewer than one shard or more shards than links,
    before anything is created."""
    chosen = asked if asked is not None else topology.engine_shards
    if chosen is None:
        return max(1, min(default_shards(len(os.sched_getaffinity(0))), len(topology.links)))
    if chosen < 1:
        raise InputError(f"--shards is {chosen}", fix="use 1 or more shards")
    if chosen > max(1, len(topology.links)):
        raise InputError(f"--shards is {chosen} but the topology has {len(topology.links)} link(s)",
                         fix=f"use at most {max(1, len(topology.links))}: each shard forwards at least one whole link")
    return chosen


def direction_seed(run_seed: int, link_index: int, direction: int) -> int:
    """A per-direction PRNG seed derived from the run seed (stable across runs)."""
    digest = hashlib.sha256(f"{run_seed}/{link_index}/{direction}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class Testbed:
    """A running testbed: nodes, links and the engine that forwards them."""

    def __init__(
        self,
        topology: Topology | Scenario,
        *,
        state_root: str = DEFAULT_ROOT,
        seed: int | None = None,
        engine_options: EngineOptions | None = None,
        shards: int | None = None,
    ) -> None:
        self.scenario: Scenario | None = topology if isinstance(topology, Scenario) else None
        if isinstance(topology, Scenario):
            topology = topology.topology
        self.topology = topology
        self.state_root = state_root
        default_seed = self.scenario.seed if self.scenario else topology.seed
        self.seed = seed if seed is not None else (default_seed if default_seed is not None else 1)
        if shards is None and engine_options is not None:
            shards = engine_options.shards
        self.engine_options = replace(engine_options or EngineOptions(),
                                      shards=engine_shards(topology, shards))
        self.state: RunState | None = None
        self.network: "Network | None" = None   # once built
        self.engine: EngineClient | MachineEngines | None = None
        self.engine_pid: int | None = None
        self._engine_process: EngineProcess | None = None
        #: the machines simulated on this host (`placement:` with `underlay:`), else None
        self.machines: "MachinesPlan | None" = None
        #: their engines, the underlay's last (the first is `_engine_process`)
        self._more_engines: list[EngineProcess] = []
        #: the underlay between the machines as measured at start (None: one machine)
        self.underlay: Underlay | None = None
        #: the routing daemons (emulator.routing.registry picks BIRD's or FRR's) when
        #: routing runs in daemons, else None
        self.routing: "RoutingDaemons | None" = None
        #: seconds from starting the routing daemons to converged: every router with a route to
        #: every node's loopback, BGP sessions Established, BFD sessions Up (None for static routing)
        self.convergence_s: float | None = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> "Testbed":
        """Build the network and start the engine; on failure remove what was made."""
        from emulator.network.plan import layout
        from emulator.network.network import Network

        if self.topology.dynamic_routing:
            from emulator.routing.registry import check_binaries

            check_binaries(self.topology)  # EnvironmentProblem before anything is made
        # Names, addresses and routes are pure: planned before the run's state
        # exists, so a plan that cannot work (ScenarioError) creates nothing
        # and a signal during planning has nothing to clean up.
        planned = layout(self.topology)
        placement = resolve_placement(self.topology) if self.topology.underlay is not None else None
        self.state = RunState.create(self.state_root)
        try:
            if placement is not None:
                from emulator.network.machines import machines_plan

                self.machines = machines_plan(self.topology, placement, self.state.prefix)
            self.network = Network.build(self.topology, self.state, rx_cpus=self.engine_options.receive_cpu_mask(),
                                         layout_=planned, machines=self.machines)
            self._start_engine()
            if self.topology.dynamic_routing:
                self._start_routing()
        except BaseException:
            with shielded():
                self._stop_engines()    # reaped here, not left to teardown's kill by PID
            teardown(self.state)  # holds back a signal until it is done
            raise
        return self

    def stop(self) -> list[str]:
        """Stop the engine and remove everything the run recorded; problems found.

        A signal that arrives meanwhile waits until it is done
        (emulator.network.signals.shielded), so it cannot leave half a testbed.
        """
        with shielded():
            return self._stop()

    def _stop(self) -> list[str]:
        if self.state is None:
            return []
        daemons, self.routing = self.routing, None  # recorded processes: teardown stops them
        self._stop_engines()
        problems = teardown(self.state)
        if daemons is not None:
            for proc in daemons.processes.values():
                proc.poll()  # reap the daemons teardown stopped
        self.state = None
        return problems

    def _stop_engines(self) -> None:
        """Stop every engine process this testbed started, and reap it."""
        for process in [*([self._engine_process] if self._engine_process else []), *self._more_engines]:
            try:
                process.stop(timeout_s=2.0)
            except (EngineError, OSError):
                pass  # teardown kills it by PID
        self._engine_process, self._more_engines = None, []
        self.engine = None

    def __enter__(self) -> "Testbed":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        problems = self.stop()
        if problems and exc_type is None:
            raise TestbedError("teardown left problems: " + "; ".join(problems))

    @classmethod
    def attach(cls, run: RunState) -> "AttachedTestbed":
        """A handle on a testbed another process started (`caspian up`)."""
        return AttachedTestbed(run)

    # -- the engine process ---------------------------------------------------

    def link_specs(self) -> list[LinkSpec]:
        """What the engine process needs to know about each link."""
        specs = []
        for k, link in enumerate(self.topology.links):
            a_if, b_if = self.built().link_ends[link.name]
            specs.append(
                LinkSpec(
                    name=link.name,
                    a_node=link.a.node,
                    b_node=link.b.node,
                    a_ifname=a_if,
                    b_ifname=b_if,
                    max_frame=link.mtu + FRAME_OVERHEAD_BYTES,
                    a_to_b=link.a_to_b,
                    b_to_a=link.b_to_a,
                    seed_a_to_b=link.a_to_b.seed if link.a_to_b.seed is not None else direction_seed(self.seed, k, 0),
                    seed_b_to_a=link.b_to_a.seed if link.b_to_a.seed is not None else direction_seed(self.seed, k, 1),
                )
            )
        return specs

    def _start_engine(self) -> None:
        assert self.state is not None
        specs = self.link_specs()
        for spec in specs:
            # here, not in the engine process, so a value the engine cannot hold
            # is one InputError naming its link rather than an engine that died
            spec.engine_params()
        if self.machines is not None:
            self._start_machine_engines(specs)
            return
        self._engine_process = EngineProcess(self.state, self.built().wire_netns, specs, self.engine_options)
        self.engine = self._engine_process.start()
        self.engine_pid = self._engine_process.pid

    def _start_machine_engines(self, specs: list[LinkSpec]) -> None:
        """The simulated machines' engines: the underlay's first, measured, then one per
        machine forwarding its links, a crossing link's delay less the underlay's."""
        from emulator.measure.icmp_echo import round_trips
        from emulator.network.machines import UNDERLAY_LINK, UNDERLAY_MTU

        assert self.state is not None and self.machines is not None and self.topology.underlay is not None
        machines, simulated = self.machines, self.topology.underlay
        first, second = machines.machines
        underlay_params = LinkParams(delay_ns=simulated.delay_ns, jitter_ns=simulated.jitter_ns)
        count = len(self.topology.links)
        underlay_spec = LinkSpec(
            name=UNDERLAY_LINK, a_node=first, b_node=second, a_ifname=machines.underlay_ends[0],
            b_ifname=machines.underlay_ends[1], max_frame=UNDERLAY_MTU + FRAME_OVERHEAD_BYTES,
            a_to_b=underlay_params, b_to_a=underlay_params,
            seed_a_to_b=direction_seed(self.seed, count, 0), seed_b_to_a=direction_seed(self.seed, count, 1))
        # Three loops on one CPU at one SCHED_FIFO priority do not preempt one
        # another: a loop spinning for its deadline holds the CPU until it dozes.
        # Shorter spins keep the wait of the others short (corridor_two_hosts,
        # quiet: engine-stamped median OWD 43.38-43.45 ms with the 300 µs spins,
        # 43.21-43.24 with 100 or 50 µs; one machine 43.12-43.13).
        options = replace(self.engine_options, shards=1, spin_ns=SHARED_CPU_SPIN_NS,
                          max_spin_ns=SHARED_CPU_MAX_SPIN_NS)
        underlay_engine = EngineProcess(self.state, machines.underlay_netns, [underlay_spec], options)
        self._more_engines.append(underlay_engine)
        underlay_client = underlay_engine.start()
        # the underlay as the run would measure a real one: kernel-stamped echoes
        # from the first machine's wire namespace to the second's address
        self.underlay = from_rtts(round_trips(machines.wire_netns[first], machines.underlay_address[second],
                                              UNDERLAY_ECHOES))
        ends: dict[str, LinkSpec] = {}
        link_machine: dict[str, str] = {}
        underlays: dict[str, Underlay] = {}
        for spec in specs:
            crossing = machines.crossing_link(spec.name)
            if crossing is None:
                link_machine[spec.name] = machines.placement.machine_of(spec.a_node)
                ends[spec.name] = spec
                continue
            # the owner's engine: its own end and the tunnel, the delay less the underlay's
            link_machine[spec.name] = crossing.owner
            underlays[spec.name] = self.underlay
            ends[spec.name] = replace(
                spec, a_ifname=crossing.owner_end, b_ifname=crossing.vxlan,
                a_to_b=carried(spec.name, "a_to_b", spec.a_to_b, self.underlay, check_spread=False),
                b_to_a=carried(spec.name, "b_to_a", spec.b_to_a, self.underlay, check_spread=False))
        clients: dict[str, EngineClient] = {}
        sockets: dict[str, str] = {}
        for machine in machines.machines:
            mine = [ends[s.name] for s in specs if link_machine[s.name] == machine]
            if not mine:
                continue    # every link of this machine crosses and is the other's
            process = EngineProcess(self.state, machines.wire_netns[machine], mine, options)
            if self._engine_process is None:
                self._engine_process = process
            else:
                self._more_engines.insert(0, process)
            clients[machine] = process.start()
            sockets[machine] = clients[machine].socket_path
        self.engine = MachineEngines(clients, link_machine, underlays, [(UNDERLAY_LINK, underlay_client)],
                                     check_spread=False)
        assert self._engine_process is not None
        self.engine_pid = self._engine_process.pid
        self.state.set_meta("machine_engines", {
            "engines": sockets, "links": link_machine,
            "underlay_engine": underlay_client.socket_path,
            "underlay": {"delay_ns": self.underlay.delay_ns, "spread_ns": self.underlay.spread_ns,
                         "echoes": self.underlay.echoes},
            "crossing": sorted(underlays)})

    def placement_summary(self) -> dict[str, Any]:
        """Where the nodes ran and how the crossing links were carried (report.json's
        `placement`); {} on one machine."""
        if self.machines is None or self.underlay is None or self.topology.underlay is None:
            return {}
        summary: dict[str, Any] = self.machines.to_dict()
        summary["underlay"] = {
            "simulated": self.topology.underlay.to_dict(),
            "measured_delay_ms": self.underlay.delay_ns / 1e6, "measured_spread_ms": self.underlay.spread_ns / 1e6,
            "echoes": self.underlay.echoes,
            "method": "ICMP echo, kernel receive stamps, half the median round trip; spread: p99 less median"}
        for name, entry in summary["crossing"].items():
            link = self.topology.link(name)
            entry["configured_delay_ms"] = {"a_to_b": link.a_to_b.delay_ns / 1e6, "b_to_a": link.b_to_a.delay_ns / 1e6}
            entry["engine_delay_ms"] = {d: (getattr(link, d).delay_ns - self.underlay.delay_ns) / 1e6
                                        for d in ("a_to_b", "b_to_a")}
        return summary

    def _start_routing(self) -> None:
        """Start the routing daemons in every router (the engine forwards their packets) and wait for convergence."""
        from emulator.routing.registry import routing_daemons

        self.routing = routing = routing_daemons(self.built())
        started = time.monotonic()
        routing.start()
        for proc in routing.processes.values():
            keep_off_engine_cpu(proc.pid, self.engine_options)
        routing.wait_converged(timeout_s=CONVERGENCE_TIMEOUT_S)
        self.convergence_s = time.monotonic() - started

    # -- using it -----------------------------------------------------------

    def built(self) -> "Network":
        """The kernel objects of a started testbed (TestbedError before `start`)."""
        if self.network is None:
            raise TestbedError("the testbed is not running")
        return self.network

    def _client(self) -> EngineClient | MachineEngines:
        if self.engine is None:
            raise TestbedError("the testbed is not running")
        return self.engine

    def popen(self, node: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
        """Start a process in `node` (node names resolve there); the caller waits for it.

        It runs on the CPUs the engine leaves free, so traffic generators
        never preempt the engine's loop on its own core.
        """
        proc = self.built().popen(node, list(argv), **popen_kwargs)
        keep_off_engine_cpu(proc.pid, self.engine_options)
        return proc

    def cut(self, link: str, direction: str = "both", *, carrier: bool = False) -> None:
        """Cut `link` now: silently (frames vanish), or with `carrier` also its interfaces down."""
        self._client().cut(link, direction, carrier=carrier)

    def restore(self, link: str, direction: str = "both") -> None:
        self._client().restore(link, direction)

    def set(self, link: str, words: str | Sequence[str] | LinkParams, direction: str = "both") -> None:
        """Change a link live: netem words applied to what is in force, or whole LinkParams."""
        set_link(self._client(), link, words, direction)

    def stats(self) -> dict[str, Any]:
        return self._client().stats()

    def schedule(self, events: list[dict[str, Any]]) -> None:
        """Hand the engine timed changes (`at_ns` on CLOCK_REALTIME, `link`, `kind`,
        `direction`, `params` for set): each applies at its instant, judged on
        every frame's arrival stamp. Replaces the previous schedule."""
        self._client().schedule(events)

    def schedule_status(self) -> list[dict[str, Any]]:
        """The scheduled changes with when the engine applied each, per direction."""
        return self._client().schedule_status()


class AttachedTestbed:
    """A testbed started by another process, reached through its run records."""

    def __init__(self, run: RunState) -> None:
        self.state = run
        network = run.get_meta("network")
        engine = run.get_meta("engine")
        if not network or not engine:
            raise TestbedError(f"run {run.prefix} was not fully started (see {run.dir})")
        self.nodes: dict[str, str] = network["nodes"]
        self.hosts_file: str = network["hosts_file"]
        self.engine: EngineClient | MachineEngines = EngineClient(engine["control_socket"])
        across = run.get_meta("machine_engines")
        if across:
            measured = across["underlay"]
            underlay = Underlay(measured["delay_ns"], measured["spread_ns"], measured["echoes"])
            self.engine = MachineEngines({m: EngineClient(path) for m, path in across["engines"].items()},
                                         across["links"], {name: underlay for name in across["crossing"]},
                                         [("underlay", EngineClient(across["underlay_engine"]))],
                                         check_spread=False)

    def node_netns(self, node: str) -> str:
        try:
            return self.nodes[node]
        except KeyError:
            raise InputError(f"no node named {node!r} in run {self.state.prefix}",
                             fix=f"nodes are: {', '.join(self.nodes)}") from None

    def set(self, link: str, words: str | Sequence[str] | LinkParams, direction: str = "both") -> None:
        set_link(self.engine, link, words, direction)


def keep_off_engine_cpu(pid: int, options: EngineOptions) -> None:
    """Confine a process started in a node to the CPUs the engine does not use."""
    try:
        os.sched_setaffinity(pid, options.other_cpus())
    except (ProcessLookupError, PermissionError):
        pass  # already gone, or not ours to move: it still runs, only less tidily


def set_link(client: EngineClient | MachineEngines, link: str, words: str | Sequence[str] | LinkParams, direction: str) -> None:
    """Apply netem words to each chosen direction's current parameters (or set LinkParams)."""
    if isinstance(words, LinkParams):
        client.set(link, words, direction)
        return
    for one in each_direction(direction):
        current = client.params(link, one)
        client.set(link, parse_netem_words(words if isinstance(words, str) else list(words), current), one)


def find_run(prefix: str | None, root: str = DEFAULT_ROOT) -> RunState:
    """The run named `prefix`, or the only run there is."""
    runs = RunState.all(root)
    if prefix:
        for run in runs:
            if run.prefix == prefix:
                return run
        raise InputError(f"no testbed run {prefix!r}", fix=f"running: {', '.join(r.prefix for r in runs) or 'none'}")
    if not runs:
        raise InputError("no testbed is up", fix="start one with `caspian up`")
    if len(runs) > 1:
        raise InputError(
            f"{len(runs)} testbeds are up", fix="choose one with --run " + " / ".join(r.prefix for r in runs)
        )
    return runs[0]
