"""`FastPath`: the compiled engine shards with link names, loop threads and live control.

This runs inside the engine process (the wire namespace). It splits the links
between `EngineOptions.shards` compiled engines (emulator.engine.shards), runs
each loop in a thread of its own on a CPU of its own (the GIL is released
there), turns names and `LinkParams` into each engine's indices and dicts,
hands the timeline to the engines ahead of time (`schedule`), and keeps the
current parameters so that a partial change (`link set X loss 1%`) edits what
is in force.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from emulator import _engine
from emulator.engine.carrier import CarrierTimeline, set_carrier
from emulator.engine.shards import link_weights, partition
from emulator.engine.sockets import close_all, kernel_drops, open_link_end
from emulator.errors import EngineError, InputError
from emulator.model.linkparams import LinkParams

DIRECTIONS = ("a_to_b", "b_to_a")


@dataclass
class EngineOptions:
    """Tuning of the loop; the defaults are the measured ones (DESIGN.md)."""

    slots_per_direction: int = 4096
    batch: int = 64
    #: busy-poll this long before a deadline: a VM's timer wake-up is ~100 µs late
    spin_ns: int = 300_000
    #: sleep at least `doze_ns` in every `max_spin_ns` (7 %): a SCHED_FIFO
    #: thread that never sleeps is throttled by the kernel for tens of ms.
    #: Short naps delay few releases by little (bench: p99 lateness < 64 µs
    #: at 50 kpps, against < 256 µs with 70 µs naps per ms)
    max_spin_ns: int = 280_000
    doze_ns: int = 20_000
    #: CPU to pin the (first) loop thread to; None = the last CPU when there
    #: are several, -1 = no pinning. Shard k takes the k-th CPU below it.
    cpu: int | None = None
    #: engine loops (threads), each forwarding its own share of the links;
    #: None = not chosen (1 here; a Testbed picks the file's or the machine's default)
    shards: int | None = None
    #: SCHED_FIFO priority for the loop thread (0 = normal scheduling)
    realtime_priority: int = 10

    #: steer node-side receive processing (RPS) off the engine's CPU
    steer_receive: bool = True
    #: hold a PM QoS request for zero CPU wake-up latency (/dev/cpu_dma_latency)
    #: while the engine runs, so idle vCPUs poll instead of halting: a frame that
    #: arrives at an idle engine is read ~50 µs sooner on these VMs (ping RTT on the
    #: default chain 4.25-4.40 ms without, 4.14-4.17 ms with; 4.024 ms configured).
    #: Costs idle CPU time; released when the engine process exits.
    cpu_latency_qos: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineOptions":
        return cls(**data)

    @property
    def shard_count(self) -> int:
        """Engine loops to run (1 when not chosen)."""
        return self.shards if self.shards is not None else 1

    def shard_cpus(self) -> list[int]:
        """The CPU each shard's loop is pinned to (-1: not pinned), from the top down."""
        cpus = sorted(os.sched_getaffinity(0))
        count = self.shard_count
        if self.cpu is not None:
            if self.cpu < 0:
                return [-1] * count
            below = [c for c in cpus if c <= self.cpu][::-1] or [self.cpu]
            return [below[k % len(below)] for k in range(count)]
        if len(cpus) < 2:
            return [-1] * count
        return [cpus[-1 - (k % len(cpus))] for k in range(count)]

    def engine_cpu(self) -> int:
        """The CPU the first loop thread will be pinned to, or -1 for none."""
        return self.shard_cpus()[0]

    def other_cpus(self) -> set[int]:
        """CPUs left for everything but the engine (node processes, receive stacks);
        all of them when the shards take every CPU."""
        cpus = set(os.sched_getaffinity(0))
        rest = cpus - {c for c in self.shard_cpus() if c >= 0}
        return rest or cpus

    def receive_cpu_mask(self) -> str | None:
        """Hex CPU mask for node-side receive processing: every CPU no shard has."""
        cpus = set(os.sched_getaffinity(0))
        engines = {c for c in self.shard_cpus() if c >= 0}
        others = cpus - engines
        if not self.steer_receive or not engines or not others:
            return None
        return format(sum(1 << cpu for cpu in others), "x")


@dataclass
class LinkSpec:
    """One link as the engine process needs it."""

    name: str
    a_node: str
    b_node: str
    a_ifname: str
    b_ifname: str
    max_frame: int
    a_to_b: LinkParams
    b_to_a: LinkParams
    seed_a_to_b: int
    seed_b_to_a: int

    def to_dict(self) -> dict[str, Any]:
        data = self.__dict__.copy()
        data["a_to_b"] = self.a_to_b.to_dict()
        data["b_to_a"] = self.b_to_a.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LinkSpec":
        fields = dict(data)
        fields["a_to_b"] = LinkParams.from_dict(fields["a_to_b"])
        fields["b_to_a"] = LinkParams.from_dict(fields["b_to_a"])
        return cls(**fields)


@dataclass
class _LinkState:
    spec: LinkSpec
    shard: int
    index: int
    sockets: tuple[Any, Any]
    params: list[LinkParams]
    #: when `params` were last set live (CLOCK_REALTIME ns), per direction
    set_at_ns: list[int] = field(default_factory=lambda: [0, 0])
    #: scheduled parameter changes per direction: [(position in the engine's schedule, LinkParams)]
    scheduled_sets: list[list[tuple[int, LinkParams]]] = field(default_factory=lambda: [[], []])
    kernel_drops: list[int] = field(default_factory=lambda: [0, 0])


@dataclass
class _Planned:
    """One scheduled timeline change as handed to the engines."""

    event: dict[str, Any]
    #: (link, direction k, position in that direction's schedule)
    places: list[tuple[_LinkState, int, int]]


class FastPath:
    """All links of a testbed forwarded by `options.shard_count` compiled engine loops."""

    def __init__(self, links: list[LinkSpec], options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        weights = link_weights([(s.a_to_b.rate_bps, s.b_to_a.rate_bps) for s in links])
        assignment = partition(weights, self.options.shard_count)
        self._engines = [
            _engine.Engine(self.options.slots_per_direction, self.options.batch, self.options.spin_ns,
                           self.options.max_spin_ns, self.options.doze_ns)
            for _ in range(self.options.shard_count)
        ]
        self._links: dict[str, _LinkState] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._planned: list[_Planned] = []
        self._carrier: CarrierTimeline | None = None
        #: links whose interfaces this engine took down (a carrier cut)
        self._carrier_down: set[str] = set()
        self.scheduling: dict[str, Any] = {"shards": []}
        try:
            for spec, shard in zip(links, assignment):
                ends = (open_link_end(spec.a_ifname), open_link_end(spec.b_ifname))
                index = self._engines[shard].add_link(
                    ends[0].fileno(), ends[1].fileno(), spec.max_frame,
                    spec.a_to_b.to_engine(), spec.b_to_a.to_engine(),
                    spec.seed_a_to_b, spec.seed_b_to_a,
                )
                self._links[spec.name] = _LinkState(spec, shard, index, ends, [spec.a_to_b, spec.b_to_a])
        except BaseException:
            self.close()
            raise

    @property
    def shards(self) -> int:
        return len(self._engines)

    def shard_of(self, name: str) -> int:
        """The shard that forwards link `name`."""
        return self.link(name).shard

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Run each shard's loop in a thread with real-time priority and a pinned CPU."""
        if self._threads:
            raise EngineError("the engine is already running")
        cpus = self.options.shard_cpus()
        for shard, engine in enumerate(self._engines):
            self.scheduling["shards"].append({})
            thread = threading.Thread(target=self._run, args=(shard, engine, cpus[shard]),
                                      name=f"caspian-engine-{shard}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, shard: int, engine: Any, cpu: int) -> None:
        self._tune_thread(self.scheduling["shards"][shard], cpu)
        if shard == 0:
            self.scheduling.update({k: v for k, v in self.scheduling["shards"][0].items()})
        try:
            engine.run()
        except BaseException as exc:  # surfaced by stop()/check()
            self._error = exc

    def _tune_thread(self, report: dict[str, Any], cpu: int) -> None:
        # Both calls act on the calling thread only (pid 0) on Linux.
        if cpu >= 0:
            try:
                os.sched_setaffinity(0, {cpu})
                report["cpu"] = cpu
            except OSError as exc:
                report["cpu_error"] = str(exc)
        if self.options.realtime_priority > 0:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.options.realtime_priority))
                report["policy"] = f"SCHED_FIFO {self.options.realtime_priority}"
            except OSError as exc:
                report["policy"] = f"normal (SCHED_FIFO refused: {exc.strerror})"
        else:
            report["policy"] = "normal"

    def stop(self) -> None:
        """Stop the loops and wait for them; re-raises a loop failure."""
        self._join()
        self.check()

    def _join(self) -> None:
        for engine in self._engines:
            engine.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def check(self) -> None:
        """Raise EngineError if a loop thread died."""
        if self._error is not None:
            raise EngineError(f"engine loop failed: {self._error!r}")

    def close(self) -> None:
        if self._carrier is not None:
            self._carrier.stop()
        self._join()
        close_all([sock for link in self._links.values() for sock in link.sockets])
        self._links.clear()

    # -- control ----------------------------------------------------------

    def link(self, name: str) -> _LinkState:
        try:
            return self._links[name]
        except KeyError:
            raise InputError(
                f"no link named {name!r}", fix=f"links are: {', '.join(self._links) or 'none'}"
            ) from None

    def _directions(self, link: _LinkState, direction: str) -> list[int]:
        if direction == "both":
            return [0, 1]
        if direction in DIRECTIONS:
            return [DIRECTIONS.index(direction)]
        # a node name: the direction whose frames that node sends
        if direction == link.spec.a_node:
            return [0]
        if direction == link.spec.b_node:
            return [1]
        raise InputError(
            f"link {link.spec.name} has no direction {direction!r}",
            fix=f"use both, a_to_b, b_to_a, {link.spec.a_node} or {link.spec.b_node}",
        )

    def set_params(self, name: str, params: LinkParams, direction: str = "both") -> None:
        """Replace the parameters of one or both directions; takes effect on the next packet."""
        link = self.link(name)
        with self._lock:
            for k in self._directions(link, direction):
                self._engines[link.shard].set_params(2 * link.index + k, params.to_engine())
                link.params[k] = params
                link.set_at_ns[k] = time.time_ns()

    def params(self, name: str, direction: str = "a_to_b") -> LinkParams:
        """The parameters in force now (live changes and applied scheduled ones)."""
        link = self.link(name)
        with self._lock:
            return self._in_force(link, self._directions(link, direction)[0])

    def _in_force(self, link: _LinkState, k: int) -> LinkParams:
        current, since = link.params[k], link.set_at_ns[k]
        if link.scheduled_sets[k]:
            status = self._engines[link.shard].schedule_status(2 * link.index + k)
            for position, params in link.scheduled_sets[k]:
                applied = status[position]["applied_ns"] if position < len(status) else None
                if applied is not None and applied >= since:
                    current, since = params, applied
        return current

    def set_cut(self, name: str, cut: bool, direction: str = "both", *, carrier: bool = False) -> None:
        """Cut or restore a link now (both directions by default).

        `carrier`: the cut also takes the link's interfaces down in both nodes
        (both directions only). A restore brings back carrier a carrier cut took.
        """
        link = self.link(name)
        if carrier and direction != "both":
            raise InputError(f"a carrier cut of {name} takes both ends down, not one direction",
                             fix="drop --direction, or cut without --carrier")
        with self._lock:
            for k in self._directions(link, direction):
                self._engines[link.shard].set_outage(2 * link.index + k, cut)
            if cut and carrier:
                self._carrier_change(link, up=False)
            elif not cut and name in self._carrier_down:
                self._carrier_change(link, up=True)

    def _carrier_change(self, link: _LinkState, *, up: bool) -> int:
        """Set both wire ends of `link` up or down (their node-side peers follow); when (ns)."""
        for sock, ifname in zip(link.sockets, (link.spec.a_ifname, link.spec.b_ifname)):
            set_carrier(sock, ifname, up=up)
        if up:
            self._carrier_down.discard(link.spec.name)
        else:
            self._carrier_down.add(link.spec.name)
        return time.time_ns()

    def schedule(self, events: list[dict[str, Any]]) -> None:
        """Hand a timeline to the engines; each change applies at its instant.

        Each event: `at_ns` (CLOCK_REALTIME), `link`, `kind` (cut, restore,
        set), `direction` (both, a_to_b, b_to_a or a node), and for set
        `params` (LinkParams.to_dict()) and optionally `params_b_to_a`.
        Replaces any earlier schedule; an empty list clears it.
        """
        ordered = sorted(events, key=lambda e: int(e["at_ns"]))
        carrier_steps: list[tuple[int, str, bool, int]] = []   # (at_ns, link, up, event index)
        unlit = set(self._carrier_down)   # links without carrier at that point of the timeline
        per_direction: dict[tuple[str, int], list[tuple[int, str, dict[str, Any] | None]]] = {}
        planned: list[_Planned] = []
        sets: dict[tuple[str, int], list[tuple[int, LinkParams]]] = {}
        for event in ordered:
            if event["kind"] not in ("cut", "restore", "set"):
                raise InputError(f"unknown timeline change {event['kind']!r}", fix="use cut, restore or set")
            link = self.link(event["link"])
            places = []
            for k in self._directions(link, event.get("direction", "both")):
                params = None
                if event["kind"] == "set":
                    key = "params_b_to_a" if k == 1 and event.get("params_b_to_a") else "params"
                    params = LinkParams.from_dict(event[key])
                changes = per_direction.setdefault((link.spec.name, k), [])
                if params is not None:
                    sets.setdefault((link.spec.name, k), []).append((len(changes), params))
                changes.append((int(event["at_ns"]), event["kind"], params.to_engine() if params else None))
                places.append((link, k, len(changes) - 1))
            carrier_mode = event.get("mode", "silent") == "carrier"
            if carrier_mode and (event["kind"] not in ("cut", "restore") or event.get("direction", "both") != "both"):
                raise InputError(f"a carrier cut of {link.spec.name} must cut both directions",
                                 fix="use mode carrier on a cut or flap without a direction")
            if carrier_mode and event["kind"] == "cut":
                carrier_steps.append((int(event["at_ns"]), link.spec.name, False, len(planned)))
                unlit.add(link.spec.name)
            elif event["kind"] == "restore" and link.spec.name in unlit:
                # the restore of a carrier cut brings the light back, whatever its mode says
                carrier_steps.append((int(event["at_ns"]), link.spec.name, True, len(planned)))
                unlit.discard(link.spec.name)
            planned.append(_Planned(dict(event), places))
        if self._carrier is not None:
            self._carrier.stop()
            self._carrier = None
        with self._lock:
            for name, link in self._links.items():
                for k in (0, 1):
                    self._engines[link.shard].set_schedule(2 * link.index + k, per_direction.get((name, k), []))
                    link.scheduled_sets[k] = sets.get((name, k), [])
            self._planned = planned
        if carrier_steps:
            # The engine cuts the data plane at the instant; the interfaces
            # follow from this thread (an ioctl that takes the kernel's RTNL
            # lock and may wait for an RCU grace period: never in the loop).
            self._carrier = CarrierTimeline(
                carrier_steps, lambda name, up: self._carrier_change(self._links[name], up=up))
            self._carrier.start()

    def schedule_status(self) -> list[dict[str, Any]]:
        """Each scheduled event as planned, with per direction when the engine
        applied it and the arrival stamps of the frames either side of it."""
        out = []
        with self._lock:
            statuses: dict[tuple[int, int], list[dict[str, Any]]] = {}
            for plan in self._planned:
                directions = {}
                for link, k, position in plan.places:
                    key = (link.shard, 2 * link.index + k)
                    if key not in statuses:
                        statuses[key] = self._engines[link.shard].schedule_status(key[1])
                    directions[DIRECTIONS[k]] = statuses[key][position]
                entry = {k: v for k, v in plan.event.items() if k not in ("params", "params_b_to_a")}
                entry["directions"] = directions
                out.append(entry)
            if self._carrier is not None:
                for index, applied_ns in self._carrier.applied().items():
                    out[index]["carrier_applied_ns"] = applied_ns
        return out

    def set_probe_taps(self, taps: list[dict[str, Any]]) -> None:
        """Stamp probes in the engine: each tap `{link, direction (a_to_b|b_to_a), role
        (first|last), port, capacity}`; several streams (ports) may share a direction.
        Replaces every earlier tap."""
        by_direction: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for tap in taps:
            self.link(tap["link"])
            by_direction.setdefault((tap["link"], DIRECTIONS.index(tap["direction"])), []).append(tap)
        with self._lock:
            for link in self._links.values():
                for k in (0, 1):
                    self._engines[link.shard].set_probe_tap(2 * link.index + k, [], 0)
            for (name, k), group in by_direction.items():
                link = self.link(name)
                self._engines[link.shard].set_probe_tap(
                    2 * link.index + k, [(tap["role"], int(tap["port"])) for tap in group],
                    sum(int(tap["capacity"]) for tap in group))

    def probe_taps(self, taps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The stamps of each tap asked for (`link`, `direction`, `port`): seq, t_ns,
        overflow (of the direction, shared by its streams)."""
        with self._lock:
            out = []
            for tap in taps:
                link = self.link(tap["link"])
                k = DIRECTIONS.index(tap["direction"])
                got = self._engines[link.shard].probe_tap(2 * link.index + k)
                mine = [i for i, port in enumerate(got["port"]) if port == int(tap["port"])]
                out.append({"seq": [got["seq"][i] for i in mine], "t_ns": [got["t_ns"][i] for i in mine],
                            "overflow": got["overflow"]})
            return out

    def set_fidelity(self, epoch_ns: int, bin_ns: int, stall_threshold_ns: int) -> None:
        """Start each shard's lateness time bins at `epoch_ns` and count stalls over the threshold."""
        with self._lock:
            for engine in self._engines:
                engine.set_fidelity(epoch_ns, bin_ns, stall_threshold_ns)

    def fidelity(self) -> dict[str, Any]:
        """The engine's own timing, per shard (stalls, naps, wake-ups, CPU, policy)
        and per link direction (the largest release lateness in each time bin)."""
        with self._lock:
            raw = [engine.fidelity() for engine in self._engines]
        shards = []
        for shard, data in enumerate(raw):
            entry = {k: v for k, v in data.items() if k != "late_bins_us"}
            entry.update(self.scheduling["shards"][shard] if shard < len(self.scheduling["shards"]) else {})
            shards.append(entry)
        links: dict[str, Any] = {}
        for name, link in self._links.items():
            bins = raw[link.shard]["late_bins_us"]
            links[name] = {label: bins[2 * link.index + k] if 2 * link.index + k < len(bins) else []
                           for k, label in enumerate(DIRECTIONS)}
        return {"shards": shards, "late_bins_us": links}

    def stats(self) -> dict[str, Any]:
        """Counters per link and direction, each shard read at one consistent point."""
        self.check()
        with self._lock:
            raw = [engine.stats() for engine in self._engines]
            out: dict[str, Any] = {}
            for name, link in self._links.items():
                engine = self._engines[link.shard]
                cut = [engine.outage(2 * link.index + k) for k in (0, 1)]
                entry: dict[str, Any] = {
                    "ends": [link.spec.a_node, link.spec.b_node],
                    # True when either direction is cut; each direction says which
                    "cut": any(cut),
                    "shard": link.shard,
                }
                for k, label in enumerate(DIRECTIONS):
                    counters = dict(raw[link.shard][2 * link.index + k])
                    # Frames the kernel dropped at the receiving socket before
                    # the engine saw them (receive buffer overrun): outside the
                    # rx/tx invariant, so reported on their own.
                    link.kernel_drops[k] += kernel_drops(link.sockets[k])
                    counters["kernel_drops"] = link.kernel_drops[k]
                    counters["params"] = self._in_force(link, k).describe()
                    counters["cut"] = cut[k]
                    entry[label] = counters
                out[name] = entry
            return out
