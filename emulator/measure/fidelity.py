"""The run's own fidelity: how far the emulator and the host bent the figures.

A testbed on a shared VM is not an ideal network: the engine's loop may
release a frame late, stall (preempted, throttled, frozen), the host may
steal CPU from the VM, the nodes' stacks may wait for a CPU, and the probe
sender may leave late. Every run records these facts (the engine keeps its
own lateness histogram and time bins, its stalls and naps; the host sampler
reads /proc; the probe sender counts its pacing error) and `summarize`
folds them into one `Fidelity` record that the verdict rule
(emulator.report.verdict) judges each assertion against. Pure functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.engine.counters import lateness_bound_us, lateness_change_sum_us, lateness_mean_bound_us
from emulator.measure.host import HostLoad

#: a time bin whose largest release lateness is above this is a "late span"
#: (shaded in the delay plot): 100 µs is twice the p99 wake-up error of a
#: real-time thread on these VMs (cyclictest p99 ~51 µs, DESIGN.md)
LATE_SPAN_US = 100.0
#: steal above this in any sampling interval makes a failing timing assertion inconclusive:
#: 5 % of a vCPU is 50 µs in every ms, the size of the engine's own p99 timing error
STEAL_LIMIT_PCT = 5.0
#: CPU pressure (PSI `some`) above this makes a failing timing assertion inconclusive: at
#: 25 % a runnable task waits for a CPU a quarter of the time, so the nodes' stacks add
#: delay the link model never drew (measured: 0.2-0.4 ms more OWD under a saturating flow)
PRESSURE_LIMIT_PCT = 25.0
#: the lateness histogram's open top bin (>= 16384 µs) counts as its lower edge
LATENESS_CAP_US = 16384.0


@dataclass
class Fidelity:
    """What bent this run's figures, as measured during it."""

    #: engine loop: stalls longer than the threshold (count, longest, total), ms
    stalls: int = 0
    stall_max_ms: float = 0.0
    stall_total_ms: float = 0.0
    stall_threshold_ms: float = 1.0
    #: the most recent stalls: (start s from t0, length ms)
    stall_spans: list[tuple[float, float]] = field(default_factory=list)
    #: forced short sleeps of the real-time loop (sleep budget)
    dozes: int = 0
    #: release lateness over all link directions: p50 and p99 bounds (log2 bin edges) and max, µs
    lateness_p50_us: float | None = None
    lateness_p99_us: float | None = None
    lateness_max_us: float = 0.0
    #: time spans whose largest lateness exceeded LATE_SPAN_US: (start s, end s, max µs)
    late_spans: list[tuple[float, float, float]] = field(default_factory=list)
    #: the largest delay between a timeline step's instant and the engine applying it
    apply_error_max_us: float | None = None
    #: frames the kernel dropped at the engine's sockets before it saw them
    kernel_drops: int = 0
    #: the host over the run (%), and the worst sampling interval's steal
    steal_pct: float = 0.0
    steal_max_pct: float = 0.0
    pressure_pct: float | None = None
    #: probe senders' pacing: the latest a probe left against its slot (ms), how many
    #: left more than one interval late, (`gap_late_max_ms`) the most the sender's
    #: lateness inside one gap between received probes added to it, and
    #: (`spacing_error_mean_ms`) the mean error of the received pairs' spacing, per stream
    pacing: dict[str, dict[str, float]] = field(default_factory=dict)
    #: scheduling of each engine shard as granted (e.g. "SCHED_FIFO 10", or refused)
    policies: list[str] = field(default_factory=list)
    #: release lateness summed along each measured path (a traffic stream's, a routing
    #: step's traced path there and back): {"hops", "lateness_p50_us", "lateness_p99_us",
    #: "lateness_mean_us", "lateness_max_us", "lateness_change_sum_us" and, for a probe stream,
    #: "lateness_change_per_pair_us", for a routing step's path "lateness_window_max_us": the
    #: worst release in the time bins its trace's echoes were in flight, summed over its hops,
    #: and "stall_in_window_ms": the engine's stalls while they were (None: not known)};
    #: a frame is late at every hop it crosses (path_lateness)
    paths: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: failover traces that began too late to trust (key, e.g. "before:cut1" -> ms late)
    late_traces: dict[str, float] = field(default_factory=dict)
    #: failover traces that got no answer at all (not even the first router's)
    unanswered_traces: list[str] = field(default_factory=list)
    #: failover traces that did not reach their target (a broken path, or answers lost on a busy host)
    incomplete_traces: list[str] = field(default_factory=list)

    @property
    def pacing_late_max_ms(self) -> float:
        return max((p["late_max_ms"] for p in self.pacing.values()), default=0.0)

    def problems(self) -> list[str]:
        """Plain words for each fact beyond what the verdict rule tolerates silently."""
        return run_problems(self)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pacing_late_max_ms"] = self.pacing_late_max_ms
        data["problems"] = self.problems()
        return data


def path_lateness(stats: dict[str, Any], hops: list[tuple[str, str]]) -> dict[str, float | None]:
    """Release lateness along a path of link directions (link name, a_to_b | b_to_a):
    each hop's p50, p99, mean (upper bound), max and sum of lateness changes
    summed, since a frame can be late at every hop.

    The sum of per-hop quantiles is the path's quantile when the hops are late
    together (one busy loop serves them all); when they are late apart it can
    fall short of it (nine hops each late by 0.1 ms 40 % of the time: every
    hop's p50 is 0, the path's is 0.4 ms). `lateness_median_bound_us` bounds the
    path's median whatever the hops do: the path is later than the sum of
    each hop's 1 - 1/(2h) quantile only if some hop is later than its own,
    which happens with probability at most h x 1/(2h) = 1/2 (the union bound).
    A two-machine run on a 2-core VM showed the difference: 9 hops' p50s
    summed to 15-21 µs, the probes' engine-stamped median OWD stood 0.26 ms
    higher than on one machine. The log2 bin edges make every figure an
    upper one. A hop with no releases adds nothing; a path with none anywhere
    has None.
    """
    median_quantile = 1 - 1 / (2 * len(hops)) if hops else 0.5
    sums: dict[float, float | None] = {0.5: None, 0.99: None, median_quantile: None}
    late_max = 0.0
    mean: float | None = None
    change: float | None = 0.0
    for name, direction in hops:
        counters = stats[name][direction]
        hop_mean = lateness_mean_bound_us(counters)
        if hop_mean is not None:
            mean = hop_mean if mean is None else mean + hop_mean
        hop_change = lateness_change_sum_us(counters)
        change = None if change is None or hop_change is None else change + hop_change
        for quantile, total in sums.items():
            bound = lateness_bound_us(counters, quantile)
            if bound is not None:
                bound = min(bound, LATENESS_CAP_US)
                sums[quantile] = bound if total is None else total + bound
        late_max += counters["release_lateness"]["max_ns"] / 1e3
    return {"hops": float(len(hops)), "lateness_p50_us": sums[0.5], "lateness_p99_us": sums[0.99],
            "lateness_median_bound_us": sums[median_quantile],
            "lateness_mean_us": mean, "lateness_max_us": late_max,
            "lateness_change_sum_us": change if hops else None}


def window_lateness_us(engine: dict[str, Any], hops: list[tuple[str, str]], start_ns: int, end_ns: int) -> float | None:
    """The largest release lateness in the time bins overlapping [start_ns, end_ns),
    summed over the path's hops (µs); None without time bins."""
    shards = engine.get("shards", [])
    if not shards or not shards[0].get("bin_ns"):
        return None
    epoch, bin_ns = shards[0]["bin_epoch_ns"], shards[0]["bin_ns"]
    first, last = max(0, (start_ns - epoch) // bin_ns), max(0, (end_ns - 1 - epoch) // bin_ns)
    total = 0.0
    for name, direction in hops:
        bins = engine.get("late_bins_us", {}).get(name, {}).get(direction, [])
        total += max((float(v) for v in bins[first:last + 1]), default=0.0)
    return total


def summarize(engine: dict[str, Any], stats: dict[str, Any], host: HostLoad, t0_ns: int,
              pacing: dict[str, dict[str, Any]], apply_error_max_us: float | None,
              paths: dict[str, list[tuple[str, str]]] | None = None,
              windows: dict[str, tuple[int, int]] | None = None,
              floors_ms: dict[str, float] | None = None,
              pairs: dict[str, int] | None = None,
              measured_windows: dict[str, tuple[int, int]] | None = None) -> Fidelity:
    """Fold the engine's fidelity (FastPath.fidelity), its counters (stats), the
    host's load and the probe senders' summaries into one Fidelity; `paths`
    names the link directions of each measured path (path_lateness), `windows`
    the stretch of a stream's end that its jitter estimate weighs most
    (CLOCK_REALTIME ns; `lateness_end_max_us` of its path), `floors_ms` the least
    delay the link model gives each path (`floor_ms`: a delay bound below it
    fails whatever the machine did), `pairs` the consecutive pairs of received
    probes of each probe stream (`lateness_change_per_pair_us`), `measured_windows`
    when a routing step's traced RTTs were measured (CLOCK_REALTIME ns;
    `lateness_window_max_us` of its path)."""
    shards = engine.get("shards", [])
    stall_spans: list[tuple[float, float]] = []
    for shard in shards:
        stall_spans += [((start - t0_ns) / 1e9, length / 1e6) for start, length in shard.get("recent_stalls", [])]
    # lateness: the p99 over every direction's histogram, merged
    merged: dict[str, int] = {}
    late_max_ns = 0
    kernel_drops = 0
    for entry in stats.values():
        for direction in ("a_to_b", "b_to_a"):
            counters = entry[direction]
            for label, count in counters["release_lateness"]["histogram"].items():
                merged[label] = merged.get(label, 0) + count
            late_max_ns = max(late_max_ns, counters["release_lateness"]["max_ns"])
            kernel_drops += counters.get("kernel_drops", 0)
    p50 = lateness_bound_us({"release_lateness": {"histogram": merged}}, 0.5)
    p99 = lateness_bound_us({"release_lateness": {"histogram": merged}}, 0.99)
    return Fidelity(
        stalls=sum(s.get("stalls", 0) for s in shards),
        stall_max_ms=max((s.get("stall_max_ns", 0) for s in shards), default=0) / 1e6,
        stall_total_ms=sum(s.get("stall_total_ns", 0) for s in shards) / 1e6,
        stall_threshold_ms=max((s.get("stall_threshold_ns", 1_000_000) for s in shards), default=1_000_000) / 1e6,
        stall_spans=sorted(stall_spans),
        dozes=sum(s.get("dozes", 0) for s in shards),
        lateness_p50_us=p50 if p50 is None or p50 != float("inf") else LATENESS_CAP_US,
        lateness_p99_us=p99 if p99 is None or p99 != float("inf") else LATENESS_CAP_US,
        lateness_max_us=late_max_ns / 1e3,
        late_spans=late_spans(engine, t0_ns),
        apply_error_max_us=apply_error_max_us,
        kernel_drops=kernel_drops,
        steal_pct=host.steal_pct,
        steal_max_pct=max((s for _, _, s, _ in host.intervals), default=host.steal_pct),
        pressure_pct=host.pressure_pct,
        pacing={name: _pacing_entry(p) for name, p in pacing.items()},
        policies=[str(s.get("policy", "unknown")) for s in shards],
        paths={name: _path_entry(engine, stats, hops, (windows or {}).get(name), (floors_ms or {}).get(name),
                                 (pairs or {}).get(name), (measured_windows or {}).get(name))
               for name, hops in (paths or {}).items()},
    )


def _pacing_entry(summary: dict[str, Any]) -> dict[str, float]:
    entry = {"late_max_ms": summary.get("late_max_ns", 0) / 1e6,
             "late_over_interval": float(summary.get("late_over_interval", 0)),
             "skipped": float(summary.get("skipped", 0))}
    if summary.get("gap_late_max_ns") is not None:
        entry["gap_late_max_ms"] = summary["gap_late_max_ns"] / 1e6
    if summary.get("spacing_error_mean_ns") is not None:
        entry["spacing_error_mean_ms"] = summary["spacing_error_mean_ns"] / 1e6
    return entry


def _path_entry(engine: dict[str, Any], stats: dict[str, Any], hops: list[tuple[str, str]],
                window: tuple[int, int] | None, floor_ms: float | None,
                pairs: int | None = None, measured: tuple[int, int] | None = None) -> dict[str, float | None]:
    entry = path_lateness(stats, hops)
    change = entry.get("lateness_change_sum_us")
    if pairs and change is not None:
        # the probes' own releases are a subsequence of each hop's, so by the
        # triangle inequality their lateness changed by no more, pair by pair
        entry["lateness_change_per_pair_us"] = change / pairs
    if floor_ms is not None:
        entry["floor_ms"] = floor_ms
    if window is not None:
        entry["lateness_end_max_us"] = window_lateness_us(engine, hops, *window)
    if measured is not None:
        entry["lateness_window_max_us"] = window_lateness_us(engine, hops, *measured)
        entry["stall_in_window_ms"] = stalls_in_window_ms(engine, *measured)
    return entry


def stalls_in_window_ms(engine: dict[str, Any], start_ns: int, end_ns: int) -> float | None:
    """The summed length of the engine's stalls (any shard) that overlap [start_ns, end_ns)
    (CLOCK_REALTIME), ms; None when the stall ring no longer reaches back that far."""
    total_ns = 0
    for shard in engine.get("shards", []):
        recent = shard.get("recent_stalls", [])
        if shard.get("stalls", 0) > len(recent) and (not recent or recent[0][0] > start_ns):
            return None     # stalls before the oldest kept one were dropped from the ring
        total_ns += sum(length for start, length in recent if start < end_ns and start + length > start_ns)
    return total_ns / 1e6


def late_spans(engine: dict[str, Any], t0_ns: int, threshold_us: float = LATE_SPAN_US) -> list[tuple[float, float, float]]:
    """Consecutive time bins (any link direction) whose largest lateness exceeds
    `threshold_us`, as (start s from t0, end s, max µs), merged."""
    shards = engine.get("shards", [])
    if not shards or not shards[0].get("bin_ns"):
        return []
    epoch, bin_ns = shards[0]["bin_epoch_ns"], shards[0]["bin_ns"]
    worst: dict[int, float] = {}
    for directions in engine.get("late_bins_us", {}).values():
        for bins in directions.values():
            for b, us in enumerate(bins):
                if us > threshold_us:
                    worst[b] = max(worst.get(b, 0.0), float(us))
    spans: list[tuple[float, float, float]] = []
    for b in sorted(worst):
        start = (epoch + b * bin_ns - t0_ns) / 1e9
        end = start + bin_ns / 1e9
        if spans and abs(spans[-1][1] - start) < 1e-9:
            spans[-1] = (spans[-1][0], end, max(spans[-1][2], worst[b]))
        else:
            spans.append((start, end, worst[b]))
    return spans


def host_reason(fidelity: Fidelity) -> str:
    """Why the host could have bent a timing, or "" when it was quiet enough."""
    if fidelity.steal_max_pct > STEAL_LIMIT_PCT:
        return f"host CPU steal reached {fidelity.steal_max_pct:.1f} % (limit {STEAL_LIMIT_PCT:g} %)"
    if fidelity.pressure_pct is not None and fidelity.pressure_pct > PRESSURE_LIMIT_PCT:
        return (f"tasks waited for a CPU {fidelity.pressure_pct:.0f} % of the run "
                f"(limit {PRESSURE_LIMIT_PCT:g} %): the nodes' stacks ran late")
    return ""


def run_problems(fidelity: Fidelity) -> list[str]:
    """Each fidelity fact beyond what the verdict rule tolerates silently, in words."""
    problems = []
    if fidelity.stalls:
        problems.append(f"engine stalled {fidelity.stalls}x (longest {fidelity.stall_max_ms:.1f} ms, "
                        f"threshold {fidelity.stall_threshold_ms:g} ms)")
    if fidelity.late_spans:
        worst = max(us for _, _, us in fidelity.late_spans)
        problems.append(f"releases late by up to {worst:.0f} µs in {len(fidelity.late_spans)} span(s)")
    if fidelity.kernel_drops:
        problems.append(f"{fidelity.kernel_drops} frames dropped by the kernel before the engine saw them")
    busy = host_reason(fidelity)
    if busy:
        problems.append(busy)
    for key, late_ms in sorted(fidelity.late_traces.items()):
        problems.append(f"the failover trace {key} began {late_ms:.0f} ms late (discarded)")
    for key in fidelity.unanswered_traces:
        problems.append(f"the failover trace {key} got no answer, not even from the first router")
    if fidelity.pacing_late_max_ms > 1.0:
        problems.append(f"a probe left {fidelity.pacing_late_max_ms:.1f} ms late")
    refused = [p for p in fidelity.policies if not p.startswith("SCHED_FIFO")]
    if refused:
        problems.append(f"engine without real-time priority: {refused[0]}")
    return problems
