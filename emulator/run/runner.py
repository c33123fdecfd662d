"""The runner: a `RunPlan` executed against a started testbed.

It starts what the plan names (receivers first, senders and traces at their
times), hands the timeline to the engine, stops everything it started by PID
and hands back a `Recording`: what the run saw, loaded from the tools' files
and the engine, with the times it stamped. It computes no metric; that is
`emulator.run.collect`. Times are taken on one clock (CLOCK_REALTIME, which the
engine and the kernel's packet stamps also use), never inferred from sleeps.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from emulator.errors import EngineError, TestbedError
from emulator.measure.host import HostLoad, HostSampler
from emulator.network.processes import stop_children
from emulator.routing.events import RouteWatcher
from emulator.routing.trace import address_owners, trace_argv
from emulator.run.plan import RunPlan
from emulator.traffic.kinds import Launch, StreamPlan, StreamRecord, tools

if TYPE_CHECKING:
    from emulator.testbed import Testbed

#: Time after the end for the last probes and iperf3 reports to arrive.
GRACE_S = 1.0
#: How long the senders that start ahead may take to be ready (scapy's import: 0.6 s of
#: CPU, seen past 2 s on a loaded 2-vCPU machine) before the run goes on without them
READY_TIMEOUT_S = 30.0
#: the engine's release-lateness time bins (fidelity: spans line up with the timeline)
FIDELITY_BIN_NS = 100_000_000
#: a gap in the engine's loop longer than this is a stall: the p99 wake-up error of a
#: real-time thread here is ~51 µs and its max 0.5-4.8 ms (cyclictest, DESIGN.md); 1 ms
#: is one probe interval at 1 kHz, the finest a probe stream can see
STALL_THRESHOLD_NS = 1_000_000


@dataclass
class Recording:
    """Everything a run recorded, for `collect()`: no metric is computed yet."""

    t0_ns: int
    streams: dict[str, StreamRecord]
    #: every timeline step as the engine applied it (Engine.schedule_status), [] with no timeline
    schedule: list[dict[str, Any]]
    stats: dict[str, Any]
    engine_fidelity: dict[str, Any]
    host: HostLoad
    errors: list[str]
    route_events: list[Any] = field(default_factory=list)
    #: failover traces: key -> the trace's JSON (None: it failed, with an error)
    traces: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    address_owners: dict[str, str] = field(default_factory=dict)
    state_events: list[Any] = field(default_factory=list)
    #: routing daemons ran: the failover fields below are filled in
    dynamic_routing: bool = False
    convergence_s: float | None = None
    capture: dict[str, Any] | None = None


@dataclass
class _Running:
    """One stream's processes while the run goes."""

    plan: StreamPlan
    receiver: subprocess.Popen | None = None
    sender: subprocess.Popen | None = None


class Runner:
    """One execution of a RunPlan on a started testbed."""

    def __init__(self, testbed: "Testbed", plan: RunPlan, workdir: str,
                 progress: Callable[[float, str], None] | None = None, capture_dir: str | None = None) -> None:
        self.testbed = testbed
        if testbed.engine is None:
            raise TestbedError("the testbed is not running: start it before running a scenario on it")
        self.engine = testbed.engine
        self.network = testbed.built()
        self.routing = testbed.routing if plan.dynamic_routing else None
        self.plan = plan
        self.workdir = workdir
        #: where the plan's capture files go (the report directory); None = the workdir (lost)
        self.capture_dir = capture_dir or workdir
        self.progress = progress or (lambda fraction, what: None)
        self.running = {s.name: _Running(s) for s in plan.streams}
        self.errors: list[str] = []
        self.t0_ns = 0
        self.watcher: RouteWatcher | None = None
        self.scheduled = False
        self.capturing = False
        self.capture: dict[str, Any] | None = None
        self.host: HostSampler | None = None
        self.traces: dict[str, subprocess.Popen] = {}

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    # -- processes -----------------------------------------------------------

    def _start(self, launch: Launch) -> subprocess.Popen:
        if launch.handshake:
            proc = self.testbed.popen(launch.node, launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        elif launch.stdout_file is None:
            proc = self.testbed.popen(launch.node, launch.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        else:
            with open(self.path(launch.stdout_file), "wb") as stdout:
                proc = self.testbed.popen(launch.node, launch.argv, stdout=stdout, stderr=subprocess.PIPE)
        self.network.record_process(proc.pid, launch.role)
        return proc

    def _start_receivers(self) -> None:
        for r in self.running.values():
            r.receiver = self._start(tools(r.plan.kind).receiver(r.plan, self.path))

    def _wait_receivers_bound(self, timeout_s: float = 10.0) -> None:
        """Wait until every UDP receiver's socket is bound (a probe receiver's; seen in its own
        namespace's /proc/PID/net/udp): a receiver still starting on a busy CPU
        would lose the first probes, a loss the network never made."""
        deadline = time.monotonic() + timeout_s
        for r in self.running.values():
            if not tools(r.plan.kind).binds_udp or r.receiver is None:
                continue
            table = f"/proc/{r.receiver.pid}/net/{'udp6' if r.plan.ipv6 else 'udp'}"
            while not udp_port_bound(table, r.plan.port):
                if r.receiver.poll() is not None or time.monotonic() > deadline:
                    break  # it failed or is very slow: its stream reports the loss, _wait the exit code
                time.sleep(0.02)
        time.sleep(0.05)  # the rest of the receivers' set-up (stop handlers) after bind

    def _start_sender(self, name: str) -> None:
        r = self.running[name]
        if r.sender is None:   # a sender that starts ahead is already running
            r.sender = self._start(tools(r.plan.kind).sender(r.plan, self.t0_ns, self.path))

    def _start_senders_ahead(self) -> list[_Running]:
        """Start the senders that start up before t0 (StreamTools.starts_ahead) and wait,
        up to READY_TIMEOUT_S, until each has said it is ready: t0 is fixed after that,
        so a start-up slowed by a loaded CPU delays the run, never its first probes."""
        ahead = [r for r in self.running.values() if tools(r.plan.kind).starts_ahead]
        for r in ahead:
            r.sender = self._start(tools(r.plan.kind).sender(r.plan, None, self.path))
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = {r.sender.stdout.fileno(): r for r in ahead if r.sender is not None and r.sender.stdout is not None}
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                for r in waiting.values():
                    self.errors.append(f"{r.plan.name} sender: not ready after {READY_TIMEOUT_S:g} s")
                break
            ready, _, _ = select.select(list(waiting), [], [], min(left, 0.5))
            for fd in ready:
                r = waiting.pop(fd)
                line = os.read(fd, 64)   # `ready`, or b"" when it exited (its error is in _wait)
                if not line:
                    self.errors.append(f"{r.plan.name} sender exited before it was ready")
        for r in ahead:   # it writes nothing more there
            if r.sender is not None and r.sender.stdout is not None:
                r.sender.stdout.close()
        return ahead

    def _tell_t0(self, ahead: list[_Running]) -> None:
        for r in ahead:
            if r.sender is None or r.sender.stdin is None:
                continue
            try:
                r.sender.stdin.write(f"{self.t0_ns}\n".encode())
                r.sender.stdin.close()
            except BrokenPipeError:
                pass   # it exited: its exit code and stderr say why (_wait)

    def _start_trace(self, key: str, at_ns: int) -> None:
        s = self.plan.stream(self.plan.trace_stream or "")
        self.traces[key] = self._start(Launch(s.source, trace_argv(s.target, at_ns=at_ns), f"trace {key}",
                                              stdout_file=f"trace-{key}.json"))

    # -- the timeline ----------------------------------------------------------

    def _schedule_timeline(self) -> None:
        """Hand every timeline step to the engine before t0: it applies each at
        its instant on its own clock, judged on each frame's arrival stamp."""
        events = []
        for step in self.plan.steps:
            event: dict[str, Any] = {"at_ns": self.t0_ns + step.at_ns, "link": step.link, "kind": step.kind,
                                     "direction": step.direction, "label": step.label, "mode": step.mode}
            if step.params is not None:
                event["params"] = step.params
            if step.params_b_to_a is not None:
                event["params_b_to_a"] = step.params_b_to_a
            events.append(event)
        self.engine.schedule(events)
        self.scheduled = bool(events)

    def _start_capture(self) -> None:
        """Capture the plan's links, each into its own file (FastPath.capture_start)."""
        if not self.plan.captures:
            return
        os.makedirs(self.capture_dir, exist_ok=True)
        targets = [{"link": c.link, "direction": c.direction, "path": os.path.abspath(os.path.join(self.capture_dir, c.file))}
                   for c in self.plan.captures]
        self.engine.capture_start(targets, targets[0]["path"])
        self.capturing = True

    def _stop_capture(self) -> None:
        if self.capturing:
            self.capturing = False
            self.capture = self.engine.capture_stop()

    def play(self) -> None:
        """Start traffic and play the timeline; returns at the scenario's end."""
        self.host = HostSampler().start()
        self._start_receivers()
        self._wait_receivers_bound()
        ahead = self._start_senders_ahead()
        self.t0_ns = time.time_ns() + self.plan.lead_ns
        self._tell_t0(ahead)
        # the engine's lateness time bins start at t0, its stall count now
        self.engine.set_fidelity(self.t0_ns, FIDELITY_BIN_NS, STALL_THRESHOLD_NS)
        self.engine.set_probe_taps([{"link": t.link, "direction": t.direction, "role": t.role,
                                             "port": t.port, "capacity": t.capacity} for t in self.plan.taps])
        self._start_capture()
        self._schedule_timeline()
        if self.routing is not None:
            routers = self.routing.routers
            self.watcher = RouteWatcher({r: self.network.node_netns(r) for r in routers}).start()
        end_ns = self.plan.duration_ns
        for action in self.plan.actions:
            if action.kind == "trace" and self.routing is None:
                continue
            self._sleep_until(self.t0_ns + action.at_ns, end_ns)
            if action.kind == "sender":
                self._start_sender(action.stream)
            else:
                self._start_trace(action.trace, self.t0_ns + action.trace_at_ns)
        self._sleep_until(self.t0_ns + end_ns, end_ns)
        self.progress(1.0, "done")

    def _sleep_until(self, deadline_ns: int, end_ns: int) -> None:
        while True:
            now = time.time_ns()
            if now >= deadline_ns:
                return
            self.progress(max(0.0, (now - self.t0_ns) / end_ns), "")
            time.sleep(min(0.1, (deadline_ns - now) / 1e9))

    # -- stopping and recording ---------------------------------------------------

    def stop(self) -> Recording:
        """Stop every process this run started (by PID) and load what they recorded."""
        deadline = time.monotonic() + GRACE_S + 30
        for r in self.running.values():
            if r.sender is not None and tools(r.plan.kind).sender_ends:
                _wait(r.sender, max(1.0, deadline - time.monotonic()), f"{r.plan.name} sender", self.errors)
        time.sleep(GRACE_S)
        self._stop_capture()
        for r in self.running.values():
            for proc in (r.sender, r.receiver):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc, role in ((r.sender, "sender"), (r.receiver, "receiver")):
                if proc is not None:
                    _wait(proc, 10, f"{r.plan.name} {role}", self.errors, terminated=True)
        route_events = self.watcher.stop() if self.watcher is not None else []
        if self.watcher is not None:
            self.errors.extend(self.watcher.errors)
        streams = {name: self._load(r.plan) for name, r in self.running.items()}
        recording = Recording(
            t0_ns=self.t0_ns, streams=streams,
            schedule=self.engine.schedule_status() if self.scheduled else [],
            stats=self.testbed.stats(), engine_fidelity=self.engine.fidelity(),
            host=self.host.stop() if self.host is not None else HostLoad(0.0, None),
            errors=self.errors, route_events=route_events, capture=self.capture,
        )
        if self.routing is not None:
            recording.dynamic_routing = True
            recording.traces = self._load_traces()
            recording.address_owners = address_owners(self.network.addresses)
            recording.convergence_s = self.testbed.convergence_s
            try:
                recording.state_events = self.routing.state_events()
            except OSError as exc:
                self.errors.append(f"routing daemon logs: {exc}")
        self.host = None
        return recording

    def _load(self, s: StreamPlan) -> StreamRecord:
        try:
            record = tools(s.kind).load(s, self.path)
            taps = [t for t in self.plan.taps if t.stream == s.name]
            if taps:
                stamps = self.engine.probe_taps([{"link": t.link, "direction": t.direction,
                                                  "role": t.role, "port": t.port} for t in taps])
                record.tap_stamps = [{"role": t.role, **got} for t, got in zip(taps, stamps)]
            return record
        except (OSError, ValueError, KeyError, TestbedError) as exc:
            return StreamRecord(error=str(exc))

    def _load_traces(self) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        for key, proc in self.traces.items():
            _wait(proc, 15, f"trace {key}", self.errors)
            try:
                with open(self.path(f"trace-{key}.json")) as fh:
                    out[key] = json.load(fh)
            except (OSError, ValueError) as exc:
                self.errors.append(f"trace {key}: no result ({exc})")
                out[key] = None
        return out

    def abort(self) -> None:
        """Stop every process this run started, at once (by PID; teardown would too),
        and take back the timeline the engine still holds (a testbed left up
        must not be cut later by a run that is over)."""
        if self.scheduled:
            try:
                self.engine.schedule([])
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
        procs = [p for r in self.running.values() for p in (r.sender, r.receiver) if p is not None]
        try:
            stop_children([*procs, *self.traces.values()], 2)
        except subprocess.TimeoutExpired:
            pass  # killed, still closing its sockets: teardown waits for it by PID


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
