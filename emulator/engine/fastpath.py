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
from emulator.engine.capture import DEFAULT_SNAPLEN, RING_BYTES, WHOLE_FRAMES, CaptureTarget, CaptureWriter
from emulator.engine.carrier import CarrierTimeline, set_carrier
from emulator.engine.options import EngineOptions
from emulator.engine.ranges import engine_params
from emulator.engine.shards import link_weights, partition
from emulator.engine.sockets import close_all, kernel_drops, open_link_end
from emulator.errors import EngineError, InputError
from emulator.model.direction import DIRECTIONS, link_directions
from emulator.model.linkparams import LinkParams


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

    def engine_params(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Both directions' `to_engine()` dicts, checked against the engine's ranges
        (InputError naming the link, the direction and the value)."""
        return (engine_params(self.a_to_b, f"link {self.name} a_to_b ({self.a_node} -> {self.b_node})"),
                engine_params(self.b_to_a, f"link {self.name} b_to_a ({self.b_node} -> {self.a_node})"))

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
        self._capture: CaptureWriter | None = None   # the running (or last) packet capture
        self.scheduling: dict[str, Any] = {"shards": []}
        try:
            for spec, shard in zip(links, assignment):
                self._add_link(spec, shard)
        except BaseException:
            self.close()
            raise

    def _add_link(self, spec: LinkSpec, shard: int) -> None:
        """Open both ends of `spec` and hand them to its shard's engine. On any
        failure (an end that cannot be bound, parameters the engine refuses) the
        ends opened here are closed: only a link that was added is recorded, and
        close() closes what is recorded."""
        ends: list[Any] = []
        try:
            ends.append(open_link_end(spec.a_ifname))
            ends.append(open_link_end(spec.b_ifname))
            index = self._engines[shard].add_link(
                ends[0].fileno(), ends[1].fileno(), spec.max_frame,
                *spec.engine_params(), spec.seed_a_to_b, spec.seed_b_to_a,
            )
        except BaseException:
            close_all(ends)
            raise
        self._links[spec.name] = _LinkState(spec, shard, index, (ends[0], ends[1]), [spec.a_to_b, spec.b_to_a])

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
        for engine in self._engines:
            engine.arm()
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
        if self._capture is not None:
            self._capture.stop()       # the file is left complete, with what it holds
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
        spec = link.spec
        return [DIRECTIONS.index(d) for d in link_directions(direction, spec.name, spec.a_node, spec.b_node)]

    # -- capture ----------------------------------------------------------------

    def capture_start(self, targets: list[dict[str, Any]], path: str, *, count: int | None = None,
                      snaplen: int = DEFAULT_SNAPLEN) -> dict[str, Any]:
        """Capture link directions into the pcapng file `path` (emulator.engine.capture):
        each target `{link, direction}` (both, a_to_b, b_to_a or the sending node),
        optionally with its own `path` (a file per target), until `count` frames or
        capture_stop; frames cut at `snaplen` bytes (0: whole). One capture at a time."""
        snaplen = WHOLE_FRAMES if snaplen == 0 else snaplen
        if not 64 <= snaplen <= WHOLE_FRAMES:
            raise InputError(f"snaplen {snaplen} is outside 64..{WHOLE_FRAMES}", fix="use 0 for whole frames, or 64 or more")
        if self._capture is not None and not self._capture.finished:
            raise InputError("a capture is already running on this testbed", fix="stop it first (Ctrl-C)")
        chosen: list[tuple[_LinkState, int]] = []
        where: list[str] = []
        for asked in targets:
            link = self.link(asked["link"])
            for k in self._directions(link, asked.get("direction", "both")):
                if (link, k) not in chosen:
                    chosen.append((link, k))
                    where.append(str(asked.get("path") or path))
        capture_targets = [
            CaptureTarget(link.spec.name, DIRECTIONS[k], link.spec.a_node if k == 0 else link.spec.b_node,
                          link.spec.b_node if k == 0 else link.spec.a_node, 2 * n)
            for n, (link, k) in enumerate(chosen)]
        files: dict[str, list[CaptureTarget]] = {}
        for file, target in zip(where, capture_targets):
            files.setdefault(file, []).append(target)
        shards = sorted({link.shard for link, _ in chosen})

        def drain() -> list[bytes]:
            return [self._engines[s].capture_drain() for s in shards]

        def stop_engines() -> None:
            with self._lock:
                for link, k in chosen:
                    self._engines[link.shard].set_capture(2 * link.index + k, -1)

        def status() -> list[dict[str, Any]]:
            return [self._engines[s].capture_status() for s in shards]

        with self._lock:
            for s in shards:
                self._engines[s].capture_open(RING_BYTES, snaplen)
        from emulator import __version__

        try:
            self._capture = CaptureWriter(files, drain, stop_engines, status, count=count,
                                          snaplen=snaplen, application=f"caspian {__version__}",
                                          cpus=set(self.options.other_cpus()))
        except OSError as exc:
            raise InputError(f"cannot write the capture file {exc.filename or path}: {exc.strerror}",
                             fix="give -w a path in a writable directory") from exc
        with self._lock:
            for target, (link, k) in zip(capture_targets, chosen):
                self._engines[link.shard].set_capture(2 * link.index + k, target.interface)
        return {"path": path, "files": list(files), "interfaces": [name for t in capture_targets for name, _ in t.names()]}

    def capture_status(self) -> dict[str, Any]:
        """{"running", "frames"} of the current (or last) capture."""
        capture = self._capture
        if capture is None:
            return {"running": False, "frames": 0}
        return {"running": not capture.finished, "frames": capture.frames, "path": capture.path}

    def capture_stop(self) -> dict[str, Any]:
        """Stop the capture and close its file complete; its summary (frames, lost, path)."""
        capture = self._capture
        if capture is None:
            raise InputError("no capture is running on this testbed", fix="start one with caspian capture LINK")
        return capture.stop()

    def set_params(self, name: str, params: LinkParams, direction: str = "both") -> None:
        """Replace the parameters of one or both directions; takes effect on the next packet."""
        link = self.link(name)
        with self._lock:
            engine = engine_params(params, f"link {name}")
            for k in self._directions(link, direction):
                self._engines[link.shard].set_params(2 * link.index + k, engine)
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
                engine = (engine_params(params, f"link {link.spec.name} {DIRECTIONS[k]} (timeline set)")
                          if params else None)
                changes.append((int(event["at_ns"]), event["kind"], engine))
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
        """The engine's own timing, per shard (stalls, naps, wake-ups, CPU, policy),
        and per link direction the largest release lateness (`late_bins_us`) and
        the largest queue in packets (`queue_bins`) in each time bin."""
        with self._lock:
            raw = [engine.fidelity() for engine in self._engines]
        shards = []
        for shard, data in enumerate(raw):
            entry = {k: v for k, v in data.items() if k not in ("late_bins_us", "queue_bins")}
            entry.update(self.scheduling["shards"][shard] if shard < len(self.scheduling["shards"]) else {})
            shards.append(entry)
        per_link: dict[str, dict[str, Any]] = {"late_bins_us": {}, "queue_bins": {}}
        for key, links in per_link.items():
            for name, link in self._links.items():
                bins = raw[link.shard].get(key, [])
                links[name] = {label: bins[2 * link.index + k] if 2 * link.index + k < len(bins) else []
                               for k, label in enumerate(DIRECTIONS)}
        return {"shards": shards, **per_link}

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
