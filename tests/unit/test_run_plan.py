"""The run as data: compile_run (scenario -> RunPlan) and collect (Recording ->
metrics), both pure, checked without a testbed; and the metric registry they share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.measure.host import HostLoad
from emulator.model import metrics as registry
from emulator.run.collect import collect, cut_total_ms
from emulator.run.plan import LEAD_NS, TRACE_BEFORE_NS, TRACE_LAUNCH_NS, compile_run
from emulator.run.runner import Recording, StreamRecord
from emulator.scenario.loader import load_scenario, parse_scenario
from emulator.scenario.scenario import LINK_METRICS, TRAFFIC_METRICS
from emulator.traffic.probe import ProbeRecords

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

CHAIN = """
name: plan-chain
nodes: {a: {role: host}, r: {role: router}, b: {role: host}}
links:
  a-r: {ends: [a, r], delay: 1ms}
  r-b: {ends: [r, b], delay: 2ms}
duration: 10s
traffic:
  probe: {kind: probe, from: a, to: b, rate_pps: 100pps}
  bulk: {kind: tcp, from: b, to: a, start: 2s}
timeline:
  - {at: 4s, cut: r-b}
  - {at: 6s, restore: r-b}
  - {at: 7s, flap: a-r, period: 1s, count: 2}
assertions:
  - {metric: probe.owd_median_ms, between: [3, 3.5]}
"""


def test_plan_orders_the_starts_and_labels_the_steps() -> None:
    plan = compile_run(parse_scenario(CHAIN, source="<chain>"))
    assert [(a.kind, a.stream, a.at_ns) for a in plan.actions] == [
        ("sender", "probe", -LEAD_NS), ("sender", "bulk", 2_000_000_000)]
    # flaps are expanded; the first step of each event carries its label
    assert [(s.at_ns // 10**6, s.kind, s.link, s.label) for s in plan.steps] == [
        (4000, "cut", "r-b", "cut1"), (6000, "restore", "r-b", "restore1"),
        (7000, "cut", "a-r", "flap1"), (7500, "restore", "a-r", None),
        (8000, "cut", "a-r", None), (8500, "restore", "a-r", None)]
    probe, bulk = plan.streams
    assert (probe.rate_pps, probe.stop_ns, probe.port, probe.realtime_priority) == (100, 10**10, 7000, 1)
    assert (bulk.rate_bps, bulk.start_ns, bulk.files) == (0, 2 * 10**9, {"iperf": "bulk.iperf.json"})
    # the probe stream is stamped where it enters (a-r from a) and leaves (r-b to b)
    assert {(t.link, t.direction, t.role) for t in plan.taps} == {("a-r", "a_to_b", "first"), ("r-b", "a_to_b", "last")}
    assert not plan.dynamic_routing and plan.programs == ("iperf3",)
    assert "cut r-b both silent  [cut1]" in plan.describe()


def test_plan_traces_each_measured_step_with_dynamic_routing() -> None:
    scenario = load_scenario(SCENARIOS / "europe_asia_corridor.yaml")
    plan = compile_run(scenario)
    traces = [a for a in plan.actions if a.kind == "trace"]
    steps = {label: event.at_ns for label, event in scenario.measured_steps()}
    assert [a.trace for a in traces] == [f"before:{label}" for label in steps] + ["final"]
    for a in traces:
        assert a.trace_at_ns - a.at_ns == TRACE_LAUNCH_NS
        moment = steps[a.trace.split(":")[1]] if a.trace != "final" else scenario.duration_ns
        assert moment - a.trace_at_ns == TRACE_BEFORE_NS
    assert [a.at_ns for a in plan.actions] == sorted(a.at_ns for a in plan.actions)
    assert plan.to_dict()["trace_stream"] == "probe"


def test_each_traced_rtt_gets_the_window_its_echoes_were_in_flight() -> None:
    # a step's RTT before is the trace before it; after, the trace before the next step (or the final one)
    from emulator.run.collect import _Traces, trace_windows

    plan = compile_run(load_scenario(SCENARIOS / "corridor_frr_carrier.yaml"))   # cut1 at 8 s, restore1 at 16 s
    windows = {"before:cut1": (7_800, 7_900), "before:restore1": (15_800, 15_900), "final": (29_800, 29_900)}
    assert trace_windows(plan, 0, _Traces({}, windows=windows)) == {
        "routing.cut1.before": (7_800, 7_900), "routing.cut1.after": (15_800, 15_900),
        "routing.restore1.before": (15_800, 15_900), "routing.restore1.after": (29_800, 29_900)}
    # a trace without echo stamps (it failed, or an older recording) has no window: the p50 rule stands
    assert "routing.cut1.before" not in trace_windows(plan, 0, _Traces({}, windows={"final": (1, 2)}))


def _direction(rx: int, tx: int, outage: int = 0) -> dict[str, Any]:
    return {"rx_packets": rx, "tx_packets": tx, "duplicated": 0, "corrupted": 0, "in_flight": rx - tx - outage,
            "queued": 0, "kernel_drops": 0,
            "drops": {"outage": outage, "loss": 0, "queue": 0, "overflow": 0, "malformed": 0, "send_error": 0},
            "release_lateness": {"max_ns": 0, "histogram": {"<1us": tx}}}


def _recording(plan: Any, t0: int) -> Recording:
    """A run in which every probe arrived 3 ms after it left, except during the cut."""
    interval = 10_000_000
    cut, restore = t0 + 4 * 10**9, t0 + 6 * 10**9
    seqs = [k for k in range(1000) if not cut <= t0 + k * interval < restore]
    records = ProbeRecords(seq=seqs, send_ns=[t0 + k * interval for k in seqs],
                           recv_ns=[t0 + k * interval + 3_000_000 for k in seqs])
    summary = {"sent": 1000, "first_ns": t0, "last_ns": t0 + 999 * interval, "interval_ns": interval, "skipped": 0}
    schedule = [{"label": s.label, "kind": s.kind, "link": s.link, "direction": s.direction, "mode": s.mode,
                 "at_ns": t0 + s.at_ns,
                 "directions": {d: {"applied_ns": t0 + s.at_ns + 5_000, "last_before_ns": None, "first_after_ns": None}
                                for d in ("a_to_b", "b_to_a")}} for s in plan.steps]
    stats = {"a-r": {"a_to_b": _direction(1000, 1000), "b_to_a": _direction(10, 10)},
             "r-b": {"a_to_b": _direction(1000, 800, 200), "b_to_a": _direction(10, 10)}}
    iperf = ('{"start": {"test_start": {"protocol": "TCP"}}, "intervals": [], "end": {"sum_received": '
             '{"bits_per_second": 5e7, "bytes": 50000000}, "sum_sent": {"retransmits": 3}}}')
    return Recording(t0_ns=t0, streams={"probe": StreamRecord(records=records, summary=summary),
                                        "bulk": StreamRecord(iperf_json=iperf)},
                     schedule=schedule, stats=stats, engine_fidelity={"shards": []}, host=HostLoad(0.0, None),
                     errors=[])


def test_collect_gives_the_registered_metrics_from_a_recording() -> None:
    scenario = parse_scenario(CHAIN, source="<chain>")
    plan = compile_run(scenario)
    t0 = 1_700_000_000 * 10**9
    got = collect(scenario, plan, _recording(plan, t0))
    m = got.metrics
    kinds = {spec.name: spec.kind for spec in scenario.traffic}
    # every figure is a registered one, and every registered figure of a stream is there
    assert [name for name in m if registry.lookup(name, kinds) is None] == []
    assert {n.split(".", 1)[1] for n in m if n.startswith("probe.")} >= set(TRAFFIC_METRICS["probe"]) - {
        "net_owd_min_ms", "net_owd_median_ms", "net_owd_p99_ms", "net_owd_max_ms", "net_jitter_mean_ms"}  # untapped
    assert {n.split(".")[-1] for n in m if n.startswith("link.r-b.a_to_b.")} == set(LINK_METRICS)
    assert m["probe.owd_median_ms"] == 3.0
    assert m["probe.received"] == 800 and m["probe.loss_pct"] == 20.0
    assert m["probe.loss_outside_events_pct"] == 0.0
    assert m["probe.longest_gap_ms"] == 2000.0   # the 200 probes the 2 s cut lost, 10 ms apart
    assert m["link.r-b.a_to_b.drops_outage"] == 200
    # cut total from the applied instants: r-b 2 s, the flap's two 0.5 s halves
    assert m["events.cut_total_ms"] == 3000.0 == cut_total_ms(plan, t0)
    assert m["events.apply_error_max_us"] == 5.0
    assert [(mark.t_s, mark.kind) for mark in got.marks][:2] == [(4.0, "cut"), (6.0, "restore")]
    assert got.errors == []


def test_collect_names_a_stream_without_result() -> None:
    scenario = parse_scenario(CHAIN, source="<chain>")
    plan = compile_run(scenario)
    recording = _recording(plan, 10**18)
    recording.streams["bulk"] = StreamRecord(error="iperf3 wrote nothing")
    got = collect(scenario, plan, recording)
    assert "bulk: no result (iperf3 wrote nothing)" in got.errors
    assert not any(name.startswith("bulk.") for name in got.metrics)


def test_registry_covers_every_name_the_loader_accepts() -> None:
    for family in ("probe", "tcp", "udp", "link", "events", "routing", "start"):
        assert registry.names(family), family
    assert all(m.unit and m.producer for m in registry.REGISTRY)
    assert len({(m.family, m.name) for m in registry.REGISTRY}) == len(registry.REGISTRY)
    assert registry.lookup("routing.cut1.path_after", {}).kind == "path"
    assert registry.lookup("routing.start.convergence_s", {}).unit == "s"
    assert registry.lookup("probe.owd_median_ms", {"probe": "probe"}).unit == "ms"
    assert registry.lookup("nosuch.owd_median_ms", {"probe": "probe"}) is None
