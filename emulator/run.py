"""`caspian run`: a scenario from start to report.

Builds the testbed, starts the traffic (receivers first, senders on a common
start time), plays the timeline against the engine, stops everything it
started by PID, measures, evaluates the assertions and tears down. Times are
taken on one clock (CLOCK_REALTIME, which the engine and the kernel's packet
stamps also use), never inferred from sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from emulator.engine.counters import invariant_holds
from emulator.errors import EngineError, EnvironmentProblem, TestbedError
from emulator.measure.fidelity import summarize as summarize_fidelity
from emulator.measure.queues import queue_series
from emulator.scenario.paths import path_floor_ns
from emulator.measure.host import HostLoad, HostSampler
from emulator.report.report import AssertionResult, Report, TimelineMark, collect_versions
from emulator.report.verdict import judge
from emulator.scenario.scenario import START_STEP, Event, Scenario, TrafficSpec
from emulator.traffic import analysis, iperf, probe

#: Lead time between starting the tools and the scenario's t = 0.
#: Probe senders start at once and wait for t0 themselves: their start-up (scapy's import)
#: takes 0.3-1 s on a busy CPU, and a sender that is not ready at t0 starts late.
LEAD_S = 1.5
#: Time after the end for the last probes and iperf3 reports to arrive.
GRACE_S = 1.0
#: How long after a restore the stream counts as disturbed (for loss_outside_events_pct).
RECOVERY_NS = 1_000_000_000
#: ... and how long before a cut (probes already on their way are lost too).
LEAD_IN_NS = 100_000_000
#: ... and, with dynamic routing, how long after the last route change the event caused
#: (each router's FIB update lands within a few ms of its route message)
ROUTE_SETTLE_NS = 200_000_000
PROBE_BASE_PORT = 7000
#: probe senders up to this rate run at real-time priority (below the engine's): a sender
#: at normal priority shares its CPU with the routing daemons, iperf3 and the traces'
#: start-up and was seen leaving probes 100-300 ms late, a gap the network never made.
#: It takes the priority only once ready to send (its start-up would hold the CPU the
#: receivers start on); then it sleeps until 0.3 ms before each slot and spins the rest
#: (probe.SLEEP_MARGIN_NS),
#: so at 1 kHz it holds the CPU at most 30 % of the time; faster senders would spin
#: all the time and starve everything else on that CPU, so they stay at normal priority
PROBE_REALTIME_MAX_PPS = 1000
PROBE_REALTIME_PRIORITY = 1
IPERF_BASE_PORT = 5201
#: probe streams the engine can stamp on one link direction (TAP_MAX in cext/direction.pxi)
PROBE_TAPS_PER_DIRECTION = 16
#: the engine's release-lateness time bins (fidelity: spans line up with the timeline)
FIDELITY_BIN_NS = 100_000_000
#: a gap in the engine's loop longer than this is a stall: the p99 wake-up error of a
#: real-time thread here is ~51 µs and its max 0.5-4.8 ms (cyclictest, DESIGN.md); 1 ms
#: is one probe interval at 1 kHz, the finest a probe stream can see
STALL_THRESHOLD_NS = 1_000_000
#: failover traces (dynamic routing): the path is traced this long before each step and before the end
TRACE_BEFORE_NS = 500_000_000
#: ... and each trace process is started this much earlier (it imports scapy first, then waits)
TRACE_LAUNCH_NS = 3_000_000_000
#: a trace that began this much after its moment (a starved CPU) could have run into
#: the step it traces before: half its lead, so its probes (answers within ~0.1 s on
#: the shipped paths) still went and came back before the step
TRACE_LATE_NS = TRACE_BEFORE_NS // 2


@dataclass
class _Stream:
    """One traffic stream's processes and files while the scenario runs."""

    spec: TrafficSpec
    port: int
    files: dict[str, str] = field(default_factory=dict)
    receiver: subprocess.Popen | None = None
    sender: subprocess.Popen | None = None
    started: bool = False
    #: the engine's probe taps of this stream (FastPath.set_probe_taps), [] when untapped
    taps: list[dict[str, Any]] = field(default_factory=list)


class ScenarioRun:
    """One run of a scenario on a started testbed."""

    def __init__(self, testbed: Any, scenario: Scenario, workdir: str,
                 progress: Callable[[float, str], None] | None = None, capture_dir: str | None = None) -> None:
        self.testbed = testbed
        self.scenario = scenario
        self.workdir = workdir
        #: where the scenario's `capture:` files go (the report directory); None = the workdir (lost)
        self.capture_dir = capture_dir or workdir
        self.capture: dict[str, Any] | None = None   # the capture's summary once stopped
        self.capturing = False
        self.progress = progress or (lambda fraction, what: None)
        self.streams = [
            _Stream(spec, (PROBE_BASE_PORT if spec.kind == "probe" else IPERF_BASE_PORT) + i)
            for i, spec in enumerate(scenario.traffic)
        ]
        self.marks: list[TimelineMark] = []
        self.cut_windows: dict[str, list[list[int]]] = {}
        self.errors: list[str] = []
        self.t0_ns = 0
        # failover measurement (emulator.routing.failover) when routing runs in daemons
        self.routing_on = getattr(testbed, "routing", None) is not None
        self.watcher: Any = None
        self.applied: list[tuple[str, str, str, int]] = []   # (label, kind, link, t_ns) per timeline event
        self.scheduled = False                               # the engine holds this run's timeline
        self.summaries: dict[str, dict[str, Any]] = {}       # probe stream -> its sender's summary
        self.host: HostSampler | None = None
        self.traces: dict[str, subprocess.Popen] = {}        # "before:<label>" / "final" -> trace process
        self.late_traces: dict[str, float] = {}              # key -> ms late, for traces discarded as late
        self.unanswered_traces: list[str] = []               # keys of traces nobody answered
        self.incomplete_traces: list[str] = []               # keys of traces that did not reach the target
        probes = [s for s in self.streams if s.spec.kind == "probe"]
        self.trace_stream = probes[0] if probes else None

    # -- processes -----------------------------------------------------------

    def _start(self, node: str, argv: list[str], role: str, out: str | None = None) -> subprocess.Popen:
        stdout = open(out, "wb") if out else subprocess.DEVNULL
        try:
            proc = self.testbed.popen(node, argv, stdout=stdout, stderr=subprocess.PIPE)
        finally:
            if out:
                stdout.close()
        self.testbed.network.record_process(proc.pid, role)
        return proc

    def _start_receivers(self) -> None:
        for s in self.streams:
            spec = s.spec
            if spec.kind == "probe":
                s.files["records"] = os.path.join(self.workdir, f"{spec.name}.records")
                s.receiver = self._start(spec.target, probe.receiver_argv(s.port, s.files["records"], spec.ipv6),
                                         f"probe receiver {spec.name}")
            else:
                s.receiver = self._start(spec.target, iperf.server_argv(s.port), f"iperf3 server {spec.name}")

    def _wait_receivers_bound(self, timeout_s: float = 10.0) -> None:
        """Wait until every probe receiver's socket is bound (seen in its own
        namespace's /proc/PID/net/udp): a receiver still starting on a busy CPU
        would lose the first probes, a loss the network never made."""
        deadline = time.monotonic() + timeout_s
        for s in self.streams:
            if s.spec.kind != "probe" or s.receiver is None:
                continue
            table = f"/proc/{s.receiver.pid}/net/{'udp6' if s.spec.ipv6 else 'udp'}"
            while not udp_port_bound(table, s.port):
                if s.receiver.poll() is not None or time.monotonic() > deadline:
                    break  # it failed or is very slow: its stream reports the loss, _wait the exit code
                time.sleep(0.02)
        time.sleep(0.05)  # the rest of the receivers' set-up (stop handlers) after bind

    def _set_probe_taps(self) -> None:
        """Have the engine stamp each probe stream at its first link (arrival from
        the source) and its last (release to the target): the network's own
        one-way delay, apart from the hosts' stacks. Every probe stream is tapped
        (the engine tells them apart by their destination port), up to
        PROBE_TAPS_PER_DIRECTION on one link direction; a stream beyond that has no
        `net_owd_*`. A stream between two hosts on one link is not tapped (its
        network is that one link: the engine's stamps would add nothing)."""
        topology = self.scenario.topology
        per_direction: dict[tuple[str, str], int] = {}
        for s in self.streams:
            spec = s.spec
            if spec.kind != "probe":
                continue
            stop_ns = spec.stop_ns if spec.stop_ns is not None else self.scenario.duration_ns
            # every probe sent, twice over for duplicates, and room for a late start
            capacity = int(spec.rate * (stop_ns - spec.start_ns) / 1e9 * 2) + 1024
            first = [(link.name, "a_to_b" if link.a.node == spec.source else "b_to_a")
                     for link in topology.links_of(spec.source)]
            last = [(link.name, "a_to_b" if link.b.node == spec.target else "b_to_a")
                    for link in topology.links_of(spec.target)]
            hops = first + last
            if set(first) & set(last) or any(per_direction.get(h, 0) >= PROBE_TAPS_PER_DIRECTION for h in hops):
                continue
            for h in hops:
                per_direction[h] = per_direction.get(h, 0) + 1
            s.taps = ([{"link": l, "direction": d, "role": "first", "port": s.port, "capacity": capacity}
                       for l, d in first]
                      + [{"link": l, "direction": d, "role": "last", "port": s.port, "capacity": capacity}
                         for l, d in last])
        self.testbed.engine.set_probe_taps([tap for s in self.streams for tap in s.taps])

    def _network_owd(self, s: _Stream) -> dict[str, float | None]:
        """`net_owd_*` of a tapped probe stream from the engine's stamps ({} when untapped)."""
        if not s.taps:
            return {}
        stamps = self.testbed.engine.probe_taps(s.taps)
        merged: dict[str, dict[str, list[int]]] = {"first": {"seq": [], "t_ns": []}, "last": {"seq": [], "t_ns": []}}
        for tap, got in zip(s.taps, stamps):
            merged[tap["role"]]["seq"] += got["seq"]
            merged[tap["role"]]["t_ns"] += got["t_ns"]
            if got["overflow"]:
                self.errors.append(f"{s.spec.name}: the engine's probe stamps overflowed ({got['overflow']} lost)")
        return analysis.network_owd(merged["first"], merged["last"])

    def _start_sender(self, s: _Stream) -> None:
        spec = s.spec
        stop_ns = spec.stop_ns if spec.stop_ns is not None else self.scenario.duration_ns
        if spec.kind == "probe":
            s.files["summary"] = os.path.join(self.workdir, f"{spec.name}.summary")
            argv = probe.sender_argv(spec.target, s.port, spec.rate, spec.size, self.t0_ns + spec.start_ns,
                                     self.t0_ns + stop_ns, s.files["summary"], spec.ipv6,
                                     PROBE_REALTIME_PRIORITY if spec.rate <= PROBE_REALTIME_MAX_PPS else 0)
            s.sender = self._start(spec.source, argv, f"probe sender {spec.name}")
        else:
            s.files["iperf"] = os.path.join(self.workdir, f"{spec.name}.iperf.json")
            argv = iperf.client_argv(spec.target, s.port, spec.kind, (stop_ns - spec.start_ns) / 1e9,
                                     int(spec.rate), spec.ipv6, spec.size)
            s.sender = self._start(spec.source, argv, f"iperf3 client {spec.name}", out=s.files["iperf"])
        s.started = True

    # -- the timeline ----------------------------------------------------------

    def _schedule_timeline(self, steps: list[tuple[Event, str | None]]) -> None:
        """Hand every timeline step to the engine before t0: it applies each at
        its instant on its own clock, judged on each frame's arrival stamp."""
        events = []
        for step, label in steps:
            at_ns = self.t0_ns + step.at_ns
            event: dict[str, Any] = {"at_ns": at_ns, "link": step.link, "kind": step.kind,
                                     "direction": step.direction, "label": label, "mode": step.mode}
            if step.kind == "set":
                event["params"] = step.params.to_dict()
                if step.direction == "both" and step.params_b_to_a is not None:
                    event["params_b_to_a"] = step.params_b_to_a.to_dict()
            events.append(event)
            if label is not None:
                self.applied.append((label, label.rstrip("0123456789"), step.link, at_ns))
            if step.kind == "cut":
                self.cut_windows.setdefault(step.link, []).append([at_ns, -1])
            elif step.kind == "restore":
                windows = self.cut_windows.get(step.link, [])
                if windows and windows[-1][1] < 0:
                    windows[-1][1] = at_ns
            self.marks.append(TimelineMark(step.at_ns / 1e9, step.kind, step.link,
                                           step.words if step.kind == "set" else step.direction))
        self.testbed.engine.schedule(events)
        self.scheduled = bool(events)

    def timeline_status(self) -> list[dict[str, Any]]:
        """Each timeline step: scheduled and applied time (s from t0), the
        engine's application error, and the arrival stamps either side of it."""
        if not self.scheduled:
            return []
        out = []
        for event in self.testbed.engine.schedule_status():
            applied = [d["applied_ns"] for d in event["directions"].values()]
            entry: dict[str, Any] = {
                "label": event.get("label"), "kind": event["kind"], "link": event["link"],
                "direction": event.get("direction", "both"),
                "scheduled_s": (event["at_ns"] - self.t0_ns) / 1e9,
                "applied_s": None, "apply_error_us": None,
            }
            if applied and None not in applied:
                entry["applied_s"] = (max(applied) - self.t0_ns) / 1e9
                entry["apply_error_us"] = (max(applied) - event["at_ns"]) / 1e3
            if event.get("mode") == "carrier" or "carrier_applied_ns" in event:
                # the interfaces taken down (a carrier cut) or brought back (its restore)
                entry["mode"] = event.get("mode", "silent")
                carrier = event.get("carrier_applied_ns")
                entry["carrier_applied_s"] = (carrier - self.t0_ns) / 1e9 if carrier is not None else None
            for name, d in event["directions"].items():
                entry[name] = {
                    key.replace("_ns", "_s"): (d[key] - self.t0_ns) / 1e9 if d[key] is not None else None
                    for key in ("applied_ns", "last_before_ns", "first_after_ns")
                }
            out.append(entry)
        return out

    def play(self) -> None:
        """Start traffic and play the timeline; returns at the scenario's end."""
        self.host = HostSampler().start()
        self._start_receivers()
        self._wait_receivers_bound()
        self.t0_ns = time.time_ns() + int(LEAD_S * 1e9)
        # the engine's lateness time bins start at t0, its stall count now
        self.testbed.engine.set_fidelity(self.t0_ns, FIDELITY_BIN_NS, STALL_THRESHOLD_NS)
        self._set_probe_taps()
        self._start_capture()
        # Work items in time order: (time from t0, what). Senders of probes are
        # started at once (they wait for their own start time: exact); iperf3
        # clients are started at their start time.
        items: list[tuple[int, int, Callable[[], None], str]] = []
        for i, s in enumerate(self.streams):
            at = 0 if s.spec.kind == "probe" else s.spec.start_ns
            items.append((at - int(LEAD_S * 1e9) if s.spec.kind == "probe" else at, i,
                          lambda s=s: self._start_sender(s), f"start {s.spec.name}"))
        labels = {id(event): label for label, event in self.scenario.measured_steps()}
        steps = sorted(((step, labels[id(event)] if k == 0 else None)
                        for event in self.scenario.timeline for k, step in enumerate(event.expand())),
                       key=lambda pair: pair[0].at_ns)   # as Scenario.steps(), with the labels
        self._schedule_timeline(steps)
        if self.routing_on:
            self._start_watcher()
            if self.trace_stream is not None and self.scenario.timeline:
                points = [(f"before:{label}", event.at_ns - TRACE_BEFORE_NS)
                          for label, event in self.scenario.measured_steps()]
                points.append(("final", self.scenario.duration_ns - TRACE_BEFORE_NS))
                for k, (key, at) in enumerate(points):
                    items.append((at - TRACE_LAUNCH_NS, -len(points) + k,
                                  lambda key=key, at=at: self._start_trace(key, self.t0_ns + at), f"trace {key}"))
        items.sort(key=lambda item: (item[0], item[1]))
        end_ns = self.scenario.duration_ns
        for at, _, action, what in items:
            self._sleep_until(self.t0_ns + at, end_ns)
            action()
        self._sleep_until(self.t0_ns + end_ns, end_ns)
        self.progress(1.0, "done")

    def _start_watcher(self) -> None:
        from emulator.routing.events import RouteWatcher

        routers = self.testbed.routing.routers
        self.watcher = RouteWatcher({r: self.testbed.network.node_netns(r) for r in routers}).start()

    def _start_trace(self, key: str, at_ns: int) -> None:
        from emulator.routing.trace import trace_argv

        spec = self.trace_stream.spec
        self.traces[key] = self._start(spec.source, trace_argv(spec.target, at_ns=at_ns),
                                       f"trace {key}", out=os.path.join(self.workdir, f"trace-{key}.json"))

    def _sleep_until(self, deadline_ns: int, end_ns: int) -> None:
        while True:
            now = time.time_ns()
            if now >= deadline_ns:
                return
            self.progress(max(0.0, (now - self.t0_ns) / end_ns), "")
            time.sleep(min(0.1, (deadline_ns - now) / 1e9))

    # -- collecting ------------------------------------------------------------

    def _start_capture(self) -> None:
        """Capture the scenario's `capture:` links, each into <link>.pcapng (FastPath.capture_start)."""
        if not self.scenario.capture:
            return
        os.makedirs(self.capture_dir, exist_ok=True)
        targets = [{"link": c.link, "direction": c.direction,
                    "path": os.path.abspath(os.path.join(self.capture_dir, f"{c.link}.pcapng"))}
                   for c in self.scenario.capture]
        self.testbed.engine.capture_start(targets, targets[0]["path"])
        self.capturing = True

    def _stop_capture(self) -> None:
        if self.capturing:
            self.capturing = False
            self.capture = self.testbed.engine.capture_stop()

    def stop_and_collect(self) -> tuple[dict[str, float | None], dict[str, dict[str, list]]]:
        """Stop every process this run started (by PID) and compute the metrics."""
        deadline = time.monotonic() + GRACE_S + 30
        for s in self.streams:
            if s.sender is not None and s.spec.kind != "probe":
                _wait(s.sender, max(1.0, deadline - time.monotonic()), f"iperf3 client {s.spec.name}", self.errors)
        time.sleep(GRACE_S)
        self._stop_capture()
        for s in self.streams:
            for proc, role in ((s.sender, "sender"), (s.receiver, "receiver")):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc, role in ((s.sender, "sender"), (s.receiver, "receiver")):
                if proc is not None:
                    _wait(proc, 10, f"{s.spec.name} {role}", self.errors, terminated=True)
        metrics: dict[str, Any] = {}
        series: dict[str, dict[str, list]] = {}
        route_events = self.watcher.stop() if self.watcher is not None else []
        windows = self._event_windows([e.t_ns for e in route_events])
        if self.watcher is not None:
            self.errors.extend(self.watcher.errors)
        traces = self._collect_traces()
        trace_records = None
        for s in self.streams:
            name = s.spec.name
            try:
                if s.spec.kind == "probe":
                    summary = probe.load_summary(s.files["summary"])
                    self.summaries[name] = summary
                    records = probe.load_records(s.files["records"])
                    if s is self.trace_stream:
                        trace_records = (records, summary)
                    result = analysis.analyze_probes(records, summary["sent"], summary["interval_ns"],
                                                     event_windows=windows)
                    result.update(self._network_owd(s))
                    sent_times = analysis.estimate_send_times(records, summary["sent"], summary["interval_ns"],
                                                              summary["first_ns"])
                    series[name] = analysis.probe_series(records, self.t0_ns, sent_times=sent_times)
                else:
                    with open(s.files["iperf"]) as fh:
                        parsed = iperf.parse_client_json(fh.read(), s.spec.kind)
                    result = parsed.metrics
                    offset = s.spec.start_ns / 1e9
                    series[name] = {"throughput_mbps": [(t + offset, v) for t, v in parsed.series]}
            except (OSError, ValueError, KeyError, TestbedError) as exc:
                self.errors.append(f"{name}: no result ({exc})")
                result = {}
            for metric, value in result.items():
                metrics[f"{name}.{metric}"] = value
        if self.routing_on:
            metrics.update(self._failover(route_events, traces, trace_records))
            metrics[f"routing.{START_STEP}.convergence_s"] = self.testbed.convergence_s
        return metrics, series

    def _collect_traces(self) -> dict[str, Any]:
        """The traces' results: key -> failover.Trace (None for one that failed, with an error)."""
        from emulator.routing.failover import Trace
        from emulator.routing.trace import address_owners, hops_to_nodes

        owners = address_owners(self.testbed.network.addresses)
        results: dict[str, Any] = {}
        for key, proc in self.traces.items():
            _wait(proc, 15, f"trace {key}", self.errors)
            try:
                with open(os.path.join(self.workdir, f"trace-{key}.json")) as fh:
                    data = json.load(fh)
                late_ns = int(data["at_ns"]) - int(data.get("asked_ns", data["at_ns"]))
                if late_ns > TRACE_LATE_NS:
                    # it may have crossed the step it was to trace before: no figure
                    # rather than a wrong one (the verdict names it: inconclusive)
                    self.late_traces[key] = late_ns / 1e6
                    results[key] = None
                    continue
                if not any(data["hops"]):
                    # not even the first router answered: no path was measured (a
                    # starved trace), which is not the path "the source alone"
                    self.unanswered_traces.append(key)
                    results[key] = None
                    continue
                if not data["reached"]:
                    self.incomplete_traces.append(key)
                results[key] = Trace(hops_to_nodes(data["hops"], owners, self.trace_stream.spec.source),
                                     [float(v) for v in data["rtt_ms"]], bool(data["reached"]))
            except (OSError, ValueError, KeyError) as exc:
                self.errors.append(f"trace {key}: no result ({exc})")
                results[key] = None
        return results

    def _failover(self, route_events: list, traces: dict[str, Any], trace_records: Any) -> dict[str, Any]:
        """`routing.<step>.<metric>` (emulator.routing.failover, .convergence) and a "route" mark per router and step."""
        from emulator.routing import convergence, failover

        end_ns = self.t0_ns + self.scenario.duration_ns + int(GRACE_S * 1e9)
        steps = failover.step_windows(self.applied, end_ns)
        before = {step.label: traces.get(f"before:{step.label}") for step in steps}
        after = {step.label: traces.get(f"before:{nxt.label}") for step, nxt in zip(steps, steps[1:])}
        if steps:
            after[steps[-1].label] = traces.get("final")
        outages: dict[str, int | None] = {}
        if trace_records is not None:
            records, summary = trace_records
            first: dict[int, int] = {}
            for seq, sent_ns in zip(records.seq, records.send_ns):
                first.setdefault(seq, sent_ns)
            received = sorted(first.items())
            for step in steps:
                outages[step.label] = failover.window_outage_ns(received, summary["sent"], summary["interval_ns"],
                                                                step.t_ns, step.end_ns)
        # RFC 6412/6413 figures: the first probe stream (the traced one) first, then the others (route-specific)
        streams = [] if trace_records is None else [convergence.ProbeStream(
            trace_records[0], trace_records[1]["sent"], trace_records[1]["interval_ns"], trace_records[1]["first_ns"])]
        for s in self.streams if streams else ():
            if s.spec.kind == "probe" and s is not self.trace_stream:
                try:
                    summary = probe.load_summary(s.files["summary"])
                    streams.append(convergence.ProbeStream(probe.load_records(s.files["records"]), summary["sent"],
                                                           summary["interval_ns"], summary["first_ns"]))
                except (OSError, ValueError, KeyError):
                    continue   # the stream's own metrics already say why it has no result
        for t_ns, router, count in failover.route_marks(steps, route_events):
            self.marks.append(TimelineMark((t_ns - self.t0_ns) / 1e9, "route", router,
                                           f"{count} route change{'s' if count != 1 else ''}"))
        try:
            state_events = self.testbed.routing.state_events()
        except OSError as exc:
            self.errors.append(f"routing daemon logs: {exc}")
            state_events = []
        for step in steps:   # the detection, as a mark of its protocol
            detected = failover.first_state_change(step, state_events)
            if detected is not None:
                self.marks.append(TimelineMark((detected.t_ns - self.t0_ns) / 1e9, detected.kind, detected.router,
                                               failover.describe(detected)))
        self.marks.sort(key=lambda m: m.t_s)
        directions = {label: event.direction for label, event in self.scenario.measured_steps()}
        metrics = failover.failover_metrics(steps, route_events, traces_before=before, traces_after=after,
                                            outages_ns=outages, state_events=state_events,
                                            bfd_windows_ns=failover.bfd_windows_ns(steps, self.scenario.topology,
                                                                                   directions))
        metrics.update(convergence.convergence_metrics(steps, streams))
        return metrics

    def abort(self) -> None:
        """Stop every process this run started, at once (by PID; teardown would too),
        and take back the timeline the engine still holds (a testbed left up
        must not be cut later by a run that is over)."""
        if self.scheduled:
            try:
                self.testbed.engine.schedule([])
            except (EngineError, OSError):
                pass  # the engine is gone: nothing left to take back
        if self.host is not None:
            self.host.stop()
        if self.watcher is not None:
            self.watcher.stop()
        try:
            self._stop_capture()   # the files are left complete, with what they hold
        except (EngineError, OSError):
            pass
        procs = [p for s in self.streams for p in (s.sender, s.receiver) if p is not None and p.poll() is None]
        procs += [p for p in self.traces.values() if p.poll() is None]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=2)

    def _event_windows(self, route_changes_ns: list[int]) -> list[tuple[int, int]]:
        end_of_run = self.t0_ns + self.scenario.duration_ns
        spans = [(start, end if end > 0 else end_of_run) for spans in self.cut_windows.values()
                 for start, end in spans]
        return analysis.disturbance_windows(spans, route_changes_ns, lead_in_ns=LEAD_IN_NS,
                                            recovery_ns=RECOVERY_NS, settle_ns=ROUTE_SETTLE_NS)

    def cut_total_ms(self, timeline: list[dict[str, Any]] | None = None) -> float:
        """Total time links were cut, from the instants the engine applied the
        cuts and restores (the scheduled ones where the engine gave none)."""
        windows = self.cut_windows
        if timeline:
            windows = {}
            for entry in timeline:
                at = self.t0_ns + int(round((entry["applied_s"] if entry["applied_s"] is not None
                                             else entry["scheduled_s"]) * 1e9))
                if entry["kind"] == "cut":
                    windows.setdefault(entry["link"], []).append([at, -1])
                elif entry["kind"] == "restore":
                    spans = windows.get(entry["link"], [])
                    if spans and spans[-1][1] < 0:
                        spans[-1][1] = at
        total = 0
        for spans in windows.values():
            for start, end in spans:
                total += (end if end > 0 else self.t0_ns + self.scenario.duration_ns) - start
        return total / 1e6


def udp_port_bound(table_path: str, port: int) -> bool:
    """True when /proc/.../net/udp (or udp6) lists a socket bound to local `port`."""
    try:
        with open(table_path) as fh:
            lines = fh.readlines()[1:]
    except OSError:
        return False
    wanted = f":{port:04X}"
    return any(line.split()[1].endswith(wanted) for line in lines if len(line.split()) > 1)


def _wait(proc: subprocess.Popen, timeout_s: float, role: str, errors: list[str], terminated: bool = False) -> None:
    if proc.returncode is not None and (proc.stderr is None or proc.stderr.closed):
        return  # already waited for and judged
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        errors.append(f"{role} did not stop in {timeout_s:g} s and was killed")
        return
    stderr = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    ok = (0, -signal.SIGTERM) if terminated else (0,)
    if proc.returncode not in ok:
        errors.append(f"{role} exited with {proc.returncode}: {stderr[-300:]}")


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


#: packets that carry 99 % of the weight of RFC 3550's jitter estimate (gain 1/16): (15/16)^71 < 0.01
JITTER_WINDOW_PACKETS = 71


def jitter_windows(scenario: Scenario, t0_ns: int) -> dict[str, tuple[int, int]]:
    """Per stream, the stretch before its end whose packets its jitter's last value
    weighs 99 % (CLOCK_REALTIME ns): JITTER_WINDOW_PACKETS at its packet rate."""
    out = {}
    for spec in scenario.traffic:
        if spec.kind == "probe":
            pps = spec.rate
        elif spec.kind == "udp" and spec.rate > 0:
            pps = spec.rate / 8 / max(1, spec.size)
        else:
            continue  # TCP has no jitter figure
        stop = spec.stop_ns if spec.stop_ns is not None else scenario.duration_ns
        span = int(JITTER_WINDOW_PACKETS / max(pps, 1e-3) * 1e9)
        out[spec.name] = (t0_ns + max(spec.start_ns, stop - span), t0_ns + stop)
    return out


def report_topology(scenario: Scenario, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The topology for the report's picture, with each stream's path: the one the
    failover traces saw before the first step (dynamic routing picks by its own
    costs), else the least-delay path the static routes take."""
    from emulator.report.topology_view import topology_data
    from emulator.scenario.paths import shortest_path

    data = topology_data(scenario.topology)
    traced = [value for key, value in (metrics or {}).items()
              if key.startswith("routing.") and key.endswith(".path_before") and isinstance(value, list)]
    streams = {}
    for spec in scenario.traffic:
        seen = [nodes for nodes in traced if len(nodes) > 1 and nodes[0] == spec.source and nodes[-1] == spec.target]
        if seen:
            streams[spec.name] = list(seen[0])
            continue
        try:
            streams[spec.name] = shortest_path(scenario.topology, spec.source, spec.target)
        except KeyError:
            continue  # no path: the stream measures that itself
    data["streams"] = streams
    return data


def measured_paths(topology: Any, traffic: tuple[TrafficSpec, ...],
                   metrics: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """The link directions each delay figure crossed (Fidelity.paths): per traffic
    stream the least-delay path, or the longest of the paths a failover trace saw it
    take; per routing step's traced path (`routing.<step>.before|after`) there and back."""
    from emulator.scenario.paths import path_hops, shortest_path

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
        candidates = [hops(shortest_path(topology, spec.source, spec.target))]
        candidates += [hops(nodes) for nodes in traced if nodes[0] == spec.source and nodes[-1] == spec.target]
        out[spec.name] = max((c for c in candidates if c), key=len, default=[])
    return out


def implicit_scenario(scenario: Scenario) -> Scenario:
    """For a file with only a topology: 10 s of 1 kHz probes between the first
    and last host, asserting the configured one-way delay (+0.3 ms of stacks)."""
    from dataclasses import replace

    from emulator.scenario.paths import path_delay_ns, shortest_path
    from emulator.scenario.scenario import Assertion

    topology = scenario.topology
    hosts = [n.name for n in topology.nodes if n.role == "host"] or [n.name for n in topology.nodes]
    source, target = hosts[0], hosts[-1]
    owd_ms = path_delay_ns(topology, shortest_path(topology, source, target)) / 1e6
    probe_spec = TrafficSpec("probe", "probe", source, target, rate=1000, size=64)
    bound = Assertion("probe.owd_median_ms", owd_ms, owd_ms + 0.3, f"between [{owd_ms:.3f}, {owd_ms + 0.3:.3f}]")
    return replace(scenario, duration_ns=10_000_000_000, traffic=(probe_spec,), timeline=(), assertions=(bound,))


def execute(testbed: Any, scenario: Scenario, *, progress: Callable[[float, str], None] | None = None,
            capture_dir: str | None = None) -> Report:
    """Play `scenario`'s traffic and timeline on a started testbed; its Report.

    The testbed stays up (links are left as the timeline left them). The
    scenario's `capture:` files go into `capture_dir` (the report directory);
    without one they are not kept.
    """
    missing = [tool for tool, needed in (("iperf3", any(t.kind != "probe" for t in scenario.traffic)),)
               if needed and shutil.which(tool) is None]
    if missing:
        raise EnvironmentProblem(f"{', '.join(missing)} is missing (apt-get install {' '.join(missing)}, or `make run`)")
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wall_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="caspian-run-") as workdir:
        run = ScenarioRun(testbed, scenario, workdir, progress, capture_dir)
        try:
            run.play()
        except BaseException:
            run.abort()  # interrupted (Ctrl-C, SIGTERM) or failed: no results to wait for
            raise
        metrics, series = run.stop_and_collect()
        stats = testbed.stats()
        timeline = run.timeline_status()
        engine_fidelity = testbed.engine.fidelity()
    host = run.host.stop() if run.host is not None else HostLoad(0.0, None)
    metrics.update(link_metrics(stats))
    metrics["events.cut_total_ms"] = run.cut_total_ms(timeline)
    errors_us = [e["apply_error_us"] for e in timeline if e["apply_error_us"] is not None]
    metrics["events.apply_error_max_us"] = max(errors_us) if errors_us else None
    paths = measured_paths(scenario.topology, scenario.traffic, metrics)
    changing = frozenset(e.link for e in scenario.timeline if e.kind == "set")
    floors = {name: path_floor_ns(scenario.topology, hops, changing) / 1e6 for name, hops in paths.items()}
    fidelity = summarize_fidelity(engine_fidelity, stats, host, run.t0_ns, run.summaries,
                                  metrics["events.apply_error_max_us"], paths, jitter_windows(scenario, run.t0_ns),
                                  floors)
    fidelity.late_traces = dict(run.late_traces)
    fidelity.unanswered_traces = list(run.unanswered_traces)
    fidelity.incomplete_traces = list(run.incomplete_traces)
    errors = list(run.errors)
    for name, entry in stats.items():
        for direction in ("a_to_b", "b_to_a"):
            if not invariant_holds(entry[direction]):
                errors.append(f"link {name} {direction}: counters do not add up (engine bug)")
    results = [AssertionResult.from_assertion(a, metrics.get(a.metric)) for a in scenario.assertions]
    for result in results:
        result.verdict, result.reason = judge(result, fidelity)
    return Report(
        scenario=scenario.name, source=scenario.source, seed=testbed.seed, started_at=started_at,
        duration_s=scenario.duration_ns / 1e9, wall_s=time.monotonic() - wall_start,
        versions=collect_versions(), metrics=metrics, assertions=results, marks=run.marks, series=series,
        links=stats, scenario_text=scenario.text, errors=errors, timeline=timeline,
        fidelity=fidelity.to_dict(), topology=report_topology(scenario, metrics),
        queues=queue_series(engine_fidelity, run.t0_ns, {l.name: l.nodes for l in scenario.topology.links}),
        captures=dict(run.capture["files"]) if run.capture and capture_dir else {},
        capture_lost=int(run.capture["lost"]) if run.capture and capture_dir else 0,
    )


def run_scenario(scenario: Scenario, *, state_root: str, seed: int | None = None,
                 progress: Callable[[float, str], None] | None = None, capture_dir: str | None = None) -> Report:
    """Run `scenario` on a fresh testbed and return its Report (torn down afterwards);
    its `capture:` files go into `capture_dir`."""
    from emulator.testbed import Testbed

    with Testbed(scenario, state_root=state_root, seed=seed) as testbed:
        return testbed.run(progress=progress, capture_dir=capture_dir)
