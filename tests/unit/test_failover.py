"""Failover metrics from recorded events (emulator.routing.failover), traces and routing assertions."""

from __future__ import annotations

import pytest

from emulator.errors import ScenarioError
from emulator.report.report import AssertionResult, Report, format_value
from emulator.routing.events import RouteEvent, StateEvent, bird_log_events
from emulator.routing.failover import Trace, failover_metrics, route_marks, step_windows, window_outage_ns
from emulator.routing.trace import hops_from_answers, hops_to_nodes
from emulator.scenario.loader import parse_scenario
from emulator.scenario.scenario import Assertion

S = 1_000_000_000
MS = 1_000_000


def _ev(t_ms: int, router: str) -> RouteEvent:
    return RouteEvent(10 * S + t_ms * MS, router, "198.19.0.7/32", "add", "198.18.0.1", "x")


STEPS = step_windows([("cut1", "cut", "ab", 10 * S), ("restore1", "restore", "ab", 20 * S)], 30 * S)
EVENTS = [_ev(-2000, "ra"), _ev(800, "ra"), _ev(1250, "rb"), _ev(1300, "ra"), _ev(10_000 + 5100, "ra"),
          _ev(10_000 + 5200, "rb"), _ev(25_000, "rb")]
VIA_B = Trace(["left", "ra", "rb", "rd", "right"], [8.4, 8.6, 9.1])
VIA_C = Trace(["left", "ra", "rc", "rd", "right"], [40.4, 40.7, 40.5])


def test_step_windows_end_at_the_next_step() -> None:
    assert [(s.label, s.t_ns, s.end_ns) for s in STEPS] == [("cut1", 10 * S, 20 * S), ("restore1", 20 * S, 30 * S)]


def test_failover_metrics_exact() -> None:
    m = failover_metrics(STEPS, EVENTS, traces_before={"cut1": VIA_B, "restore1": VIA_C},
                         traces_after={"cut1": VIA_C, "restore1": VIA_B},
                         outages_ns={"cut1": 1_522 * MS, "restore1": 36 * MS})
    assert m["routing.cut1.first_route_ms"] == 800.0
    assert m["routing.cut1.detection_ms"] is None   # no daemon log given
    assert m["routing.cut1.convergence_ms"] == 1300.0
    assert m["routing.cut1.route_changes"] == 3.0
    assert m["routing.cut1.outage_ms"] == 1522.0
    assert m["routing.cut1.path_before"] == VIA_B.path and m["routing.cut1.path_after"] == VIA_C.path
    assert m["routing.cut1.path_changed"] is True
    assert m["routing.cut1.rtt_before_ms"] == 8.6 and m["routing.cut1.rtt_after_ms"] == 40.5
    assert "routing.cut1.reverts_on_restore" not in m
    # the restore: the route change 10 s after the end of its window is not counted
    assert m["routing.restore1.first_route_ms"] == 5100.0
    assert m["routing.restore1.convergence_ms"] == 5200.0
    assert m["routing.restore1.route_changes"] == 2.0
    assert m["routing.restore1.reverts_on_restore"] is True
    assert m["routing.cut1.first_route_ms"] <= m["routing.cut1.convergence_ms"]


def test_failover_metrics_missing_data_is_none() -> None:
    m = failover_metrics(STEPS, [])
    assert m["routing.cut1.detection_ms"] is None and m["routing.cut1.route_changes"] == 0.0
    assert m["routing.restore1.reverts_on_restore"] is None and m["routing.cut1.path_after"] is None
    stays = failover_metrics(STEPS, [], traces_before={"cut1": VIA_B}, traces_after={"restore1": VIA_C})
    assert stays["routing.restore1.reverts_on_restore"] is False


def test_flap_reverts_against_its_own_path_before() -> None:
    steps = step_windows([("flap1", "flap", "ab", 5 * S)], 9 * S)
    m = failover_metrics(steps, [], traces_before={"flap1": VIA_B}, traces_after={"flap1": VIA_B})
    assert m["routing.flap1.reverts_on_restore"] is True and m["routing.flap1.path_changed"] is False


def test_window_outage() -> None:
    interval = 2 * MS
    # probes every 2 ms from t=0; 0..99 received, 100..849 lost (cut at 200 ms), 850..999 received
    received = [(q, q * interval) for q in [*range(100), *range(850, 1000)]]
    assert window_outage_ns(received, 1000, interval, 200 * MS, 1000 * MS) == 850 * interval - 99 * interval - interval
    # a window after the gap does not see it; one starting within LEAD_IN after its first loss does
    assert window_outage_ns(received, 1000, interval, 1800 * MS, 3000 * MS) == 0
    assert window_outage_ns(received, 1000, interval, 290 * MS, 1000 * MS) == 1500 * MS
    # trailing losses: (lost) x interval
    assert window_outage_ns(received[:100], 1000, interval, 150 * MS, 5000 * MS) == 900 * interval
    assert window_outage_ns([], 1000, interval, 0, S) is None


def test_route_marks_first_change_per_router_and_step() -> None:
    marks = route_marks(STEPS, EVENTS)
    assert marks == [(8 * S, "ra", 1), (10 * S + 800 * MS, "ra", 2), (10 * S + 1250 * MS, "rb", 1),
                     (25 * S + 100 * MS, "ra", 1), (25 * S + 200 * MS, "rb", 1)]  # the change at 35 s is after the end


def test_hops_from_answers() -> None:
    answers = [(3, "10.0.0.9", True), (1, "10.0.0.1", False), (4, "10.0.0.9", True), (2, "10.0.0.5", False)]
    assert hops_from_answers(answers, "10.0.0.9", 16) == (["10.0.0.1", "10.0.0.5", "10.0.0.9"], True)
    assert hops_from_answers([(1, "10.0.0.1", False), (3, "10.0.0.7", False)], "10.0.0.9", 16) == (
        ["10.0.0.1", None, "10.0.0.7"], False)
    assert hops_to_nodes(["10.0.0.1", None, "10.9.9.9"], {"10.0.0.1": "ra"}, "left") == ["left", "ra", "?", "?"]


RING = """\
name: ring
routing: {protocol: ospf}
nodes: {left: {role: host}, ra: {role: router}, rb: {role: router}, right: {role: host}}
links:
  left-ra: {ends: [left, ra]}
  ra-rb: {ends: [ra, rb]}
  rb-right: {ends: [rb, right]}
duration: 10s
traffic: {probe: {kind: probe, from: left, to: right}}
timeline:
  - {at: 2s, cut: ra-rb}
  - {at: 5s, restore: ra-rb}
assertions:
"""


def _parse(assertion: str, head: str = RING) -> list[Assertion]:
    return list(parse_scenario(head + f"  - {assertion}\n", source="s.yaml").assertions)


def test_routing_assertions_parse_and_hold() -> None:
    (inc,) = _parse("{metric: routing.cut1.path_after, includes: [ra, rb]}")
    assert inc.includes == ("ra", "rb") and inc.description == "includes ra, rb"
    assert inc.holds(["left", "ra", "rb", "right"]) and not inc.holds(["left", "ra", "right"]) and not inc.holds(None)
    (exc,) = _parse("{metric: routing.cut1.path_after, excludes: rb}")
    assert exc.holds(["left", "ra"]) and not exc.holds(["rb"])
    (rev,) = _parse("{metric: routing.restore1.reverts_on_restore, equals: true}")
    assert rev.expected is True and rev.holds(True) and not rev.holds(False) and not rev.holds(1.0)
    (num,) = _parse("{metric: routing.cut1.outage_ms, at_most: 1000}")
    assert num.holds(999.0) and not num.holds(True) and not num.holds(["ra"])


@pytest.mark.parametrize("assertion, message", [
    ("{metric: routing.cut2.outage_ms, at_most: 1}", "no timeline step 'cut2'"),
    ("{metric: routing.cut1.reverts_on_restore, equals: true}", "unknown cut routing metric"),
    ("{metric: routing.cut1.path_after, at_most: 3}", "which is a path"),
    ("{metric: routing.cut1.path_after, includes: rc}", "no node called 'rc'"),
    ("{metric: routing.restore1.reverts_on_restore, equals: 1}", "expected true or false"),
    ("{metric: routing.cut1.outage, at_most: 3}", "did you mean 'outage_ms'"),
    ("{metric: routing.outage_ms, at_most: 3}", "not routing.<step>.<metric>"),
    ("{metric: routing.start.converge_s, at_most: 30}", r"unknown start-up routing metric 'converge_s'.*did you mean 'convergence_s'"),
])
def test_routing_assertion_errors(assertion: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        _parse(assertion)


def test_startup_convergence_needs_no_probe_stream() -> None:
    no_traffic = RING.replace("traffic: {probe: {kind: probe, from: left, to: right}}\n", "")
    (conv,) = _parse("{metric: routing.start.convergence_s, at_most: 30}", no_traffic)
    assert conv.holds(12.5) and not conv.holds(31.0)
    with pytest.raises(ScenarioError, match="only with a routing protocol run by daemons"):
        _parse("{metric: routing.start.convergence_s, at_most: 30}", no_traffic.replace("routing: {protocol: ospf}\n", ""))


def test_routing_assertions_need_daemons() -> None:
    with pytest.raises(ScenarioError, match="only with a routing protocol run by daemons"):
        _parse("{metric: routing.cut1.outage_ms, at_most: 1}", RING.replace("routing: {protocol: ospf}\n", ""))


def test_report_carries_paths_and_booleans() -> None:
    path = ["left", "ra", "rb", "right"]
    (inc,) = _parse("{metric: routing.cut1.path_after, includes: rb}")
    result = AssertionResult.from_assertion(inc, path)
    assert result.passed and result.message() == "measured left > ra > rb > right, expected includes rb"
    assert format_value(True) == "true"
    report = Report(scenario="ring", source="s.yaml", seed=1, started_at="x", duration_s=10, wall_s=1, versions={},
                    metrics={"routing.cut1.path_after": path, "routing.restore1.reverts_on_restore": True,
                             "routing.cut1.outage_ms": float("nan")},
                    assertions=[result], marks=[], series={}, links={})
    data = report.to_dict()
    assert data["metrics"] == {"routing.cut1.path_after": path, "routing.restore1.reverts_on_restore": True,
                               "routing.cut1.outage_ms": None}
    assert data["assertions"][0]["measured"] == path
    back = Report.from_dict(data)
    assert back.metrics["routing.cut1.path_after"] == path and back.streams() == []


# -- detection from the daemons' logs -------------------------------------------

BIRD_LOG = """\
2026-11-25 11:52:57.156 <TRACE> bfd1: Session to 198.18.0.26 changed state from Init to Up
2026-11-25 11:52:57.398 <TRACE> ospf4: Neighbor 198.19.0.3 on rb changed state from Loading to Full
2026-11-25 11:53:02.485 <TRACE> ospf4: Updating router state for area 0.0.0.0
2026-11-25 11:53:09.165 <TRACE> bfd1: Session to 198.18.0.10 expired
2026-11-25 11:53:09.165 <TRACE> bfd1: Session to 198.18.0.10 changed state from Up to Down
2026-11-25 11:53:09.165 <TRACE> ospf4: BFD session down for nbr 198.19.0.3 on rb
2026-11-25 11:53:09.166 <TRACE> ospf4: Neighbor 198.19.0.3 on rb changed state from Full to Down
2026-11-25 11:53:10.001 <TRACE> bgp_ra_rb: State changed to stop
"""


def test_bird_log_events_reads_bfd_ospf_and_bgp_state_changes() -> None:
    events = bird_log_events(BIRD_LOG, "ra")
    assert [(e.kind, e.peer, e.state) for e in events] == [
        ("bfd", "198.18.0.26", "up"), ("ospf", "198.19.0.3", "full"), ("bfd", "198.18.0.10", "down"),
        ("ospf", "198.19.0.3", "down"), ("bgp", "bgp_ra_rb", "stop")]
    assert all(e.router == "ra" for e in events)
    # millisecond stamps, local time, as CLOCK_REALTIME ns
    assert events[3].t_ns - events[2].t_ns == 1 * MS


def test_detection_is_the_first_logged_state_change_after_the_step() -> None:
    state = [StateEvent(10 * S - 500 * MS, "ra", "ospf", "198.19.0.3", "full"),   # before: not this step's
             StateEvent(10 * S + 300 * MS, "rb", "bfd", "198.18.0.9", "down"),
             StateEvent(10 * S + 301 * MS, "ra", "bfd", "198.18.0.10", "down"),
             StateEvent(20 * S + 1400 * MS, "ra", "ospf", "198.19.0.3", "init")]
    m = failover_metrics(STEPS, EVENTS, state_events=state)
    assert m["routing.cut1.detection_ms"] == 300.0
    assert m["routing.cut1.detected_by"] == "bfd rb 198.18.0.9 down"
    assert m["routing.restore1.detection_ms"] == 1400.0
    assert m["routing.cut1.detection_ms"] < m["routing.cut1.first_route_ms"]


def test_a_neighbour_loss_stamped_just_before_its_bfd_down_is_named_after_bfd() -> None:
    """bfdd descheduled on a busy CPU stamps its down after ospfd stamped the loss it caused."""
    from emulator.routing.failover import Step, first_state_change

    step = Step("cut1", "cut", "ra-rb", 4 * S, 8 * S)
    ospf_first = [StateEvent(4 * S + 250 * MS, "ra", "ospf", "198.19.0.2", "deleted"),
                  StateEvent(4 * S + 290 * MS, "ra", "bfd", "198.18.0.2", "down")]
    got = first_state_change(step, ospf_first)
    assert got is not None and (got.kind, got.t_ns) == ("bfd", 4 * S + 250 * MS)
    # a neighbour loss with no BFD down close behind stays the protocol's (the dead timer)
    dead = [StateEvent(4 * S + 3900 * MS, "ra", "ospf", "198.19.0.2", "down"),
            StateEvent(4 * S + 4100 * MS, "ra", "bfd", "198.18.0.2", "down")]
    got = first_state_change(step, dead)
    assert got is not None and got.kind == "ospf"
