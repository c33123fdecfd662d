"""Probe stream metrics: pure functions over a receiver's records and a sender's summary.

Definitions (times are CLOCK_REALTIME ns, as stamped by sender and receiver):

- `sent`: probes the sender sent (its summary); sequence numbers are 0..sent-1.
- `received`: unique sequence numbers received; `duplicates`: copies beyond the first.
  Only sequence numbers 0..sent-1 count: anything else is a probe a flipped
  bit made unrecognisable, counted with the ones the receiver refused
  (`corrupted_count`; the `corrupted` metric where TRAFFIC_METRICS has it),
  and, like them, lost.
- `loss_pct`: 100 (sent - received) / sent.
- `loss_outside_events_pct`: the same among probes whose send time lies outside
  every event window [start, end) (absolute ns; the caller pads a window by
  what it needs, e.g. a cut's window starts one OWD early). A lost probe's
  send time is interpolated between the received neighbours in sequence
  order (exact while the sender keeps its schedule; `interval_ns` steps
  past the first/last received probe).
- `owd_*_ms`: one-way delay recv_ns - send_ns of first copies; `owd_p99_ms` is
  the nearest-rank percentile (the ceil(0.99 n)-th smallest); median is the
  mean of the middle two for even n.
- `jitter_ms`: RFC 3550 interarrival jitter over first copies in arrival order:
  D = (R_i - R_{i-1}) - (S_i - S_{i-1}), J += (|D| - J) / 16, J starts at 0.
  Its last value weighs the stream's last ~70 packets (a point estimate).
- `jitter_mean_ms`: the mean of |D| over the whole stream, the quantity J
  estimates (RFC 3550 6.4.1), but over every pair instead of the last ~70, so
  its sampling error is ~1/25 of J's over 40,000 probes.
- `reordered`: RFC 4737 reordered packets: first copies whose sequence number is
  lower than the highest one received before them.
- `loss_burst_mean`: mean length, in probes, of the runs of consecutive lost
  sequence numbers among 0..sent-1 (0 when nothing is lost).
- `longest_gap_ms`: over first copies sorted by sequence number, for each pair
  of consecutive received probes with lost probes between them: the time
  between their send times minus one interval (= the stretch of the stream
  nobody saw, measured at the sender); leading and trailing losses count as
  (number lost) x interval. 0 when nothing was lost. A sender stall is not
  a gap (it is the summary's `skipped`).

A metric with no data (nothing sent or received) is None.
"""

from __future__ import annotations

import bisect
import math
import statistics
from typing import Any, Sequence

from emulator.scenario.scenario import TRAFFIC_METRICS
from emulator.traffic.probe import ProbeRecords

PROBE_METRICS = TRAFFIC_METRICS["probe"]
MAX_OWD_POINTS = 5000


def _first_copies(records: Any) -> list[tuple[int, int, int]]:
    """(seq, send_ns, recv_ns) of each sequence number's first arrival, in arrival order."""
    seen: set[int] = set()
    first = []
    for seq, sent, got in zip(records.seq, records.send_ns, records.recv_ns):
        if seq in seen:
            continue
        seen.add(seq)
        first.append((seq, sent, got))
    return first


def _in_stream(records: Any, sent: int) -> Any:
    """`records` without the entries whose sequence number is outside 0..sent-1
    (the same object when there are none: the usual case costs one pass)."""
    if all(0 <= seq < sent for seq in records.seq):
        return records
    keep = [i for i, seq in enumerate(records.seq) if 0 <= seq < sent]
    return ProbeRecords([records.seq[i] for i in keep], [records.send_ns[i] for i in keep],
                        [records.recv_ns[i] for i in keep], getattr(records, "corrupted", 0))


def corrupted_count(records: Any, sent: int) -> int:
    """Datagrams of the stream that arrived damaged: those the receiver refused
    (`records.corrupted`) and recorded ones with a sequence number outside 0..sent-1."""
    strays = sum(1 for seq in records.seq if not 0 <= seq < sent)
    return int(getattr(records, "corrupted", 0)) + strays


def estimate_send_times(records: Any, sent: int, interval_ns: int, first_ns: int | None = None) -> list[int]:
    """The send time of every probe 0..sent-1: stamped for received ones, interpolated for lost ones.

    Lost probes between two received ones are spread evenly between their
    send times; before the first received one they step back by
    `interval_ns` (from `first_ns`, the summary's, when given, as the time of
    seq 0); after the last received one they step forward by `interval_ns`.
    """
    known = {seq: sent_ns for seq, sent_ns, _ in _first_copies(records) if 0 <= seq < sent}
    if first_ns is not None and sent > 0 and 0 not in known:
        known[0] = first_ns
    times = [0] * sent
    if not known:
        base = first_ns or 0
        return [base + k * interval_ns for k in range(sent)]
    anchors = sorted(known)
    first = anchors[0]
    for k in range(first + 1):
        times[k] = known[first] - (first - k) * interval_ns
    for lo, hi in zip(anchors, anchors[1:]):
        t_lo, t_hi = known[lo], known[hi]
        for k in range(lo, hi + 1):
            times[k] = t_lo + (t_hi - t_lo) * (k - lo) // (hi - lo)
    last = anchors[-1]
    for k in range(last, sent):
        times[k] = known[last] + (k - last) * interval_ns
    return times


def _outside(t: int, windows: Sequence[tuple[int, int]]) -> bool:
    return all(not (start <= t < end) for start, end in windows)


def disturbance_windows(spans: Sequence[tuple[int, int]], route_changes_ns: Sequence[int], *,
                        lead_in_ns: int, recovery_ns: int, settle_ns: int) -> list[tuple[int, int]]:
    """The windows `loss_outside_events_pct` leaves out: one per outage span (start, end).

    A window starts `lead_in_ns` before the span (probes already on their way
    die at the cut) and ends `recovery_ns` after it, or, with dynamic routing,
    `settle_ns` after the last kernel route change that follows the span's
    start and precedes the next span's start, if that is later: a route that
    swings back to the restored link only after the routing protocol's own
    timers (an SPF tick, MinLSInterval) may lose probes to a transient loop,
    and that loss is the event's doing, not the links'.
    """
    starts = sorted(start for start, _ in spans)
    windows = []
    for start, end in spans:
        later = [s for s in starts if s > start]
        horizon = later[0] if later else None
        caused = [t for t in route_changes_ns if t >= start and (horizon is None or t < horizon)]
        stop = end + recovery_ns
        if caused:
            stop = max(stop, max(caused) + settle_ns)
        windows.append((start - lead_in_ns, stop))
    return windows


def nearest_rank(sorted_values: Sequence[Any], fraction: float) -> Any:
    """The nearest-rank percentile: the ceil(fraction * n)-th smallest of sorted values."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def gap_pacing_error_ns(records: Any, sent: int, interval_ns: int, late_events: Sequence[Sequence[int]]) -> int:
    """How much the sender's own lateness can have lengthened the longest gap (ns).

    A gap (`longest_gap_ms`) is read between the send stamps of the received
    probes around lost ones, so a sender that left probe j late by L, for any
    j after the gap's first probe up to its last, made that gap L longer.
    The largest such sum over the gaps, from the sender's `late_events`
    ([seq, ns late] of every probe that left over an interval late), plus one
    interval for the lateness below that which no event records.
    """
    received = sorted({seq for seq, _, _ in _first_copies(_in_stream(records, sent))})
    events = sorted((int(seq), int(late)) for seq, late in late_events)
    seqs = [seq for seq, _ in events]
    total = [0]
    for _, late in events:
        total.append(total[-1] + late)
    worst = 0
    for q0, q1 in zip(received, received[1:]):
        if q1 - q0 > 1:   # lateness of the probes q0+1 .. q1
            worst = max(worst, total[bisect.bisect_right(seqs, q1)] - total[bisect.bisect_right(seqs, q0)])
    return worst + interval_ns


def spacing_error_mean_ns(records: Any, sent: int, interval_ns: int) -> float | None:
    """The mean |(S_i - S_(i-1)) - (seq_i - seq_(i-1)) x interval| over the pairs
    of consecutive received probes in arrival order (ns): how far, on average,
    the sender's own pacing moved the spacing of the pairs `jitter_mean_ms`
    averages |D| over. None under two received probes."""
    first = _first_copies(_in_stream(records, sent))
    if len(first) < 2:
        return None
    total = sum(abs((s1 - s0) - (q1 - q0) * interval_ns) for (q0, s0, _), (q1, s1, _) in zip(first, first[1:]))
    return total / (len(first) - 1)


def mean_abs_ipdv_ms(pairs: Sequence[tuple[int, int]]) -> float | None:
    """The mean of |D| = |(R_i - R_{i-1}) - (S_i - S_{i-1})| over consecutive
    (send ns, receive ns) pairs in arrival order, ms; None under two packets."""
    if len(pairs) < 2:
        return None
    total = sum(abs((r1 - r0) - (s1 - s0)) for (s0, r0), (s1, r1) in zip(pairs, pairs[1:]))
    return total / (len(pairs) - 1) / 1e6


def network_owd(first: dict[str, list[int]], last: dict[str, list[int]]) -> dict[str, float | None]:
    """The emulated network's own one-way delay of each probe, from the engine's
    stamps: its arrival at the source host's link (`first`: seq and t_ns lists)
    to its release onto the target host's link (`last`), so without the hosts'
    stacks. `net_owd_min/median/p99/max_ms` over the probes stamped at both
    ends (the first copy of each at either end), and `net_jitter_mean_ms`, the
    mean |D| of those probes in release order (as `jitter_mean_ms`, without
    the hosts' stacks); None without any."""
    arrived: dict[int, int] = {}
    for seq, t in zip(first["seq"], first["t_ns"]):
        arrived.setdefault(seq, t)
    released: dict[int, int] = {}
    for seq, t in zip(last["seq"], last["t_ns"]):
        released.setdefault(seq, t)
    both = sorted((released[seq], arrived[seq]) for seq in released if seq in arrived)
    delays = sorted(out - into for out, into in both)
    names = ("net_owd_min_ms", "net_owd_median_ms", "net_owd_p99_ms", "net_owd_max_ms")
    if not delays:
        return dict.fromkeys(names + ("net_jitter_mean_ms",))
    values = (delays[0], statistics.median(delays), nearest_rank(delays, 0.99), delays[-1])
    result: dict[str, float | None] = {name: value / 1e6 for name, value in zip(names, values)}
    result["net_jitter_mean_ms"] = mean_abs_ipdv_ms([(into, out) for out, into in both])
    return result


def analyze_probes(records: Any, sent: int, interval_ns: int, *,
                   event_windows: Sequence[tuple[int, int]] = ()) -> dict[str, float | None]:
    """Every metric of TRAFFIC_METRICS["probe"] for one stream (see the module docstring)."""
    result: dict[str, float | None] = dict.fromkeys(PROBE_METRICS)
    if "corrupted" in result:
        result["corrupted"] = float(corrupted_count(records, sent))
    records = _in_stream(records, sent)
    first = _first_copies(records)
    unique = len(first)
    result["sent"] = float(sent)
    result["received"] = float(unique)
    result["duplicates"] = float(len(records.seq) - unique)
    if sent > 0:
        result["loss_pct"] = 100.0 * (sent - unique) / sent
        received_seqs = {seq for seq, _, _ in first}
        times = estimate_send_times(records, sent, interval_ns)
        outside = [k for k in range(sent) if _outside(times[k], event_windows)]
        runs, run = [], 0
        for k in range(sent):
            if k in received_seqs:
                if run:
                    runs.append(run)
                run = 0
            else:
                run += 1
        if run:
            runs.append(run)
        if "loss_burst_mean" in result:
            result["loss_burst_mean"] = sum(runs) / len(runs) if runs else 0.0
        if outside:
            lost_outside = sum(1 for k in outside if k not in received_seqs)
            result["loss_outside_events_pct"] = 100.0 * lost_outside / len(outside)
    if not first:
        return result

    owds = sorted(got - sent_ns for _, sent_ns, got in first)
    result["owd_min_ms"] = owds[0] / 1e6
    result["owd_max_ms"] = owds[-1] / 1e6
    result["owd_mean_ms"] = sum(owds) / len(owds) / 1e6
    result["owd_median_ms"] = statistics.median(owds) / 1e6
    result["owd_p99_ms"] = nearest_rank(owds, 0.99) / 1e6

    jitter = 0.0
    for (_, s0, r0), (_, s1, r1) in zip(first, first[1:]):
        d = (r1 - r0) - (s1 - s0)
        jitter += (abs(d) - jitter) / 16
    result["jitter_ms"] = jitter / 1e6
    if "jitter_mean_ms" in result:
        result["jitter_mean_ms"] = mean_abs_ipdv_ms([(s, r) for _, s, r in first])

    reordered, highest = 0, -1
    for seq, _, _ in first:
        if seq < highest:
            reordered += 1
        else:
            highest = seq
    result["reordered"] = float(reordered)

    by_seq = sorted((seq, sent_ns) for seq, sent_ns, _ in first)
    gap = 0
    for (q0, t0), (q1, t1) in zip(by_seq, by_seq[1:]):
        if q1 - q0 > 1:
            gap = max(gap, t1 - t0 - interval_ns)
    if sent > 0:
        gap = max(gap, by_seq[0][0] * interval_ns, (sent - 1 - by_seq[-1][0]) * interval_ns)
    result["longest_gap_ms"] = gap / 1e6
    return result


def probe_series(records: Any, start_ns: int, *, window_ns: int = 100_000_000,
                 sent_times: Sequence[int] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Time series for plots; t_s is seconds since `start_ns`.

    `owd_ms`: (send time, OWD) of each first copy, in send order; above
    MAX_OWD_POINTS it keeps, per bucket of consecutive probes, the lowest
    and the highest OWD (in time order), so spikes and floors both survive.
    `loss_pct`: per window of `window_ns` by send time, 100 x lost / sent
    (windows in which nothing was sent are left out). It needs the send time
    of every sent probe, `sent_times` (index = sequence number; e.g.
    `estimate_send_times(records, summary["sent"], summary["interval_ns"],
    summary["first_ns"])`); without it the loss series is empty.
    """
    if sent_times is not None:
        records = _in_stream(records, len(sent_times))  # a damaged sequence number is no point in time
    first = sorted(_first_copies(records), key=lambda r: r[1])
    points = [((sent_ns - start_ns) / 1e9, (got - sent_ns) / 1e6) for _, sent_ns, got in first]
    if len(points) > MAX_OWD_POINTS:
        bucket = math.ceil(len(points) / (MAX_OWD_POINTS // 2))
        kept: list[tuple[float, float]] = []
        for i in range(0, len(points), bucket):
            chunk = points[i:i + bucket]
            low = min(range(len(chunk)), key=lambda j: chunk[j][1])
            high = max(range(len(chunk)), key=lambda j: chunk[j][1])
            kept.extend(chunk[j] for j in sorted({low, high}))
        points = kept

    loss: list[tuple[float, float]] = []
    if sent_times is not None:
        received = {seq for seq, _, _ in first}
        sent_in: dict[int, int] = {}
        lost_in: dict[int, int] = {}
        for seq, t in enumerate(sent_times):
            w = (t - start_ns) // window_ns
            sent_in[w] = sent_in.get(w, 0) + 1
            if seq not in received:
                lost_in[w] = lost_in.get(w, 0) + 1
        loss = [(w * window_ns / 1e9, 100.0 * lost_in.get(w, 0) / n) for w, n in sorted(sent_in.items())]
    return {"owd_ms": points, "loss_pct": loss}
