"""A scenario's run as data: the `RunPlan`.

`compile_run(scenario)` is pure: it turns the traffic, timeline and capture
sections into what the runner will do, in order, with every time relative to
the scenario's t = 0 and every file named relative to the run's work
directory. Nothing here touches the machine; `caspian validate --plan` prints
it, and `emulator.run.runner` executes it against a started testbed.

What a plan holds:
- streams: each traffic stream's receiver and sender (node, port, files);
- taps: where the engine stamps probe streams (first and last link);
- steps: the timeline's cut/restore/set steps (flaps expanded), each with the
  label its failover metrics carry (cut1, restore1, ...); a partial failure or
  its repair (`fail`/`repair`) is a `set` of the link's reduced rate, its
  `event` saying which;
- actions: the timed starts, in the order the runner takes them: senders that
  start ahead (probes: before t = 0 is fixed; the runner fixes it once they
  are ready, and they wait for their own start), the others (iperf3
  clients) at their start,
  failover traces (launched ahead of their instant, with dynamic routing);
- captures: the `capture:` files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.model.metrics import stream_kind
from emulator.scenario.scenario import CAPACITY_KINDS, Event, Scenario, TrafficSpec
from emulator.traffic.kinds import StreamPlan, tools

#: Lead time between fixing the scenario's t = 0 and t = 0: the engine is told the timeline,
#: taps and captures, and the first failover traces (scapy's import) start up. The senders
#: that start ahead (StreamTools.starts_ahead: the probes) are ready before t = 0 is fixed.
LEAD_NS = 1_500_000_000
#: probe streams the engine can stamp on one link direction (TAP_MAX in cext/direction.pxi)
PROBE_TAPS_PER_DIRECTION = 16
#: failover traces (dynamic routing): the path is traced this long before each step and before the end
TRACE_BEFORE_NS = 500_000_000
#: ... and each trace process is started this much earlier (it imports scapy first, then waits)
TRACE_LAUNCH_NS = 3_000_000_000


@dataclass(frozen=True)
class ProbeTap:
    """The engine stamps stream `port`'s probes on one link direction (`role` first or last link)."""

    stream: str
    link: str
    direction: str
    role: str                      # first | last
    port: int
    capacity: int                  # stamps kept: every probe, twice over for duplicates


@dataclass(frozen=True)
class Step:
    """One timeline step as the engine applies it (flaps expanded into cuts and restores)."""

    at_ns: int                     # from t0
    kind: str                      # cut | restore | set
    link: str
    direction: str
    mode: str
    label: str | None              # cut1, restore1, ... (the step that carries an event's metrics)
    params: dict[str, Any] | None = None
    params_b_to_a: dict[str, Any] | None = None
    words: str = ""
    #: the timeline event it plays when that is not `kind` itself: fail or repair (a `set` of the rate)
    event: str = ""

    @property
    def shown(self) -> str:
        """The kind people read (fail, repair, cut, ...)."""
        return self.event or self.kind


@dataclass(frozen=True)
class Action:
    """A timed start: a sender (`stream`) or a failover trace (`trace`, towards its `trace_at_ns`)."""

    at_ns: int                     # when the runner takes it, from t0 (negative: before t0)
    kind: str                      # sender | trace
    stream: str
    trace: str = ""                # "before:<label>" or "final"
    trace_at_ns: int = 0           # the instant the trace measures, from t0


@dataclass(frozen=True)
class CaptureTarget:
    link: str
    direction: str
    file: str                      # in the report directory


@dataclass(frozen=True)
class RunPlan:
    """Everything a run does, in order, before it does it."""

    scenario: str
    duration_ns: int
    lead_ns: int
    streams: tuple[StreamPlan, ...]
    taps: tuple[ProbeTap, ...]
    steps: tuple[Step, ...]
    actions: tuple[Action, ...]
    captures: tuple[CaptureTarget, ...]
    dynamic_routing: bool
    #: the instrument stream (a probe stream) the failover traces and outages follow (the first), or None
    trace_stream: str | None

    def stream(self, name: str) -> StreamPlan:
        return next(s for s in self.streams if s.name == name)

    @property
    def programs(self) -> tuple[str, ...]:
        """The programs the streams' tools need on the machine."""
        return tuple(dict.fromkeys(p for s in self.streams for p in tools(s.kind).programs))

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (times in ns from t0)."""
        return asdict(self)

    def describe(self) -> str:
        """A readable listing in the order the runner works, times in s from t0."""
        lines = [f"# caspian run plan {self.scenario}: {self.duration_ns / 1e9:g} s, tools started "
                 f"{self.lead_ns / 1e9:g} s ahead; {len(self.streams)} streams, {len(self.steps)} steps, "
                 f"{len(self.actions)} timed starts"]
        for s in self.streams:
            lines.append(f"receiver {s.name} ({s.kind}) in {s.target} port {s.port}"
                         + (" ipv6" if s.ipv6 else "") + f"  files {', '.join(s.files.values())}")
        lines += [f"tap {t.stream} {t.role} link {t.link} {t.direction}" for t in self.taps]
        lines += [f"capture {c.link} {c.direction} -> {c.file}" for c in self.captures]
        for step in self.steps:
            what = step.words if step.kind == "set" else step.direction + (f" {step.mode}" if step.kind == "cut" else "")
            lines.append(f"engine at {step.at_ns / 1e9:+.3f} s: {step.shown} {step.link} {what}"
                         + (f"  [{step.label}]" if step.label else ""))
        for a in self.actions:
            if a.kind == "sender":
                s = self.stream(a.stream)
                kind = stream_kind(s.kind)
                rate = (f"{s.rate_pps:g} pps" if kind.rate_field == "rate_pps"
                        else f"{s.rate_bps:g} bit/s" if s.rate_bps else "unlimited")
                size = f", {s.size} B" if kind.size_range is not None else ""   # TCP's segments are the stack's
                when = ("start before t0 (t0 is fixed once it is ready)" if tools(s.kind).starts_ahead
                        else f"start at {a.at_ns / 1e9:+.3f} s")
                lines.append(f"{when}: {s.kind} sender {s.name} in {s.source} -> {s.target}, "
                             f"{rate}{size}, sends {s.start_ns / 1e9:g}..{s.stop_ns / 1e9:g} s")
            else:
                lines.append(f"start at {a.at_ns / 1e9:+.3f} s: trace {a.trace} from {self.stream(a.stream).source}"
                             f" at {a.trace_at_ns / 1e9:+.3f} s")
        lines.append(f"end at {self.duration_ns / 1e9:+.3f} s: stop every tool, collect")
        return "\n".join(lines) + "\n"


def _stream(spec: TrafficSpec, index: int, duration_ns: int) -> StreamPlan:
    stop_ns = spec.stop_ns if spec.stop_ns is not None else duration_ns
    kind = tools(spec.kind)
    return StreamPlan(spec.name, spec.kind, spec.source, spec.target, kind.base_port + index, spec.ipv6, spec.size,
                      spec.start_ns, stop_ns, rate_pps=spec.rate_pps, rate_bps=spec.rate_bps,
                      files=kind.files(spec.name), realtime_priority=kind.realtime_priority(spec.rate_pps))


def probe_taps(scenario: Scenario, streams: tuple[StreamPlan, ...]) -> tuple[ProbeTap, ...]:
    """Where the engine stamps each probe stream: at its first link (arrival from
    the source) and its last (release to the target), the network's own one-way
    delay apart from the hosts' stacks. The engine tells streams apart by their
    destination port, up to PROBE_TAPS_PER_DIRECTION on one link direction; a
    stream beyond that has no `net_owd_*`. A stream between two hosts on one link
    is not tapped (its network is that one link: the stamps would add nothing)."""
    topology = scenario.topology
    per_direction: dict[tuple[str, str], int] = {}
    taps: list[ProbeTap] = []
    for s in streams:
        if not tools(s.kind).engine_stamps:
            continue
        capacity = int(s.rate_pps * (s.stop_ns - s.start_ns) / 1e9 * 2) + 1024   # + room for a late start
        first = [(link.name, "a_to_b" if link.a.node == s.source else "b_to_a") for link in topology.links_of(s.source)]
        last = [(link.name, "a_to_b" if link.b.node == s.target else "b_to_a") for link in topology.links_of(s.target)]
        hops = first + last
        if set(first) & set(last) or any(per_direction.get(h, 0) >= PROBE_TAPS_PER_DIRECTION for h in hops):
            continue
        for h in hops:
            per_direction[h] = per_direction.get(h, 0) + 1
        taps += [ProbeTap(s.name, link, direction, "first", s.port, capacity) for link, direction in first]
        taps += [ProbeTap(s.name, link, direction, "last", s.port, capacity) for link, direction in last]
    return tuple(taps)


def timeline_steps(scenario: Scenario) -> tuple[Step, ...]:
    """The timeline as the engine applies it, in time order, with each event's label on its first step."""
    labels = {id(event): label for label, event in scenario.measured_steps()}
    pairs: list[tuple[Event, str | None]] = sorted(
        ((step, labels[id(event)] if k == 0 else None)
         for event in scenario.timeline for k, step in enumerate(event.expand())),
        key=lambda pair: pair[0].at_ns)   # as Scenario.steps(), with the labels
    out = []
    for step, label in pairs:
        # a fail or repair reaches the engine as a `set` of both directions' reduced rate
        kind, event = ("set", step.kind) if step.kind in CAPACITY_KINDS else (step.kind, "")
        params = step.params.to_dict() if kind == "set" and step.params is not None else None
        other = (step.params_b_to_a.to_dict() if kind == "set" and step.direction == "both"
                 and step.params_b_to_a is not None else None)
        out.append(Step(step.at_ns, kind, step.link, step.direction, step.mode, label, params, other, step.words, event))
    return tuple(out)


def compile_run(scenario: Scenario) -> RunPlan:
    """The RunPlan of `scenario` (pure)."""
    duration = scenario.duration_ns
    streams = tuple(_stream(spec, i, duration) for i, spec in enumerate(scenario.traffic))
    actions = [Action(-LEAD_NS if tools(s.kind).starts_ahead else s.start_ns, "sender", s.name) for s in streams]
    instruments = [s for s in streams if stream_kind(s.kind).instrument]
    trace_stream = instruments[0].name if instruments else None
    dynamic = scenario.topology.dynamic_routing
    if dynamic and trace_stream is not None and scenario.timeline:
        points = [(f"before:{label}", event.at_ns - TRACE_BEFORE_NS) for label, event in scenario.measured_steps()]
        points.append(("final", duration - TRACE_BEFORE_NS))
        actions += [Action(at - TRACE_LAUNCH_NS, "trace", trace_stream, key, at) for key, at in points]
    # in time order; at one instant the traces first (they only wait), in their own order
    order = {id(a): (0 if a.kind == "trace" else 1, i) for i, a in enumerate(actions)}
    actions.sort(key=lambda a: (a.at_ns, order[id(a)]))
    captures = tuple(CaptureTarget(c.link, c.direction, f"{c.link}.pcapng") for c in scenario.capture)
    return RunPlan(scenario.name, duration, LEAD_NS, streams, probe_taps(scenario, streams),
                   timeline_steps(scenario), tuple(actions), captures, dynamic, trace_stream)
