"""IGP data-plane convergence benchmarks of a timeline step, after RFC 6412 and RFC 6413.

Pure functions over the probe streams' records (no system state). RFC 6412
(terminology) and RFC 6413 (methodology) measure convergence as a black box,
from a stream offered at a fixed rate: our probe streams are such streams
(sequence number and send stamp in every probe, sent every `interval_ns`, so
the Offered Load is 1 / interval). Per step, over the probes *sent* in the
step's probe window (`probe_windows`):

- `loss_derived_ms`: RFC 6412 §3.6.4 Loss-Derived Convergence Time by the
  Loss-Derived Method (§3.5.2; RFC 6413 §6.1): Convergence Packet Loss
  (§3.7.2, probes lost) / Offered Load = lost x interval. Its accuracy is one
  probe interval (RFC 6413 §5.7: the time between two packets offered to a
  route is the best any loss-based figure can resolve).
- `loss_of_connectivity_ms`: the Loss of Connectivity Period (RFC 6412 §3.6.5,
  §3.6.6): the longest run of consecutive lost probes x interval, i.e. the
  longest stretch in which nothing was forwarded. `loss_derived_ms` sums every
  run, so the two differ when packets trickle through or the route dips twice.
- `rate_derived_first_ms`, `rate_derived_full_ms`: the Rate-Derived Method
  (RFC 6412 §3.5.1; RFC 6413 §6.2): the forwarding rate per Packet Sampling
  Interval (PSI, §3.7.4). The Convergence Event Instant (§3.2.2) is the start
  of the first PSI whose forwarding rate is below the offered rate; First
  Route Convergence Time (§3.6.2) runs from it to the start of the first later
  PSI back at the offered rate (§3.2.4: with one probe stream the one route's
  convergence); Full Convergence Time (§3.6.1) to the Convergence Recovery
  Instant (§3.2.3): the start of the first PSI after which the rate stays at
  the offered rate for the Sustained Convergence Validation Time (§3.7.5).
  Both instants are PSI starts (the event's at or before the first loss,
  the recovery's after the last), so a time exceeds the span of the loss
  by less than two PSIs.
  0 when no PSI fell below the offered rate; None when the rate never came
  back (first) or never stayed back for the validation time (full) within
  the window.
- `psi_ms`, `sustained_s`: the PSI and validation time used, reported beside
  the times because both bound what the rate-derived times mean.
- `reordered_packets`: RFC 4737 reordered probes (first copies whose
  sequence number is below one that arrived before them), `duplicate_packets`:
  copies beyond the first; both among the probes sent in the window (RFC 6412
  §3.8.1 counts them as impaired packets; they do not enter the times above).
- `route_specific_min_ms`, `_max_ms`, `_mean_ms`: the Route-Specific
  Loss-Derived Method (RFC 6412 §3.5.3, §3.6.3; RFC 6413 §6.3): one
  loss-derived time per probe stream (one stream = one destination route),
  reported as their minimum, maximum and mean; with one stream all three are
  its `loss_derived_ms`.

How the forwarding rate is sampled, and why "at the offered rate" needs no
tolerance here: a PSI is a slot [lo + k PSI, lo + (k+1) PSI) of *send*
time; its offered packets are the probes sent in it (received ones by their
stamp, lost ones at their interpolated send time,
`emulator.traffic.analysis.estimate_send_times`), and its forwarding rate is
forwarded / offered. Counting arrivals per PSI against the nominal PSI /
interval packets, as a hardware tester does, would have to allow for jitter:
a PSI of N intervals holds N arrivals only when every packet arrives on its
slot; with pacing or path jitter below half an interval at most one packet
leaves a PSI (one at the start can move out early or one at the end late,
never both, since they are N - 1 intervals apart), below one interval two, so
the test would be "at least N - 1 (or N - 2) arrived", which at N = 10 hides
10-20 % real loss per PSI, and a path that grows longer (the route swinging
back to a slower link) would show a dip with nothing lost. Binning by send
time and dividing by what was actually sent cancels the sender's pacing
error exactly, and the path delay does not enter: the tolerance is zero lost
packets per PSI. The event instants are then sender-side instants: probes
already on their way die at a cut, so the event starts up to the path delay
before the step (the probe window's lead-in).

The PSI: at least 10 ms (sub-second convergence at a resolution finer than
the BFD interval) and at least 10 probe intervals, so that a PSI holds ten
offered packets and its rate is a rate (one lost probe = a 10 % dip), not a
single packet's fate: 10 ms at 1 kHz, 20 ms at the corridor's 500 pps.

The Sustained Convergence Validation Time: RFC 6412 §3.7.5 recommends at
least 5 s (and 5 packets per destination). We use 2 s: the routers' timers
that can move a route again shortly after it converged are second-scale
(BIRD 2's 1 s OSPF tick, at which further routers act; FRR's 1 s external-
route timer; bfdd's and the OSPF restarts after a restore), and 2 s covers
two such ticks, while 5 s would leave Full Convergence unmeasured in any
step shorter than convergence + 5 s (the flaps and the test rings' 3 s
cut-to-restore windows). A later dip is still counted by the loss-derived
figures.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from emulator.routing.failover import LEAD_IN_NS, METRIC_PREFIX, Step
from emulator.traffic.analysis import estimate_send_times

#: the Packet Sampling Interval is at least this long ...
PSI_MIN_NS = 10_000_000
#: ... and at least this many probe intervals
PSI_MIN_PROBES = 10
#: the Sustained Convergence Validation Time (see the module docstring for why not RFC 6412's 5 s)
SUSTAINED_NS = 2_000_000_000


@dataclass(frozen=True)
class ProbeStream:
    """One probe stream: the receiver's records and the sender's summary figures."""

    #: seq, send_ns, recv_ns columns in arrival order, duplicates included (emulator.traffic.probe.ProbeRecords)
    records: Any
    sent: int
    interval_ns: int
    first_ns: int | None = None


@dataclass(frozen=True)
class Offered:
    """The probes of one stream sent in one window: (seq, send_ns, forwarded) in sequence order."""

    probes: list[tuple[int, int, bool]]
    interval_ns: int


def packet_sampling_interval_ns(interval_ns: int) -> int:
    """The PSI for a stream sent every `interval_ns`: max(PSI_MIN_NS, PSI_MIN_PROBES intervals)."""
    return max(PSI_MIN_NS, PSI_MIN_PROBES * interval_ns)


def probe_windows(steps: Sequence[Step]) -> dict[str, tuple[int, int]]:
    """Per step label, the send-time window [lo, hi) whose probes are the step's.

    A step's window starts LEAD_IN_NS before it (probes already on their way
    die at a cut or a `set`), a restore's at the step itself (a probe sent
    before a restore can only have been lost to the cut); it ends where the
    next step's starts (or at the step's `end_ns`), so no probe counts for
    two steps.
    """
    starts = [s.t_ns - (0 if s.kind == "restore" else LEAD_IN_NS) for s in steps]
    windows = {}
    for i, step in enumerate(steps):
        hi = starts[i + 1] if i + 1 < len(steps) else step.end_ns
        windows[step.label] = (starts[i], max(hi, starts[i]))
    return windows


def offered_in(stream: ProbeStream, lo: int, hi: int, send_times: Sequence[int] | None = None) -> Offered:
    """The probes of `stream` sent in [lo, hi); `send_times` (index = seq) when already estimated."""
    times = send_times if send_times is not None else estimate_send_times(
        stream.records, stream.sent, stream.interval_ns, stream.first_ns)
    got = set(stream.records.seq)
    return Offered([(q, t, q in got) for q, t in enumerate(times) if lo <= t < hi], stream.interval_ns)


def loss_derived_ns(offered: Offered) -> int:
    """RFC 6412 §3.6.4: lost probes / offered rate = lost x interval."""
    return sum(1 for _, _, forwarded in offered.probes if not forwarded) * offered.interval_ns


def loss_of_connectivity_ns(offered: Offered) -> int:
    """RFC 6412 §3.6.5: the longest run of consecutive lost probes x interval (0 when none was lost)."""
    longest = run = 0
    previous = None
    for seq, _, forwarded in offered.probes:
        if forwarded:
            run = 0
        else:
            run = run + 1 if previous is not None and seq == previous + 1 and run else 1
            longest = max(longest, run)
        previous = seq
    return longest * offered.interval_ns


def sampling_intervals(offered: Offered, lo: int, psi_ns: int) -> list[tuple[int, int]]:
    """(offered, forwarded) probes per PSI [lo + k psi, lo + (k+1) psi), up to the last offered probe's PSI."""
    if not offered.probes:
        return []
    count = (max(t for _, t, _ in offered.probes) - lo) // psi_ns + 1
    samples = [[0, 0] for _ in range(count)]
    for _, t, forwarded in offered.probes:
        k = (t - lo) // psi_ns
        samples[k][0] += 1
        samples[k][1] += forwarded
    return [(n, f) for n, f in samples]


def rate_derived_ns(samples: Sequence[tuple[int, int]], psi_ns: int,
                    sustained_ns: int = SUSTAINED_NS) -> tuple[int | None, int | None]:
    """(First Route Convergence Time, Full Convergence Time) by the Rate-Derived Method, ns.

    A PSI is at the offered rate when every probe offered in it was forwarded
    (an empty PSI, a sender stall, is not below it). From the first PSI below
    the offered rate (the Convergence Event Instant, RFC 6412 §3.2.2): to the
    first later PSI at it (first), to the first PSI from which
    ceil(sustained / psi) PSIs in a row are at it (full, §3.2.3, §3.7.5).
    (0, 0) when no PSI is below; None for what the samples do not reach.
    """
    at_rate = [forwarded >= offered for offered, forwarded in samples]
    k0 = next((k for k, ok in enumerate(at_rate) if not ok), None)
    if k0 is None:
        return 0, 0
    first = next((k for k in range(k0 + 1, len(at_rate)) if at_rate[k]), None)
    need = max(1, math.ceil(sustained_ns / psi_ns))
    full, run = None, 0
    for k in range(k0 + 1, len(at_rate)):
        run = run + 1 if at_rate[k] else 0
        if run == need:
            full = k - need + 1
            break
    return ((first - k0) * psi_ns if first is not None else None,
            (full - k0) * psi_ns if full is not None else None)


def reordered_and_duplicates(records: Any, lo: int, hi: int) -> tuple[int, int]:
    """(RFC 4737 reordered first copies, extra copies) among the probes sent in [lo, hi), by arrival order."""
    seen: set[int] = set()
    highest, reordered, duplicates = -1, 0, 0
    for seq, sent_ns in zip(records.seq, records.send_ns):
        if not lo <= sent_ns < hi:
            continue
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        if seq < highest:
            reordered += 1
        else:
            highest = seq
    return reordered, duplicates


def _ms(value_ns: int | None) -> float | None:
    return value_ns / 1e6 if value_ns is not None else None


def convergence_metrics(steps: Sequence[Step], streams: Sequence[ProbeStream]) -> dict[str, Any]:
    """`routing.<label>.<metric>` for every step (see the module docstring).

    `streams[0]` is the stream the rate-derived and per-packet figures use (the
    run's first probe stream, the one its traces follow); every stream counts
    for the route-specific figures. Without a stream every figure is None.
    """
    names = ("loss_derived_ms", "rate_derived_first_ms", "rate_derived_full_ms", "psi_ms", "sustained_s",
             "loss_of_connectivity_ms", "reordered_packets", "duplicate_packets",
             "route_specific_min_ms", "route_specific_max_ms", "route_specific_mean_ms")
    out: dict[str, Any] = {}
    windows = probe_windows(steps)
    times = [estimate_send_times(s.records, s.sent, s.interval_ns, s.first_ns) for s in streams]
    for step in steps:
        base = f"{METRIC_PREFIX}.{step.label}"
        out.update({f"{base}.{name}": None for name in names})
        if not streams:
            continue
        lo, hi = windows[step.label]
        main = offered_in(streams[0], lo, hi, times[0])
        psi = packet_sampling_interval_ns(streams[0].interval_ns)
        first, full = rate_derived_ns(sampling_intervals(main, lo, psi), psi)
        reordered, duplicates = reordered_and_duplicates(streams[0].records, lo, hi)
        per_route = [loss_derived_ns(offered_in(s, lo, hi, t)) / 1e6 for s, t in zip(streams, times)]
        out.update({
            f"{base}.loss_derived_ms": loss_derived_ns(main) / 1e6,
            f"{base}.rate_derived_first_ms": _ms(first),
            f"{base}.rate_derived_full_ms": _ms(full),
            f"{base}.psi_ms": psi / 1e6,
            f"{base}.sustained_s": SUSTAINED_NS / 1e9,
            f"{base}.loss_of_connectivity_ms": loss_of_connectivity_ns(main) / 1e6,
            f"{base}.reordered_packets": float(reordered),
            f"{base}.duplicate_packets": float(duplicates),
            f"{base}.route_specific_min_ms": min(per_route),
            f"{base}.route_specific_max_ms": max(per_route),
            f"{base}.route_specific_mean_ms": statistics.fmean(per_route),
        })
    return out
