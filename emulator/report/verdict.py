"""Three verdicts: an assertion passes, fails, or is inconclusive because the
run's own error could have flipped it. Pure functions.

A CI verdict is only worth having when a red run means the network is
wrong, not the machine (FRR's topotests loosened their BFD timers because
runs "fail on a loaded CI": FRR PR #9995, #15682, #8922). So each assertion
is judged against what the run measured about itself (emulator.measure.
fidelity) during the run:

- timing metrics (names ending in _ms, _us, _s) have a margin: how far the
  measured value lies inside its bound (for a pass) or outside it (for a
  fail), in the metric's unit. The emulator's error for the metric is
  - for a delay (one-way delay, RTT, jitter): the engine's release
    lateness that moves that statistic: p50 for a minimum, median or mean
    (they move with the typical release), p99 for a p99, the maximum for a
    maximum, summed over the hops of the metric's path (Fidelity.paths: a
    frame can be late at each; one hop's when the path is not known); for
    an RFC 3550 jitter (a running mean of |D| with gain 1/16) twice the
    largest lateness at the stream's end, whose packets its last value
    weighs (the p99 when that is not known); for the mean jitter over the
    stream (mean |D|) twice the mean lateness along the path. Lateness
    only ever adds delay, so only the upper bound can be crossed by it: a
    delay below its lower bound is a plain fail, and a pass is only in
    doubt when it lies within the error of the upper bound; a jitter can
    be moved either way (held frames leave bunched), so both bounds count;
  - for a span read from the probes (a gap, an outage, a loss- or
    rate-derived convergence time): the longest engine stall plus the
    probe sender's worst pacing error (its packets were late either way);
    for a stream's longest gap, where the sender listed its late probes,
    only the lateness of the probes inside a gap counts (a gap is read
    between send stamps: a sender late elsewhere moved no gap);
  - for a span the routing daemons report (detection, convergence, first
    route change): the longest engine stall (their packets crossed it);
  - for the timeline's cut total: twice the largest delay of the engine's
    loop in applying a step (the cut itself is exact: judged on arrival
    stamps); the application error itself is measured, not judged.
  When that error reaches the margin the assertion is inconclusive: the
  emulator could have moved the value across the bound. An assertion's
  `tolerance` (a duration in the scenario file) caps the error it accepts:
  above it the assertion is inconclusive even far from its bound.
- a failing timing assertion is also inconclusive when the host stole more
  than STEAL_LIMIT_PCT of the CPU in any sampling interval, or when tasks
  waited for a CPU more than PRESSURE_LIMIT_PCT of the time (the nodes'
  stacks and the traffic tools then run late, which no engine figure shows).
- a failing loss or count assertion is inconclusive when the kernel dropped
  frames at the engine's sockets before it could see them (a loss the model
  never drew), and a failing throughput assertion when the host stole CPU
  beyond STEAL_LIMIT_PCT.
- a routing metric read from a failover trace that began too late to trust
  (a starved CPU; the trace is discarded rather than read across the step it
  was to precede) or that no router answered is inconclusive, not a fail;
  so is a failing one when a trace stopped short of its target while the
  host was busy (host_reason): its answers may have been lost to the host;
- any other non-numeric assertion (a path, a boolean) and anything else the
  run did not measure keep their plain pass/fail.
A run is `fail` when any assertion fails or the run had errors, else
`inconclusive` when any is, else `pass` (exit codes 1, 3, 0).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulator.measure.fidelity import Fidelity

from emulator.measure.fidelity import STEAL_LIMIT_PCT, host_reason
from emulator.report.report import AssertionResult
from emulator.scenario.scenario import unit_scale_ms

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"

#: metric name parts that mark a delay (per-packet timing) metric
DELAY_WORDS = ("owd", "rtt", "jitter")
#: metric name parts that mark a count or loss metric
COUNT_WORDS = ("loss", "lost", "drops", "received", "sent", "reordered", "duplicates", "packets", "route_changes")


def margin(value: float, low: float | None, high: float | None) -> float:
    """Distance of `value` to the nearest bound: inside for a pass, outside for a fail."""
    distances = [abs(value - b) for b in (low, high) if b is not None and math.isfinite(b)]
    return min(distances) if distances else math.inf


#: routing metrics read from the failover traces (emulator.routing.failover): unmeasured
#: when a trace began too late to trust (Fidelity.late_traces)
TRACED = ("path_before", "path_after", "path_changed", "rtt_before_ms", "rtt_after_ms", "reverts_on_restore")
#: span metrics the routing daemons measure (their packets cross the engine; no probe involved)
DAEMON_SPANS = ("detection", "convergence_ms", "first_route", "bfd_expected")


def is_delay(metric: str) -> bool:
    """A per-packet delay metric (one-way delay, RTT, jitter)."""
    return any(word in metric.rsplit(".", 1)[-1] for word in DELAY_WORDS)


def path_key(metric: str) -> str:
    """The key of a delay metric's path in Fidelity.paths: the traffic stream's name
    (`probe` for probe.owd_median_ms), or for a routing step's RTT the step's traced
    path (`routing.cut1.before` for routing.cut1.rtt_before_ms)."""
    parts = metric.split(".")
    if parts[0] == "routing" and len(parts) == 3 and parts[2].startswith("rtt_"):
        return f"routing.{parts[1]}.{parts[2].split('_')[1]}"
    return parts[0]


def emulator_error_ms(metric: str, fidelity: "Fidelity", above: bool = False) -> tuple[float, str]:
    """How far the emulator's own timing could have moved `metric` (ms), and from what;
    `above`: the value lies over its upper bound (what a late release could cause)."""
    name = metric.rsplit(".", 1)[-1]
    if is_delay(metric):
        # the statistic decides which lateness can move it: a minimum, median or
        # mean moves with the typical release (p50), a p99 or a jitter with the
        # tail (p99), a maximum with the worst; summed along the metric's path
        # when the run knows it (a frame is late at every hop), else one hop's
        path = fidelity.paths.get(path_key(metric))
        where = f" over {int(path['hops'] or 0)} hops" if path else ""
        figures = path or {"lateness_p50_us": fidelity.lateness_p50_us,
                           "lateness_p99_us": fidelity.lateness_p99_us, "lateness_max_us": fidelity.lateness_max_us}
        if name.endswith("max_ms"):
            return (figures["lateness_max_us"] or 0.0) / 1000, f"release lateness max{where}"
        if "jitter_mean" in name and path and path.get("lateness_mean_us") is not None:
            # the mean of |D| over the stream: lateness L >= 0 moves each D by
            # L_i - L_(i-1), at most the larger of the two, so the mean by at most
            # twice the mean lateness along the path; and by at most the mean
            # |L_i - L_(i-1)| of the probes, which the engine's sum of lateness
            # changes over all releases bounds (a stall's burst adds ~2x its length
            # there, its length squared over the interval to the mean lateness)
            # The model's |D| assumes the stream's own spacing: a pair sent δ off
            # it changes its |D| by at most δ (only a probe held behind the one
            # before it sees the spacing at all), so the sender's mean spacing
            # error adds to either.
            error = 2 * float(path["lateness_mean_us"] or 0.0) / 1000
            words = f"twice the mean release lateness{where}"
            change = path.get("lateness_change_per_pair_us")
            if change is not None and change / 1000 < error:
                error, words = float(change) / 1000, f"the release lateness change per probe pair{where}"
            spacing = fidelity.pacing.get(path_key(metric), {}).get("spacing_error_mean_ms")
            if spacing is not None:
                error, words = error + spacing, words + " + the sender's mean spacing error"
            return error, words
        if "jitter" in name and path and path.get("lateness_end_max_us") is not None:
            # RFC 3550 jitter is a running mean of |D| with gain 1/16: its last value
            # weighs the last 71 packets 99 %, each |D| moved by at most the lateness
            # of two packets; the 1 % before, by at most twice the path's worst
            return (2 * float(path["lateness_end_max_us"] or 0.0) + 0.02 * float(path["lateness_max_us"] or 0.0)) / 1000, \
                f"twice the release lateness at the stream's end{where}"
        if "p99" in name or "jitter" in name:
            return (figures["lateness_p99_us"] or 0.0) / 1000, f"release lateness p99{where}"
        typical = figures["lateness_p50_us"] or figures["lateness_p99_us"] or 0.0
        if above and "median" in name and path and path.get("lateness_median_bound_us") is not None:
            # over its upper bound, a median may have been pushed there by hops late
            # at different times, which their p50s summed miss: the union bound on the
            # path's median (fidelity.path_lateness) is the error that could have
            # done it. Lateness only adds delay, so a value inside keeps the p50 rule.
            bound = float(path["lateness_median_bound_us"] or 0.0)
            if bound > typical:
                hops = int(path["hops"] or 0)
                return bound / 1000, (f"the path's median release lateness bound (each of {hops} hops' "
                                      f"p{100 - 50 / max(hops, 1):.1f}, summed)")
        if above and path and "stall_in_window_ms" in path:
            # a routing step's RTT is the median of a trace's few echoes (3, 20 ms
            # apart), not of a stream, so the run-wide p50 misses what happened in
            # the 0.1 s they were in flight. A frame waits out an engine stall at
            # most once per stall (it sits at one hop at a time): its error is the
            # typical lateness along the path plus every stall in that window.
            # Lateness only adds delay, so this can only have pushed a value over
            # its upper bound: a value inside it keeps the p50 rule below.
            # The trace stamps its answers in user space: the time it waited for a
            # CPU meanwhile (its threads' run-queue wait) lengthens the RTT read too.
            waited = float(path.get("trace_wait_ms") or 0.0)
            stalled = path["stall_in_window_ms"]
            if stalled is not None:
                if stalled > 0 or waited > 0:
                    return typical / 1000 + float(stalled) + waited, \
                        (f"release lateness p50{where} + the engine's stalls while the trace's echoes were "
                         "in flight + the trace's wait for a CPU")
            elif (window_max := path.get("lateness_window_max_us")) is not None:
                # the stall ring no longer reaches back: the worst release in those
                # time bins at every hop bounds it (loosely: each hop's worst, summed)
                return float(window_max) / 1000 + waited, \
                    f"release lateness max while the trace's echoes were in flight{where} + the trace's wait for a CPU"
        return typical / 1000, f"release lateness p50{where}"
    if metric == "events.cut_total_ms":
        return 2 * (fidelity.apply_error_max_us or 0.0) / 1000, "twice the timeline's application error"
    if metric == "events.apply_error_max_us":
        return 0.0, ""
    if any(word in name for word in DAEMON_SPANS) or metric.endswith(".convergence_s"):
        return fidelity.stall_max_ms, "engine stall"
    gap_late = fidelity.pacing.get(metric.split(".", 1)[0], {}).get("gap_late_max_ms")
    if name == "longest_gap_ms" and gap_late is not None:
        # the gap is read between send stamps: only the sender's lateness inside
        # a gap lengthens it, and the run knows which probes left late
        return fidelity.stall_max_ms + gap_late, "engine stall + the sender's lateness inside a gap"
    return fidelity.stall_max_ms + fidelity.pacing_late_max_ms, "engine stall + probe pacing error"


def judge(result: "AssertionResult", fidelity: "Fidelity | None") -> tuple[str, str]:
    """The verdict on one assertion and, when inconclusive, why."""
    plain = PASS if result.passed else FAIL
    value = result.measured
    if fidelity is not None and value is None and result.metric.endswith(TRACED):
        if fidelity.late_traces:
            late = ", ".join(f"{key} {ms:.0f} ms" for key, ms in sorted(fidelity.late_traces.items()))
            return INCONCLUSIVE, f"not measured: failover traces began late on a busy host ({late})"
        if fidelity.unanswered_traces:
            return INCONCLUSIVE, (f"not measured: failover traces got no answer on a busy host "
                                  f"({', '.join(fidelity.unanswered_traces)})")
    if (fidelity is not None and not result.passed and result.metric.endswith(TRACED)
            and fidelity.incomplete_traces and host_reason(fidelity)):
        # a trace that stopped short may have lost its answers to the busy host,
        # not to the network: its path is no evidence either way
        return INCONCLUSIVE, (f"failover traces {', '.join(fidelity.incomplete_traces)} did not reach their "
                              f"target and {host_reason(fidelity)}")
    if fidelity is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return plain, ""
    name = result.metric.rsplit(".", 1)[-1]
    scale = unit_scale_ms(result.metric)
    if scale is not None:
        above = result.high is not None and float(value) > result.high
        error_ms, source = emulator_error_ms(result.metric, fidelity, above)
        error = error_ms * scale
        if is_delay(result.metric):
            floor = (fidelity.paths.get(path_key(result.metric)) or {}).get("floor_ms")
            if (floor is not None and "jitter" not in name and result.high is not None
                    and floor * scale > result.high):
                # the link model alone gives every packet more delay than the bound
                # allows: no machine, however busy, made this value fail
                return plain, ""
            if "jitter" in name:
                # a late packet can shrink a |D| as well as grow it (held frames
                # leave bunched): a jitter can be moved across either bound
                room = margin(float(value), result.low, result.high)
            else:
                # lateness only adds delay: only the upper bound can have been crossed by it
                below = result.low is not None and float(value) < result.low
                room = math.inf if below else margin(float(value), None, result.high)
        else:
            room = margin(float(value), result.low, result.high)
        unit = result.metric.rsplit("_", 1)[-1]
        if error > 0 and error >= room:
            return INCONCLUSIVE, (f"{source} {error:.3g} {unit} >= the {room:.3g} {unit} between "
                                  f"the measured value and the bound")
        if result.tolerance is not None and error > result.tolerance:
            return INCONCLUSIVE, f"{source} {error:.3g} {unit} > the assertion's tolerance {result.tolerance:.3g} {unit}"
        if not result.passed:
            busy = host_reason(fidelity)
            if busy:
                return INCONCLUSIVE, busy
        return plain, ""
    if not result.passed and any(word in name for word in COUNT_WORDS) and fidelity.kernel_drops > 0:
        return INCONCLUSIVE, f"the kernel dropped {fidelity.kernel_drops} frames before the engine saw them"
    if not result.passed and "throughput" in name and fidelity.steal_max_pct > STEAL_LIMIT_PCT:
        return INCONCLUSIVE, f"host CPU steal reached {fidelity.steal_max_pct:.1f} % (limit {STEAL_LIMIT_PCT:g} %)"
    return plain, ""
