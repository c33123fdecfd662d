"""Failover metrics of a run: pure functions over recorded events (no system state).

Each timeline event (a flap whole) is a *step* with a label (`cut1`,
`restore1`, `flap1`, `set1`: its kind and number among that kind, in time
order) and a window from the moment the engine applied it to the moment the
next step was applied (or the run's end). Per step, with t = the step's time:

- `detection_ms`: the first protocol state change a routing daemon logged,
  at any router, in the window, minus t: a BFD session or OSPF neighbour
  leaving Up/Full after a cut (or coming up after a restore), a BGP session
  changing state; BIRD stamps its log in milliseconds, so this is up to
  1 ms early; `detected_by` names it ("bfd sumgait 198.18.0.9 down");
- `first_route_ms`: the first kernel route change, at any router, in the
  window, minus t (the first router to act on the detection);
- `convergence_ms`: the last kernel route change, across all routers, in the
  window, minus t;
- `route_changes`: kernel route changes (adds, replacements, deletions) in
  the window, summed over routers;
- `outage_ms`: the probe stream's longest gap (as `longest_gap_ms`) among
  gaps whose lost probes were sent in [t - LEAD_IN, window end);
- `path_before`/`path_after`: the nodes the trace from the probe stream's
  source to its target passed (source first), traced just before the step
  and just before the next step (or the end); `path_changed` whether they differ;
- `rtt_before_ms`/`rtt_after_ms`: the median RTT of that trace's echo pings;
- `reverts_on_restore` (restore and flap): the path after is the path that
  was in use before the link went down (a restore: before the last `cut` of
  the same link; a flap: before the flap);
- with BFD, for a cut or flap (`bfd_detection_window_ns`): `bfd_expected_ms`
  and `bfd_expected_min_ms`, the latest and earliest detection the timers
  allow, and `detection_in_bfd_window`, whether `detection_ms` lies between
  them (with BFD_LOG_SLACK_NS below, for BIRD's millisecond log stamps;
  False when nothing was detected in the step).

The RFC 6412/6413 convergence benchmarks of each step, from the probe
streams, are in `emulator.routing.convergence`.

A metric that could not be measured is None.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any, Sequence

from emulator.model.direction import each_direction
from emulator.routing.events import RouteEvent, StateEvent

#: a cut also takes the probes already on their way: gaps starting this long before a step count
LEAD_IN_NS = 100_000_000
METRIC_PREFIX = "routing"
#: BIRD stamps its log in whole milliseconds (truncated): a detection may read up to 1 ms early
BFD_LOG_SLACK_NS = 1_000_000
#: the step kinds that start with a silent cut, whose detection the BFD timers bound
BFD_CUT_KINDS = ("cut", "flap")


@dataclass(frozen=True)
class Step:
    """A timeline event as applied: `t_ns` when, `end_ns` where its window ends."""

    label: str
    kind: str
    link: str
    t_ns: int
    end_ns: int


@dataclass(frozen=True)
class Trace:
    """One trace's result: node names (source first) and RTT samples, ms."""

    path: list[str]
    rtt_ms: list[float]
    reached: bool = True


def window_outage_ns(received: Sequence[tuple[int, int]], sent: int, interval_ns: int,
                     start_ns: int, end_ns: int) -> int | None:
    """The longest probe gap whose lost probes were sent within [start_ns - LEAD_IN_NS, end_ns).

    `received`: (seq, send_ns) of each received probe's first copy. A gap
    between received probes q0 < q1 (q1 - q0 > 1) lasts t1 - t0 - interval
    and covers the send times (t0, t1); losses after the last received probe
    count as (number lost) x interval from its send time. None without any
    received probe.
    """
    by_seq = sorted(received)
    if not by_seq:
        return None
    lo = start_ns - LEAD_IN_NS
    gap = 0
    for (q0, t0), (q1, t1) in zip(by_seq, by_seq[1:]):
        if q1 - q0 > 1 and t0 + interval_ns < end_ns and t1 > lo:
            gap = max(gap, t1 - t0 - interval_ns)
    last_seq, last_t = by_seq[-1]
    if sent - 1 > last_seq and last_t + interval_ns < end_ns:
        gap = max(gap, (sent - 1 - last_seq) * interval_ns)
    return gap


def bfd_detection_window_ns(interval_ns: int, multiplier: int, one_way_ns: int = 0,
                            one_way_max_ns: int | None = None) -> tuple[int, int]:
    """(earliest, latest) time from a silent cut to the first BFD session down, ns.

    RFC 5880 §6.8.4: a session goes down when no packet arrived for the
    Detection Time = the remote's Detect Mult x the agreed interval (here both
    ends are configured alike: `multiplier` x `interval_ns`), counted from the
    last packet received. §6.8.7: each transmit interval is reduced by 0-25 %
    of jitter (with Detect Mult 1, to 75-90 %), so the last packet that
    crossed the link before the cut left at most 1 (0.9) interval before it,
    and reaches the peer a link's one-way delay later. The side that stops
    receiving detects it: first detection - cut lies in
    [D - max interval + one way, D + one way], `one_way_ns` the shortest
    (`one_way_max_ns` the longest, e.g. with jitter) delay of the directions cut.
    """
    longest = interval_ns * 9 // 10 if multiplier == 1 else interval_ns
    detect = multiplier * interval_ns
    high_owd = one_way_ns if one_way_max_ns is None else one_way_max_ns
    return detect - longest + one_way_ns, detect + high_owd


def bfd_windows_ns(steps: Sequence[Step], topology: Any, directions: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Per cut or flap step, `bfd_detection_window_ns` for its link; {} without BFD.

    `topology`: the scenario's (its `routing.bfd` timers, its links' one-way
    delay and jitter); `directions`: per step label, the direction cut
    ("both", "a_to_b" or "b_to_a"; both when not given).
    """
    bfd = topology.routing.bfd if topology.routing is not None else None
    if bfd is None:
        return {}
    windows = {}
    for step in steps:
        if step.kind not in BFD_CUT_KINDS:
            continue
        try:
            link = topology.link(step.link)
        except KeyError:
            continue
        way = directions.get(step.label, "both")
        cut = [p for name, p in (("a_to_b", link.a_to_b), ("b_to_a", link.b_to_a)) if name in each_direction(way)]
        windows[step.label] = bfd_detection_window_ns(
            bfd.interval_ns, bfd.multiplier, min(max(0, p.delay_ns - p.jitter_ns) for p in cut),
            min(p.delay_ns + p.jitter_ns for p in cut))
    return windows


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def failover_metrics(
    steps: Sequence[Step],
    route_events: Sequence[RouteEvent],
    *,
    traces_before: dict[str, Trace | None] | None = None,
    traces_after: dict[str, Trace | None] | None = None,
    outages_ns: dict[str, int | None] | None = None,
    state_events: Sequence[StateEvent] = (),
    bfd_windows_ns: dict[str, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """`routing.<label>.<metric>` for every step (see the module docstring).

    `bfd_windows_ns`: per cut or flap step, `bfd_detection_window_ns` for the
    link cut (none without BFD: the BFD figures are then None).
    """
    bfd_windows_ns = bfd_windows_ns or {}
    traces_before = traces_before or {}
    traces_after = traces_after or {}
    outages_ns = outages_ns or {}
    out: dict[str, Any] = {}
    down_before: dict[str, Trace | None] = {}   # link -> the path before its last cut
    for step in steps:
        base = f"{METRIC_PREFIX}.{step.label}"
        inside = [e.t_ns for e in route_events if step.t_ns <= e.t_ns < step.end_ns]
        detected = first_state_change(step, state_events)
        out[f"{base}.detection_ms"] = (detected.t_ns - step.t_ns) / 1e6 if detected else None
        out[f"{base}.detected_by"] = describe(detected) if detected else None
        window = bfd_windows_ns.get(step.label) if step.kind in BFD_CUT_KINDS else None
        out[f"{base}.bfd_expected_ms"] = window[1] / 1e6 if window else None
        out[f"{base}.bfd_expected_min_ms"] = window[0] / 1e6 if window else None
        # no state change logged in the whole step is a detection outside the window too
        out[f"{base}.detection_in_bfd_window"] = (detected is not None and window[0] - BFD_LOG_SLACK_NS
                                                  <= detected.t_ns - step.t_ns <= window[1]) if window else None
        out[f"{base}.first_route_ms"] = (min(inside) - step.t_ns) / 1e6 if inside else None
        out[f"{base}.convergence_ms"] = (max(inside) - step.t_ns) / 1e6 if inside else None
        out[f"{base}.route_changes"] = float(len(inside))
        outage = outages_ns.get(step.label)
        out[f"{base}.outage_ms"] = outage / 1e6 if outage is not None else None
        before, after = traces_before.get(step.label), traces_after.get(step.label)
        out[f"{base}.path_before"] = list(before.path) if before else None
        out[f"{base}.path_after"] = list(after.path) if after else None
        out[f"{base}.path_changed"] = (before.path != after.path) if before and after else None
        out[f"{base}.rtt_before_ms"] = _median(before.rtt_ms) if before else None
        out[f"{base}.rtt_after_ms"] = _median(after.rtt_ms) if after else None
        if step.kind == "cut":
            down_before[step.link] = before
        if step.kind in ("restore", "flap"):
            reference = before if step.kind == "flap" else down_before.get(step.link)
            out[f"{base}.reverts_on_restore"] = (after.path == reference.path) if after and reference else None
    return out


#: a BFD session going down this soon after a routing protocol's neighbour change caused
#: it: far below any hello or dead timer (seconds), above a log stamp delayed by a busy CPU
CAUSE_WINDOW_NS = 100_000_000


def first_state_change(step: Step, state_events: Sequence[StateEvent]) -> StateEvent | None:
    """The earliest logged protocol state change in the step's window, if any,
    named after BFD when BFD brought it about.

    Each daemon stamps a change when it writes its log line: a bfdd
    descheduled on a busy CPU can stamp its session's down after ospfd
    stamped the neighbour loss that down caused (seen under stress-ng: FRR's
    "... -> Deleted" first). An OSPF or BGP neighbour change within
    CAUSE_WINDOW_NS before a BFD down was
    brought down by BFD (their own timers take seconds): the detection keeps
    the earliest stamp and is named after the BFD event.
    """
    inside = sorted((e for e in state_events if step.t_ns <= e.t_ns < step.end_ns), key=lambda e: e.t_ns)
    if not inside:
        return None
    first = inside[0]
    if first.kind != "bfd":
        for event in inside[1:]:
            if event.t_ns - first.t_ns > CAUSE_WINDOW_NS:
                break
            if event.kind == "bfd" and event.state == "down":
                return replace(event, t_ns=first.t_ns)
    return first


def describe(event: StateEvent) -> str:
    """"bfd sumgait 198.18.0.9 down": protocol, router, peer, new state."""
    return f"{event.kind} {event.router} {event.peer} {event.state}"


def route_marks(steps: Sequence[Step], route_events: Sequence[RouteEvent]) -> list[tuple[int, str, int]]:
    """Per step window and router, its first route change: (t_ns, router, changes in the window)."""
    marks = []
    for step in steps:
        first: dict[str, list[int]] = {}
        for e in route_events:
            if step.t_ns <= e.t_ns < step.end_ns:
                first.setdefault(e.router, []).append(e.t_ns)
        marks += [(min(times), router, len(times)) for router, times in first.items()]
    before = min((s.t_ns for s in steps), default=None)
    if before is not None:   # changes before the first step (none expected once converged)
        early: dict[str, list[int]] = {}
        for e in route_events:
            if e.t_ns < before:
                early.setdefault(e.router, []).append(e.t_ns)
        marks += [(min(times), router, len(times)) for router, times in early.items()]
    return sorted(marks)


def step_windows(applied: Sequence[tuple[str, str, str, int]], end_ns: int) -> list[Step]:
    """Steps from (label, kind, link, applied t_ns) in time order: each window ends at the next step."""
    steps = []
    for i, (label, kind, link, t_ns) in enumerate(applied):
        nxt = applied[i + 1][3] if i + 1 < len(applied) else end_ns
        steps.append(Step(label, kind, link, t_ns, max(nxt, t_ns)))
    return steps
