"""The metric registry: every figure a run can report, with its unit and producer.

One table shared by the loader (an assertion must name a registered metric),
the collector (`emulator.run.collect` produces exactly these names; a unit
test holds it to that) and the report (units for display). A metric's full
name is `<family head>.<name>`: `<stream>.owd_median_ms`,
`link.<link>.<direction>.drops_loss`, `events.cut_total_ms`,
`routing.<step>.outage_ms`, `routing.start.convergence_s`.

The traffic kinds are here too (`STREAM_KINDS`): what the loader and the run
plan need to know of a kind before any tool runs (its rate key and unit, its
defaults, whether it is the measuring instrument). Adding a traffic kind means
a `StreamKind` row and its metrics here, and its tools (argv, files, parsing,
analysis) in `emulator.traffic.kinds`; the loader, the plan, the runner, the
collector and the report follow from the two tables.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One registered metric."""

    family: str       # a stream's kind (STREAM_KINDS), link, events, routing, start
    name: str
    unit: str         # ms, us, s, %, packets, Mbit/s, bytes, count, nodes, bool
    producer: str     # the module that computes it
    kind: str = "number"   # number | path (node names) | bool
    doc: str = ""


@dataclass(frozen=True)
class StreamKind:
    """One traffic kind (`kind:` in `traffic:`), as the loader and the run plan see it."""

    name: str
    #: the key its rate is written under: rate_pps (packets/s) or rate_bps (bit/s)
    rate_field: str
    #: how its rate is written, the fix of a wrong rate key
    rate_words: str
    #: the rate when none is given, in rate_field's unit (0: as fast as it goes)
    default_rate: float
    #: payload bytes when no `size` is given
    default_size: int
    #: the sizes it takes (None: it takes no `size`, and `size_fix` says why)
    size_range: tuple[int, int] | None
    size_fix: str = ""
    #: a rate of 0 is refused (iperf3's UDP needs a target rate)
    needs_rate: bool = False
    #: the measuring instrument: one timestamped packet at a time, the stream failover traces
    #: and outages follow, never scaled with a replica link (docs/capacity.md); the other
    #: kinds are the load, offered at the scale of the links they cross
    instrument: bool = False
    doc: str = ""


#: The traffic kinds, in the order the docs list them.
STREAM_KINDS: tuple[StreamKind, ...] = (
    # probes: 1000 pps (1 ms resolution for gaps); payload: sequence 8 B + send time 8 B at least
    StreamKind("probe", "rate_pps", "a probe rate is packets per second, e.g. rate_pps: 1000pps",
               1000.0, 64, (16, 1400), instrument=True, doc="timestamped UDP probes (emulator.traffic.probe)"),
    # tcp: 0 = unlimited; its segments are the stack's
    StreamKind("tcp", "rate_bps", "a tcp rate is a bit-rate cap, e.g. rate_bps: 100mbit",
               0.0, 64, None, "remove it; tcp sends full segments", doc="an iperf3 TCP flow (cubic)"),
    # udp: 1 Mbit/s as iperf3; the default payload fills a 1500-byte frame with IPv6 headers
    StreamKind("udp", "rate_bps", "a udp rate is a bit rate, e.g. rate_bps: 20Mbit",
               1e6, 1400, (1, 1400), needs_rate=True, doc="an iperf3 UDP stream"),
)


def stream_kind(name: str) -> StreamKind:
    """The StreamKind called `name` (KeyError when there is none)."""
    for kind in STREAM_KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)


_PROBE = "emulator.traffic.analysis"
_IPERF = "emulator.traffic.iperf"
_FAILOVER = "emulator.routing.failover"
_RFC6413 = "emulator.routing.convergence"
_CAPACITY = "emulator.run.collect (docs/capacity.md)"

REGISTRY: tuple[Metric, ...] = (
    Metric("probe", "sent", "packets", _PROBE, doc="probes the sender sent"),
    Metric("probe", "received", "packets", _PROBE, doc="distinct probes received"),
    Metric("probe", "loss_pct", "%", _PROBE),
    Metric("probe", "loss_outside_events_pct", "%", _PROBE, doc="loss outside the timeline's disturbance windows"),
    Metric("probe", "owd_min_ms", "ms", _PROBE, doc="one-way delay, host to host"),
    Metric("probe", "owd_median_ms", "ms", _PROBE),
    Metric("probe", "owd_mean_ms", "ms", _PROBE),
    Metric("probe", "owd_p99_ms", "ms", _PROBE),
    Metric("probe", "owd_max_ms", "ms", _PROBE),
    Metric("probe", "jitter_ms", "ms", _PROBE, doc="RFC 3550 interarrival jitter at the stream's end"),
    Metric("probe", "jitter_mean_ms", "ms", _PROBE, doc="mean |D| over the whole stream (what RFC 3550's J estimates)"),
    Metric("probe", "reordered", "packets", _PROBE, doc="RFC 4737 reordered"),
    Metric("probe", "duplicates", "packets", _PROBE),
    Metric("probe", "longest_gap_ms", "ms", _PROBE),
    Metric("probe", "loss_burst_mean", "packets", _PROBE),
    # the emulated network alone (engine stamps at the first and last link)
    Metric("probe", "net_owd_min_ms", "ms", "emulator.traffic.analysis (engine stamps)"),
    Metric("probe", "net_owd_median_ms", "ms", "emulator.traffic.analysis (engine stamps)"),
    Metric("probe", "net_owd_p99_ms", "ms", "emulator.traffic.analysis (engine stamps)"),
    Metric("probe", "net_owd_max_ms", "ms", "emulator.traffic.analysis (engine stamps)"),
    Metric("probe", "net_jitter_mean_ms", "ms", "emulator.traffic.analysis (engine stamps)",
           doc="mean |D| of the emulated network alone"),
    Metric("tcp", "throughput_mbps", "Mbit/s", _IPERF),
    Metric("tcp", "retransmits", "count", _IPERF),
    Metric("tcp", "bytes", "bytes", _IPERF),
    Metric("tcp", "throughput_scaled_back_mbps", "Mbit/s", _CAPACITY,
           doc="goodput divided by the scale of the links it crossed: the figure at the real link's size"),
    Metric("udp", "throughput_mbps", "Mbit/s", _IPERF),
    Metric("udp", "loss_pct", "%", _IPERF),
    Metric("udp", "jitter_ms", "ms", _IPERF),
    Metric("udp", "bytes", "bytes", _IPERF),
    Metric("udp", "throughput_scaled_back_mbps", "Mbit/s", _CAPACITY,
           doc="goodput divided by the scale of the links it crossed: the figure at the real link's size"),
    Metric("link", "rx_packets", "packets", "engine counters"),
    Metric("link", "tx_packets", "packets", "engine counters"),
    Metric("link", "drops_outage", "packets", "engine counters"),
    Metric("link", "drops_loss", "packets", "engine counters"),
    Metric("link", "drops_queue", "packets", "engine counters"),
    Metric("link", "duplicated", "packets", "engine counters"),
    Metric("link", "corrupted", "packets", "engine counters"),
    # a link that declares capacity: the iperf3 streams crossing the direction, summed and
    # scaled back, before its first partial failure, during it, after its repair
    Metric("link", "throughput_before_mbps", "Mbit/s", _CAPACITY, doc="scaled-back goodput before the first fail"),
    Metric("link", "throughput_during_mbps", "Mbit/s", _CAPACITY, doc="... from the first fail to the full repair"),
    Metric("link", "throughput_after_mbps", "Mbit/s", _CAPACITY, doc="... after the full repair"),
    Metric("link", "capacity_before_mbps", "Mbit/s", _CAPACITY, doc="real lit capacity in service in that window"),
    Metric("link", "capacity_during_mbps", "Mbit/s", _CAPACITY, doc="the least in service during the failure"),
    Metric("link", "capacity_after_mbps", "Mbit/s", _CAPACITY),
    Metric("events", "cut_total_ms", "ms", "emulator.run.collect",
           doc="total time links were cut, from the instants the engine applied each cut and restore"),
    Metric("events", "apply_error_max_us", "us", "emulator.run.collect",
           doc="largest delay between a step's scheduled instant and the engine applying it"),
    Metric("routing", "detection_ms", "ms", _FAILOVER),
    Metric("routing", "first_route_ms", "ms", _FAILOVER),
    Metric("routing", "convergence_ms", "ms", _FAILOVER),
    Metric("routing", "route_changes", "count", _FAILOVER),
    Metric("routing", "outage_ms", "ms", _FAILOVER),
    Metric("routing", "rtt_before_ms", "ms", _FAILOVER),
    Metric("routing", "rtt_after_ms", "ms", _FAILOVER),
    Metric("routing", "path_before", "nodes", _FAILOVER, kind="path"),
    Metric("routing", "path_after", "nodes", _FAILOVER, kind="path"),
    Metric("routing", "path_changed", "bool", _FAILOVER, kind="bool"),
    Metric("routing", "reverts_on_restore", "bool", _FAILOVER, kind="bool"),
    # RFC 6412/6413 convergence benchmarks from the probe streams
    Metric("routing", "loss_derived_ms", "ms", _RFC6413),
    Metric("routing", "rate_derived_first_ms", "ms", _RFC6413),
    Metric("routing", "rate_derived_full_ms", "ms", _RFC6413),
    Metric("routing", "psi_ms", "ms", _RFC6413),
    Metric("routing", "sustained_s", "s", _RFC6413),
    Metric("routing", "loss_of_connectivity_ms", "ms", _RFC6413),
    Metric("routing", "reordered_packets", "packets", _RFC6413),
    Metric("routing", "duplicate_packets", "packets", _RFC6413),
    Metric("routing", "route_specific_min_ms", "ms", _RFC6413),
    Metric("routing", "route_specific_max_ms", "ms", _RFC6413),
    Metric("routing", "route_specific_mean_ms", "ms", _RFC6413),
    # the detection window BFD's timers give (RFC 5880), cut and flap steps with BFD
    Metric("routing", "bfd_expected_ms", "ms", _FAILOVER),
    Metric("routing", "bfd_expected_min_ms", "ms", _FAILOVER),
    Metric("routing", "detection_in_bfd_window", "bool", _FAILOVER, kind="bool"),
    Metric("start", "convergence_s", "s", "emulator.testbed",
           doc="seconds from starting the daemons to converged (routes, sessions, BFD)"),
)


def names(family: str) -> tuple[str, ...]:
    """The metric names of one family, in registry order."""
    return tuple(m.name for m in REGISTRY if m.family == family)


def kinds(family: str) -> dict[str, str]:
    """name -> value kind (number, path, bool) of one family."""
    return {m.name: m.kind for m in REGISTRY if m.family == family}


def lookup(full_name: str, stream_kinds: dict[str, str] | None = None) -> Metric | None:
    """The registered metric a full metric name refers to, or None.

    `stream_kinds` maps traffic names to their kind (probe/tcp/udp), for
    `<stream>.<metric>` names.
    """
    parts = full_name.split(".")
    head, name = parts[0], parts[-1]
    if head == "link":
        family = "link"
    elif head == "events":
        family = "events"
    elif head == "routing":
        family = "start" if len(parts) == 3 and parts[1] == "start" else "routing"
    elif stream_kinds and head in stream_kinds:
        family = stream_kinds[head]
    else:
        return None
    return next((m for m in REGISTRY if m.family == family and m.name == name), None)
