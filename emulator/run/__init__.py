"""`caspian run`: a scenario from start to report.

The run is three steps with data between them, each its own module:
`plan.compile_run(scenario)` (pure) gives the RunPlan, `runner.Runner`
executes it on a started testbed and hands back a Recording, and
`collect.collect()` (pure) turns that into the metrics, series and fidelity
the Report holds. This module joins them (`execute`, `run_scenario`).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from emulator.errors import EnvironmentProblem, TestbedError
from emulator.measure.queues import queue_series
from emulator.report.report import AssertionResult, Report, collect_versions
from emulator.report.topology_view import topology_data
from emulator.report.verdict import judge
# the module, not its function: `emulator.run.collect` must stay the module
from emulator.run import collect as collecting
from emulator.run.collect import jitter_windows, link_metrics, measured_paths
from emulator.run.plan import RunPlan, compile_run
from emulator.run.runner import Runner, udp_port_bound
from emulator.scenario.paths import path_delay_ns, shortest_path
from emulator.scenario.scenario import Assertion, Scenario, TrafficSpec

if TYPE_CHECKING:
    from emulator.testbed import Testbed

__all__ = ["compile_run", "execute", "implicit_scenario", "jitter_windows", "link_metrics", "measured_paths",
           "report_topology", "run_scenario", "udp_port_bound", "RunPlan"]


def report_topology(scenario: Scenario, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The topology for the report's picture, with each stream's path: the one the
    failover traces saw before the first step (dynamic routing picks by its own
    costs), else the least-delay path the static routes take."""
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


def implicit_scenario(scenario: Scenario) -> Scenario:
    """For a file with only a topology: 10 s of 1 kHz probes between the first
    and last host, asserting the configured one-way delay (+0.3 ms of stacks)."""
    topology = scenario.topology
    hosts = [n.name for n in topology.nodes if n.role == "host"] or [n.name for n in topology.nodes]
    source, target = hosts[0], hosts[-1]
    owd_ms = path_delay_ns(topology, shortest_path(topology, source, target)) / 1e6
    probe_spec = TrafficSpec("probe", "probe", source, target, rate_pps=1000, size=64)
    bound = Assertion("probe.owd_median_ms", owd_ms, owd_ms + 0.3, f"between [{owd_ms:.3f}, {owd_ms + 0.3:.3f}]")
    return dataclasses.replace(scenario, duration_ns=10_000_000_000, traffic=(probe_spec,), timeline=(), assertions=(bound,))


def execute(testbed: "Testbed", scenario: Scenario, *, progress: Callable[[float, str], None] | None = None,
            capture_dir: str | None = None) -> Report:
    """Play `scenario`'s traffic and timeline on a started testbed; its Report.

    The testbed stays up (links are left as the timeline left them). The
    scenario's `capture:` files go into `capture_dir` (the report directory);
    without one they are not kept. `scenario`'s topology must be the testbed's.
    """
    if scenario.topology != testbed.topology:
        raise TestbedError(f"scenario {scenario.name} describes another topology than this testbed's")
    plan = compile_run(scenario)
    for program in plan.programs:
        if shutil.which(program) is None:
            raise EnvironmentProblem(f"{program} is missing (apt-get install {program}, or `make run`)")
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wall_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="caspian-run-") as workdir:
        runner = Runner(testbed, plan, workdir, progress, capture_dir)
        try:
            runner.play()
        except BaseException:
            runner.abort()  # interrupted (Ctrl-C, SIGTERM) or failed: no results to wait for
            raise
        recording = runner.stop()
    got = collecting.collect(scenario, plan, recording)
    results = [AssertionResult.from_assertion(a, got.metrics.get(a.metric)) for a in scenario.assertions]
    for result in results:
        result.verdict, result.reason = judge(result, got.fidelity)
    capture = recording.capture if capture_dir else None
    return Report(
        scenario=scenario.name, source=scenario.source, seed=testbed.seed, started_at=started_at,
        duration_s=scenario.duration_ns / 1e9, wall_s=time.monotonic() - wall_start,
        versions=collect_versions(), metrics=got.metrics, assertions=results, marks=got.marks, series=got.series,
        links=recording.stats, scenario_text=scenario.text, errors=got.errors, timeline=got.timeline,
        fidelity=got.fidelity.to_dict(), topology=report_topology(scenario, got.metrics),
        queues=queue_series(recording.engine_fidelity, recording.t0_ns,
                            {l.name: l.nodes for l in scenario.topology.links}),
        captures=dict(capture["files"]) if capture else {},
        capture_lost=int(capture["lost"]) if capture else 0,
        scale=got.scale, placement=testbed.placement_summary(),
    )


def run_scenario(scenario: Scenario, *, state_root: str, seed: int | None = None,
                 progress: Callable[[float, str], None] | None = None, capture_dir: str | None = None) -> Report:
    """Run `scenario` on a fresh testbed and return its Report (torn down afterwards);
    its `capture:` files go into `capture_dir`."""
    from emulator.testbed import Testbed

    with Testbed(scenario, state_root=state_root, seed=seed) as testbed:
        return execute(testbed, scenario, progress=progress, capture_dir=capture_dir)
