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
from emulator.errors import EnvironmentProblem, TestbedError
from emulator.report.report import AssertionResult, Report, TimelineMark, collect_versions
from emulator.scenario.scenario import START_STEP, Event, Scenario, TrafficSpec
from emulator.traffic import analysis, iperf, probe

#: Lead time between starting the tools and the scenario's t = 0.
LEAD_S = 1.0
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
IPERF_BASE_PORT = 5201
#: failover traces (dynamic routing): the path is traced this long before each step and before the end
TRACE_BEFORE_NS = 500_000_000
#: ... and each trace process is started this much earlier (it imports scapy first, then waits)
TRACE_LAUNCH_NS = 3_000_000_000


@dataclass
class _Stream:
    """One traffic stream's processes and files while the scenario runs."""

    spec: TrafficSpec
    port: int
    files: dict[str, str] = field(default_factory=dict)
    receiver: subprocess.Popen | None = None
    sender: subprocess.Popen | None = None
    started: bool = False


class ScenarioRun:
    """One run of a scenario on a started testbed."""

    def __init__(self, testbed: Any, scenario: Scenario, workdir: str,
                 progress: Callable[[float, str], None] | None = None) -> None:
        self.testbed = testbed
        self.scenario = scenario
        self.workdir = workdir
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
        self.traces: dict[str, subprocess.Popen] = {}        # "before:<label>" / "final" -> trace process
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

    def _start_sender(self, s: _Stream) -> None:
        spec = s.spec
        stop_ns = spec.stop_ns if spec.stop_ns is not None else self.scenario.duration_ns
        if spec.kind == "probe":
            s.files["summary"] = os.path.join(self.workdir, f"{spec.name}.summary")
            argv = probe.sender_argv(spec.target, s.port, spec.rate, spec.size, self.t0_ns + spec.start_ns,
                                     self.t0_ns + stop_ns, s.files["summary"], spec.ipv6)
            s.sender = self._start(spec.source, argv, f"probe sender {spec.name}")
        else:
            s.files["iperf"] = os.path.join(self.workdir, f"{spec.name}.iperf.json")
            argv = iperf.client_argv(spec.target, s.port, spec.kind, (stop_ns - spec.start_ns) / 1e9,
                                     int(spec.rate), spec.ipv6, spec.size)
            s.sender = self._start(spec.source, argv, f"iperf3 client {spec.name}", out=s.files["iperf"])
        s.started = True

    # -- the timeline ----------------------------------------------------------

    def _apply(self, event: Event, label: str | None = None) -> None:
        engine = self.testbed.engine
        if label is not None:
            self.applied.append((label, label.rstrip("0123456789"), event.link, time.time_ns()))
        if event.kind == "cut":
            engine.cut(event.link, event.direction)
            self.cut_windows.setdefault(event.link, []).append([time.time_ns(), -1])
        elif event.kind == "restore":
            engine.restore(event.link, event.direction)
            windows = self.cut_windows.get(event.link, [])
            if windows and windows[-1][1] < 0:
                windows[-1][1] = time.time_ns()
        elif event.kind == "set":
            if event.direction == "both":
                engine.set(event.link, event.params, "a_to_b")
                engine.set(event.link, event.params_b_to_a or event.params, "b_to_a")
            else:
                engine.set(event.link, event.params, event.direction)
        done_ns = time.time_ns()
        self.marks.append(TimelineMark((done_ns - self.t0_ns) / 1e9, event.kind, event.link,
                                       event.words if event.kind == "set" else event.direction))

    def play(self) -> None:
        """Start traffic and play the timeline; returns at the scenario's end."""
        self._start_receivers()
        time.sleep(0.3)  # receivers bound before the first probe
        self.t0_ns = time.time_ns() + int(LEAD_S * 1e9)
        # Work items in time order: (time from t0, what). Senders of probes are
        # started at once (they wait for their own start time: exact); iperf3
        # clients are started at their start time.
        items: list[tuple[int, int, Callable[[], None], str]] = []
        for i, s in enumerate(self.streams):
            at = 0 if s.spec.kind == "probe" else s.spec.start_ns
            items.append((at - int(LEAD_S * 1e9) // 2 if s.spec.kind == "probe" else at, i,
                          lambda s=s: self._start_sender(s), f"start {s.spec.name}"))
        labels = {id(event): label for label, event in self.scenario.measured_steps()}
        steps = sorted(((step, labels[id(event)] if k == 0 else None)
                        for event in self.scenario.timeline for k, step in enumerate(event.expand())),
                       key=lambda pair: pair[0].at_ns)   # as Scenario.steps(), with the labels
        for j, (step, label) in enumerate(steps):
            items.append((step.at_ns, len(self.streams) + j, lambda step=step, label=label: self._apply(step, label),
                          f"{step.kind} {step.link}"))
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

    def stop_and_collect(self) -> tuple[dict[str, float | None], dict[str, dict[str, list]]]:
        """Stop every process this run started (by PID) and compute the metrics."""
        deadline = time.monotonic() + GRACE_S + 30
        for s in self.streams:
            if s.sender is not None and s.spec.kind != "probe":
                _wait(s.sender, max(1.0, deadline - time.monotonic()), f"iperf3 client {s.spec.name}", self.errors)
        time.sleep(GRACE_S)
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
                    records = probe.load_records(s.files["records"])
                    if s is self.trace_stream:
                        trace_records = (records, summary)
                    result = analysis.analyze_probes(records, summary["sent"], summary["interval_ns"],
                                                     event_windows=windows)
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
                results[key] = Trace(hops_to_nodes(data["hops"], owners, self.trace_stream.spec.source),
                                     [float(v) for v in data["rtt_ms"]], bool(data["reached"]))
            except (OSError, ValueError, KeyError) as exc:
                self.errors.append(f"trace {key}: no result ({exc})")
                results[key] = None
        return results

    def _failover(self, route_events: list, traces: dict[str, Any], trace_records: Any) -> dict[str, Any]:
        """`routing.<step>.<metric>` (emulator.routing.failover) and a "route" mark per router and step."""
        from emulator.routing import failover

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
        return failover.failover_metrics(steps, route_events, traces_before=before, traces_after=after,
                                         outages_ns=outages, state_events=state_events)

    def abort(self) -> None:
        """Stop every process this run started, at once (by PID; teardown would too)."""
        if self.watcher is not None:
            self.watcher.stop()
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

    def cut_total_ms(self) -> float:
        total = 0
        for spans in self.cut_windows.values():
            for start, end in spans:
                total += (end if end > 0 else self.t0_ns + self.scenario.duration_ns) - start
        return total / 1e6


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


def execute(testbed: Any, scenario: Scenario, *, progress: Callable[[float, str], None] | None = None) -> Report:
    """Play `scenario`'s traffic and timeline on a started testbed; its Report.

    The testbed stays up (links are left as the timeline left them).
    """
    missing = [tool for tool, needed in (("iperf3", any(t.kind != "probe" for t in scenario.traffic)),)
               if needed and shutil.which(tool) is None]
    if missing:
        raise EnvironmentProblem(f"{', '.join(missing)} is missing (apt-get install {' '.join(missing)}, or `make run`)")
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wall_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="caspian-run-") as workdir:
        run = ScenarioRun(testbed, scenario, workdir, progress)
        try:
            run.play()
        except BaseException:
            run.abort()  # interrupted (Ctrl-C, SIGTERM) or failed: no results to wait for
            raise
        metrics, series = run.stop_and_collect()
        stats = testbed.stats()
    metrics.update(link_metrics(stats))
    metrics["events.cut_total_ms"] = run.cut_total_ms()
    errors = list(run.errors)
    for name, entry in stats.items():
        for direction in ("a_to_b", "b_to_a"):
            if not invariant_holds(entry[direction]):
                errors.append(f"link {name} {direction}: counters do not add up (engine bug)")
    results = [AssertionResult.from_assertion(a, metrics.get(a.metric)) for a in scenario.assertions]
    return Report(
        scenario=scenario.name, source=scenario.source, seed=testbed.seed, started_at=started_at,
        duration_s=scenario.duration_ns / 1e9, wall_s=time.monotonic() - wall_start,
        versions=collect_versions(), metrics=metrics, assertions=results, marks=run.marks, series=series,
        links=stats, scenario_text=scenario.text, errors=errors,
    )


def run_scenario(scenario: Scenario, *, state_root: str, seed: int | None = None,
                 progress: Callable[[float, str], None] | None = None) -> Report:
    """Run `scenario` on a fresh testbed and return its Report (torn down afterwards)."""
    from emulator.testbed import Testbed

    with Testbed(scenario, state_root=state_root, seed=seed) as testbed:
        return testbed.run(progress=progress)
