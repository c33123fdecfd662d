"""`collect()`: what a run recorded, turned into its metrics, series and fidelity.

Pure: it reads only the `Recording` (emulator.run.runner) and the plan, so the
same recording always gives the same figures, and each figure can be checked
in a unit test without a testbed. Metric names are those of the registry
(emulator.model.metrics), which the loader checks assertions against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator.engine.counters import invariant_holds
from emulator.measure.fidelity import Fidelity, summarize as summarize_fidelity
from emulator.report.report import TimelineMark
from emulator.routing import convergence, failover
from emulator.routing.trace import hops_to_nodes
from emulator.run.plan import TRACE_BEFORE_NS, RunPlan
from emulator.run.runner import GRACE_S, Recording
from emulator.model.capacity import scale_back
from emulator.model.metrics import stream_kind
from emulator.scenario.paths import path_floor_ns, path_hops, shortest_path
from emulator.scenario.scenario import CAPACITY_KINDS, START_STEP, Scenario, TrafficSpec
from emulator.scenario.topology import Topology
from emulator.traffic import analysis
from emulator.traffic.kinds import tools

#: How long after a restore the stream counts as disturbed (for loss_outside_events_pct).
RECOVERY_NS = 1_000_000_000
#: ... and how long before a cut (probes already on their way are lost too).
LEAD_IN_NS = 100_000_000
#: ... and, with dynamic routing, how long after the last route change the event caused
#: (each router's FIB update lands within a few ms of its route message)
ROUTE_SETTLE_NS = 200_000_000
#: a trace that began this much after its moment (a starved CPU) could have run into
#: the step it traces before: half its lead, so its probes (answers within ~0.1 s on
#: the shipped paths) still went and came back before the step
TRACE_LATE_NS = TRACE_BEFORE_NS // 2
#: a window's throughput leaves out its first second: TCP needs a few RTTs to slow-start or,
#: after a partial failure, to drain the queue the faster rate left and back off
SETTLE_NS = 1_000_000_000
#: packets that carry 99 % of the weight of RFC 3550's jitter estimate (gain 1/16): (15/16)^71 < 0.01
JITTER_WINDOW_PACKETS = 71


@dataclass
class Collected:
    """A run's figures, ready for the Report."""

    metrics: dict[str, Any]
    series: dict[str, dict[str, list]]
    marks: list[TimelineMark]
    timeline: list[dict[str, Any]]
    fidelity: Fidelity
    errors: list[str]
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the replica factors (Report.scale, scale_summary); {} when nothing is scaled
    scale: dict[str, Any] = field(default_factory=dict)


def timeline_status(recording: Recording) -> list[dict[str, Any]]:
    """Each timeline step: scheduled and applied time (s from t0), the
    engine's application error, and the arrival stamps either side of it."""
    t0 = recording.t0_ns
    out = []
    for event in recording.schedule:
        applied = [d["applied_ns"] for d in event["directions"].values()]
        entry: dict[str, Any] = {
            "label": event.get("label"), "kind": event["kind"], "link": event["link"],
            "direction": event.get("direction", "both"),
            "scheduled_s": (event["at_ns"] - t0) / 1e9, "applied_s": None, "apply_error_us": None,
        }
        if applied and None not in applied:
            entry["applied_s"] = (max(applied) - t0) / 1e9
            entry["apply_error_us"] = (max(applied) - event["at_ns"]) / 1e3
        if event.get("mode") == "carrier" or "carrier_applied_ns" in event:
            # the interfaces taken down (a carrier cut) or brought back (its restore)
            entry["mode"] = event.get("mode", "silent")
            carrier = event.get("carrier_applied_ns")
            entry["carrier_applied_s"] = (carrier - t0) / 1e9 if carrier is not None else None
        for name, d in event["directions"].items():
            entry[name] = {key.replace("_ns", "_s"): (d[key] - t0) / 1e9 if d[key] is not None else None
                           for key in ("applied_ns", "last_before_ns", "first_after_ns")}
        out.append(entry)
    return out


def cut_windows(plan: RunPlan, t0_ns: int, timeline: list[dict[str, Any]] | None = None) -> dict[str, list[list[int]]]:
    """Per link, its cut spans [start, end] in CLOCK_REALTIME ns (end -1: still cut at the end):
    from the instants the engine applied the cuts and restores, else the scheduled ones."""
    windows: dict[str, list[list[int]]] = {}
    if timeline:
        moments = [(e["kind"], e["link"], t0_ns + int(round((e["applied_s"] if e["applied_s"] is not None
                                                             else e["scheduled_s"]) * 1e9))) for e in timeline]
    else:
        moments = [(s.kind, s.link, t0_ns + s.at_ns) for s in plan.steps]
    for kind, link, at in moments:
        if kind == "cut":
            windows.setdefault(link, []).append([at, -1])
        elif kind == "restore":
            spans = windows.get(link, [])
            if spans and spans[-1][1] < 0:
                spans[-1][1] = at
    return windows


def _pacing(record: Any) -> dict[str, Any]:
    """A stream sender's pacing figures for the fidelity section; a probe stream's
    also how much its sender's lateness can have lengthened its longest gap."""
    summary = dict(record.summary)
    if record.records is not None and summary.get("late_events_complete") and "interval_ns" in summary:
        summary["gap_late_max_ns"] = analysis.gap_pacing_error_ns(
            record.records, summary["sent"], summary["interval_ns"], summary.get("late_events", []))
    if record.records is not None and "interval_ns" in summary and "sent" in summary:
        summary["spacing_error_mean_ns"] = analysis.spacing_error_mean_ns(
            record.records, summary["sent"], summary["interval_ns"])
    summary.pop("late_events", None)
    return summary


def cut_total_ms(plan: RunPlan, t0_ns: int, timeline: list[dict[str, Any]] | None = None) -> float:
    """Total time links were cut (cut_windows), a link still cut at the end counted to the end."""
    end = t0_ns + plan.duration_ns
    return sum((stop if stop > 0 else end) - start for spans in cut_windows(plan, t0_ns, timeline).values()
               for start, stop in spans) / 1e6


def link_metrics(stats: dict[str, Any]) -> dict[str, float | None]:
    """Flat `link.<name>.<dir>.<metric>` values from engine counters."""
    out: dict[str, float | None] = {}
    for name, entry in stats.items():
        for direction in ("a_to_b", "b_to_a"):
            c = entry[direction]
            base = f"link.{name}.{direction}"
            out[f"{base}.rx_packets"] = c["rx_packets"]
            out[f"{base}.tx_packets"] = c["tx_packets"]
            out[f"{base}.duplicated"] = c["duplicated"]
            out[f"{base}.corrupted"] = c["corrupted"]
            for reason in ("outage", "loss", "queue"):
                out[f"{base}.drops_{reason}"] = c["drops"][reason]
    return out


def stream_metrics(plan: RunPlan, recording: Recording, windows: list[tuple[int, int]],
                   errors: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, list]]]:
    """`<stream>.<metric>` of every stream, and its time series for the plots."""
    metrics: dict[str, Any] = {}
    series: dict[str, dict[str, list]] = {}
    for s in plan.streams:
        record = recording.streams[s.name]
        result: dict[str, Any] = {}
        if record.error is not None:
            errors.append(f"{s.name}: no result ({record.error})")
        else:
            result, stream_series = tools(s.kind).analyze(s, record, recording.t0_ns, windows, errors)
            if stream_series is not None:
                series[s.name] = stream_series
        for metric, value in result.items():
            metrics[f"{s.name}.{metric}"] = value
    return metrics, series


@dataclass
class _Traces:
    results: dict[str, Any]
    late: dict[str, float] = field(default_factory=dict)        # key -> ms late (discarded)
    unanswered: list[str] = field(default_factory=list)         # nobody answered
    incomplete: list[str] = field(default_factory=list)         # did not reach the target
    #: key -> (first echo sent, last answer back), CLOCK_REALTIME ns: when its RTTs were measured
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: key -> how long the trace waited for a CPU while its echoes were out, ms
    waits: dict[str, float] = field(default_factory=dict)


def _traces(plan: RunPlan, recording: Recording, errors: list[str]) -> _Traces:
    """The traces' results: key -> failover.Trace (None for one that failed or is not to be trusted)."""
    out = _Traces({})
    source = plan.stream(plan.trace_stream).source if plan.trace_stream else ""
    for key, data in recording.traces.items():
        if data is None:
            out.results[key] = None
            continue
        try:
            late_ns = int(data["at_ns"]) - int(data.get("asked_ns", data["at_ns"]))
            if late_ns > TRACE_LATE_NS:
                # it may have crossed the step it was to trace before: no figure
                # rather than a wrong one (the verdict names it: inconclusive)
                out.late[key] = late_ns / 1e6
                out.results[key] = None
                continue
            if not any(data["hops"]):
                # not even the first router answered: no path was measured (a
                # starved trace), which is not the path "the source alone"
                out.unanswered.append(key)
                out.results[key] = None
                continue
            if not data["reached"]:
                out.incomplete.append(key)
            out.results[key] = failover.Trace(hops_to_nodes(data["hops"], recording.address_owners, source),
                                              [float(v) for v in data["rtt_ms"]], bool(data["reached"]))
            sent = [int(v) for v in data.get("ping_sent_ns", [])]
            if sent and len(sent) == len(data["rtt_ms"]):
                out.windows[key] = (min(sent), max(t + int(float(r) * 1e6) for t, r in zip(sent, data["rtt_ms"])))
                out.waits[key] = float(data.get("runqueue_wait_ms", 0.0))
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(f"trace {key}: no result ({exc})")
            out.results[key] = None
    return out


def _applied(plan: RunPlan, t0_ns: int) -> list[tuple[str, str, str, int]]:
    """(label, kind, link, t_ns) of every measured step, as failover.step_windows takes them."""
    return [(s.label, s.label.rstrip("0123456789"), s.link, t0_ns + s.at_ns) for s in plan.steps if s.label]


def trace_keys(plan: RunPlan, t0_ns: int) -> dict[str, str]:
    """Each routing step's traced RTTs, keyed as Fidelity.paths is (`routing.<step>.before|after`),
    -> the trace that measured them: the one before the step, and the one before the next (or the final)."""
    steps = failover.step_windows(_applied(plan, t0_ns), t0_ns + plan.duration_ns + int(GRACE_S * 1e9))
    after = [f"before:{step.label}" for step in steps[1:]] + ["final"]
    out = {}
    for step, next_key in zip(steps, after):
        out[f"routing.{step.label}.before"] = f"before:{step.label}"
        out[f"routing.{step.label}.after"] = next_key
    return out


def trace_windows(plan: RunPlan, t0_ns: int, traces: _Traces) -> dict[str, tuple[int, int]]:
    """When each routing step's traced RTTs were measured (trace_keys), CLOCK_REALTIME ns."""
    return {name: traces.windows[key] for name, key in trace_keys(plan, t0_ns).items() if key in traces.windows}


def failover_metrics(scenario: Scenario, plan: RunPlan, recording: Recording, traces: _Traces,
                     marks: list[TimelineMark]) -> dict[str, Any]:
    """`routing.<step>.<metric>` (emulator.routing.failover, .convergence); adds route and detection marks."""
    t0 = recording.t0_ns
    end_ns = t0 + plan.duration_ns + int(GRACE_S * 1e9)
    steps = failover.step_windows(_applied(plan, t0), end_ns)
    found = traces.results
    before = {step.label: found.get(f"before:{step.label}") for step in steps}
    after = {step.label: found.get(f"before:{nxt.label}") for step, nxt in zip(steps, steps[1:])}
    if steps:
        after[steps[-1].label] = found.get("final")
    outages: dict[str, int | None] = {}
    streams: list[convergence.ProbeStream] = []
    traced = recording.streams.get(plan.trace_stream or "")
    if traced is not None and traced.error is None and traced.summary is not None:
        summary = traced.summary
        first: dict[int, int] = {}
        for seq, sent_ns in zip(traced.records.seq, traced.records.send_ns):
            first.setdefault(seq, sent_ns)
        received = sorted(first.items())
        for step in steps:
            outages[step.label] = failover.window_outage_ns(received, summary["sent"], summary["interval_ns"],
                                                            step.t_ns, step.end_ns)
        # RFC 6412/6413 figures: the traced stream first, then the others (route-specific)
        streams.append(convergence.ProbeStream(traced.records, summary["sent"], summary["interval_ns"],
                                               summary["first_ns"]))
        for s in plan.streams:
            other = recording.streams[s.name]
            if stream_kind(s.kind).instrument and s.name != plan.trace_stream and other.error is None and other.summary:
                streams.append(convergence.ProbeStream(other.records, other.summary["sent"],
                                                       other.summary["interval_ns"], other.summary["first_ns"]))
    for t_ns, router, count in failover.route_marks(steps, recording.route_events):
        marks.append(TimelineMark((t_ns - t0) / 1e9, "route", router, f"{count} route change{'s' if count != 1 else ''}"))
    for step in steps:   # the detection, as a mark of its protocol
        detected = failover.first_state_change(step, recording.state_events)
        if detected is not None:
            marks.append(TimelineMark((detected.t_ns - t0) / 1e9, detected.kind, detected.router,
                                      failover.describe(detected)))
    marks.sort(key=lambda m: m.t_s)
    directions = {label: event.direction for label, event in scenario.measured_steps()}
    metrics = failover.failover_metrics(steps, recording.route_events, traces_before=before, traces_after=after,
                                        outages_ns=outages, state_events=recording.state_events,
                                        bfd_windows_ns=failover.bfd_windows_ns(steps, scenario.topology, directions))
    metrics.update(convergence.convergence_metrics(steps, streams))
    metrics[f"routing.{START_STEP}.convergence_s"] = recording.convergence_s
    return metrics


def jitter_windows(scenario: Scenario, t0_ns: int) -> dict[str, tuple[int, int]]:
    """Per stream, the stretch before its end whose packets its jitter's last value
    weighs 99 % (CLOCK_REALTIME ns): JITTER_WINDOW_PACKETS at its packet rate."""
    out = {}
    for spec in scenario.traffic:
        pps = tools(spec.kind).packet_rate(spec.rate_pps, spec.rate_bps, spec.size)
        if pps is None:
            continue  # no jitter figure (TCP)
        stop = spec.stop_ns if spec.stop_ns is not None else scenario.duration_ns
        span = int(JITTER_WINDOW_PACKETS / max(pps, 1e-3) * 1e9)
        out[spec.name] = (t0_ns + max(spec.start_ns, stop - span), t0_ns + stop)
    return out


def measured_paths(topology: Topology, traffic: tuple[TrafficSpec, ...],
                   metrics: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """The link directions each delay figure crossed (Fidelity.paths): per traffic
    stream the least-delay path, or the longest of the paths a failover trace saw it
    take; per routing step's traced path (`routing.<step>.before|after`) there and back."""

    def hops(nodes: Any) -> list[tuple[str, str]] | None:
        if not isinstance(nodes, list) or len(nodes) < 2:
            return None
        try:
            return path_hops(topology, nodes)
        except KeyError:
            return None  # a trace cut short, or through a node it could not name

    traced: list[list[str]] = []
    out: dict[str, list[tuple[str, str]]] = {}
    for metric, value in metrics.items():
        parts = metric.split(".")
        if parts[0] == "routing" and len(parts) == 3 and parts[2] in ("path_before", "path_after"):
            there, back = hops(value), hops(list(reversed(value)) if isinstance(value, list) else None)
            if there and back:
                out[f"routing.{parts[1]}.{parts[2].split('_')[1]}"] = there + back
                traced.append(value)
    for spec in traffic:
        try:
            candidates = [hops(shortest_path(topology, spec.source, spec.target))]
        except KeyError:
            candidates = []   # no path (the loader refuses such a stream; a testbed's own scenario may not)
        candidates += [hops(nodes) for nodes in traced if nodes[0] == spec.source and nodes[-1] == spec.target]
        out[spec.name] = max((c for c in candidates if c), key=len, default=[])
    return out


def _window_mean(points: list[tuple[float, float]], start_s: float, end_s: float) -> float | None:
    """Mean of the per-interval throughputs whose whole interval lies in [start_s, end_s]."""
    inside, previous = [], None
    for end, value in points:
        begin = previous if previous is not None else end - 1.0
        previous = end
        if begin >= start_s - 1e-6 and end <= end_s + 1e-6:
            inside.append(value)
    return sum(inside) / len(inside) if inside else None


def capacity_windows(scenario: Scenario, link: str) -> dict[str, tuple[int, int, float]]:
    """before/during/after of a link's partial failures: (start ns, end ns, least share of the lit
    capacity in service), from t0. During runs from the first fail to the repair that brings the
    link back to its whole lit capacity (or the end); no fail: the whole run is `before`."""
    events = [e for e in sorted(scenario.timeline, key=lambda e: e.at_ns)
              if e.link == link and e.kind in CAPACITY_KINDS]
    end = scenario.duration_ns
    first_fail = next((e for e in events if e.kind == "fail"), None)
    if first_fail is None:
        return {"before": (0, end, 1.0)}
    windows = {"before": (0, first_fail.at_ns, 1.0)}
    later = [e for e in events if e.at_ns >= first_fail.at_ns]
    repaired = next((e for e in later if e.kind == "repair" and e.share >= 1.0), None)
    stop = repaired.at_ns if repaired is not None else end
    windows["during"] = (first_fail.at_ns, stop, min(e.share for e in later if e.at_ns < stop or e is first_fail))
    if repaired is not None:
        windows["after"] = (stop, end, 1.0)
    return windows


def scale_summary(scenario: Scenario) -> dict[str, Any]:
    """What is scaled, for every place a figure could be taken for the real one (report.json's
    `scale`, the console, the plots): per scaled link its factor and capacities, per stream its factor."""
    links: dict[str, Any] = {}
    for link in scenario.topology.links:
        if link.scale == 1.0 and link.capacity is None:
            continue
        entry: dict[str, Any] = {"factor": link.scale, "fitted": bool(link.capacity and link.capacity.fitted),
                                 "emulated_mbps": max(link.a_to_b.rate_bps, link.b_to_a.rate_bps) / 1e6}
        if link.capacity is not None:
            c = link.capacity
            entry.update(design_mbps=c.design_bps / 1e6, lit_mbps=c.lit_bps() / 1e6,
                         fiber_pairs=c.capacity.fiber_pairs, waves_per_pair=c.capacity.waves_per_pair,
                         wave_rate_gbps=c.capacity.wave_rate_bps / 1e9, lit_fiber_pairs=c.lit.fiber_pairs,
                         lit_waves=c.lit.waves)
        links[link.name] = entry
    streams = {spec.name: spec.scale for spec in scenario.traffic if spec.scale != 1.0}
    return {"links": links, "streams": streams} if links or streams else {}


def capacity_metrics(scenario: Scenario, series: dict[str, dict[str, list]]) -> dict[str, Any]:
    """Scaled-back figures (docs/capacity.md): `<stream>.throughput_scaled_back_mbps`, and per
    direction of a link that declares capacity its streams' goodput summed, divided by the link's
    scale, before/during/after its partial failures, beside the real capacity then in service."""
    metrics: dict[str, Any] = {}
    topology = scenario.topology
    crossing: dict[tuple[str, str], list[str]] = {}
    for spec in scenario.traffic:
        if stream_kind(spec.kind).instrument:
            continue   # the instrument is not scaled, nor part of the load
        try:
            hops = path_hops(topology, shortest_path(topology, spec.source, spec.target))
        except KeyError:
            hops = []
        for hop in hops:
            crossing.setdefault(hop, []).append(spec.name)
    for link in topology.links:
        for direction in ("a_to_b", "b_to_a"):
            streams = [name for name in crossing.get((link.name, direction), []) if name in series]
            base = f"link.{link.name}.{direction}"
            # every link reports every registered link metric: None where it declares no capacity
            # or a window did not happen (no fail: no during/after)
            for window in ("before", "during", "after"):
                metrics[f"{base}.capacity_{window}_mbps"] = metrics[f"{base}.throughput_{window}_mbps"] = None
            if link.capacity is None:
                continue
            for window, (start, stop, share) in capacity_windows(scenario, link.name).items():
                metrics[f"{base}.capacity_{window}_mbps"] = link.capacity.lit_bps() * share / 1e6
                means = [_window_mean(series[name]["throughput_mbps"], (start + SETTLE_NS) / 1e9, stop / 1e9)
                         for name in streams]
                total = sum(m for m in means if m is not None) if streams and None not in means else None
                metrics[f"{base}.throughput_{window}_mbps"] = scale_back(total, link.scale)
    return metrics


def collect(scenario: Scenario, plan: RunPlan, recording: Recording) -> Collected:
    """The run's metrics, series, marks, applied timeline and fidelity (pure)."""
    errors = list(recording.errors)
    t0 = recording.t0_ns
    timeline = timeline_status(recording)
    spans = [(start, end if end > 0 else t0 + plan.duration_ns)
             for spans in cut_windows(plan, t0).values() for start, end in spans]
    windows = analysis.disturbance_windows(spans, [e.t_ns for e in recording.route_events], lead_in_ns=LEAD_IN_NS,
                                           recovery_ns=RECOVERY_NS, settle_ns=ROUTE_SETTLE_NS)
    marks = [TimelineMark(s.at_ns / 1e9, s.shown, s.link, s.words if s.kind == "set" else s.direction)
             for s in plan.steps]
    metrics, series = stream_metrics(plan, recording, windows, errors)
    for spec in scenario.traffic:
        if not stream_kind(spec.kind).instrument and f"{spec.name}.throughput_mbps" in metrics:
            metrics[f"{spec.name}.throughput_scaled_back_mbps"] = scale_back(metrics[f"{spec.name}.throughput_mbps"], spec.scale)
    metrics.update(capacity_metrics(scenario, series))
    traces = _Traces({})
    if recording.dynamic_routing:
        traces = _traces(plan, recording, errors)
        metrics.update(failover_metrics(scenario, plan, recording, traces, marks))
    metrics.update(link_metrics(recording.stats))
    metrics["events.cut_total_ms"] = cut_total_ms(plan, t0, timeline)
    errors_us = [e["apply_error_us"] for e in timeline if e["apply_error_us"] is not None]
    metrics["events.apply_error_max_us"] = max(errors_us) if errors_us else None
    paths = measured_paths(scenario.topology, scenario.traffic, metrics)
    changing = frozenset(e.link for e in scenario.timeline if e.kind == "set")
    floors = {name: path_floor_ns(scenario.topology, hops, changing) / 1e6 for name, hops in paths.items()}
    summaries = {name: r.summary for name, r in recording.streams.items() if r.summary is not None}
    pairs = {name: int(metrics[f"{name}.received"] or 0) - 1 for name in paths
             if metrics.get(f"{name}.received") is not None}
    fidelity = summarize_fidelity(recording.engine_fidelity, recording.stats, recording.host, t0,
                                  {name: _pacing(recording.streams[name]) for name in summaries},
                                  metrics["events.apply_error_max_us"], paths, jitter_windows(scenario, t0), floors,
                                  pairs, trace_windows(plan, t0, traces))
    for name, key in trace_keys(plan, t0).items():
        if key in traces.waits and name in fidelity.paths:
            fidelity.paths[name]["trace_wait_ms"] = traces.waits[key]
    fidelity.late_traces = dict(traces.late)
    fidelity.unanswered_traces = list(traces.unanswered)
    fidelity.incomplete_traces = list(traces.incomplete)
    for name, entry in recording.stats.items():
        for direction in ("a_to_b", "b_to_a"):
            if not invariant_holds(entry[direction]):
                errors.append(f"link {name} {direction}: counters do not add up (engine bug)")
    return Collected(metrics, series, marks, timeline, fidelity, errors, summaries, scale_summary(scenario))
