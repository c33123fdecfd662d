"""The traffic kinds' tools: for each kind, what runs, where its result lands, and how it is read.

A traffic kind is a row of `emulator.model.metrics.STREAM_KINDS` (its rate key,
defaults and metrics, which the loader reads) and a `StreamTools` here: the
receiver and sender it starts, the files they leave, and how a run's record of
it becomes its metrics. The run plan (`emulator.run.plan`), the runner and the
collector ask `tools(kind)` and never name a kind themselves.

Adding a traffic kind: its row and metrics in `emulator.model.metrics`, a
`StreamTools` subclass here, registered in `TOOLS`.

`StreamPlan` (one stream of a run plan) and `StreamRecord` (what its tools
left) are here because every kind's tools take them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from emulator.traffic import analysis, iperf, probe

#: Series of one stream for the plots: name -> [(s since t0, value), ...]
Series = dict[str, list]
#: a file name in the run's work directory -> its path
PathOf = Callable[[str], str]


@dataclass(frozen=True)
class StreamPlan:
    """One traffic stream of a run plan: its receiver in `target`, its sender in `source`."""

    name: str
    kind: str                      # a STREAM_KINDS name
    source: str
    target: str
    port: int
    ipv6: bool
    size: int
    start_ns: int                  # from t0
    stop_ns: int                   # from t0
    rate_pps: float = 0.0          # a packet-rate kind (probe)
    rate_bps: float = 0.0          # a bit-rate kind (udp/tcp; 0: as fast as it goes)
    #: files in the work directory, by role (StreamTools.files)
    files: dict[str, str] = field(default_factory=dict)
    realtime_priority: int = 0     # its sender's SCHED_FIFO priority once ready (0: normal)

    @property
    def seconds(self) -> float:
        return (self.stop_ns - self.start_ns) / 1e9


@dataclass
class StreamRecord:
    """What one stream's tools left: a probe stream's records and its sender's summary, or iperf3's JSON."""

    records: Any = None            # probe.ProbeRecords
    summary: dict[str, Any] | None = None
    iperf_json: str | None = None
    #: the engine's stamps of a tapped probe stream, one entry per plan tap of the stream
    tap_stamps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None       # why there is no result


@dataclass(frozen=True)
class Launch:
    """One process to start in a node: its argv, what the runner calls it, and where its stdout goes."""

    node: str
    argv: list[str]
    role: str
    stdout_file: str | None = None   # a file name in the work directory; None: discarded
    #: it says `ready` on stdout once started up and then reads t0 (ns) on stdin (StreamTools.starts_ahead)
    handshake: bool = False


class StreamTools:
    """The tools of one traffic kind. Paths are file names (`StreamPlan.files`'s values)
    that the runner resolves in the run's work directory through `path`."""

    #: the first port its streams use (stream i uses base_port + i)
    base_port: int = 0
    #: programs it needs on the machine
    programs: tuple[str, ...] = ()
    #: its sender starts up before t0 is fixed (a long start-up): `sender(s, None, path)`
    #: gives a handshake Launch, which says when it is ready and is then told t0; the
    #: runner fixes t0 once every such sender is ready. Otherwise the sender is started
    #: at the stream's start, with t0 known
    starts_ahead: bool = False
    #: its receiver binds a UDP port the runner waits for before t0
    binds_udp: bool = False
    #: its sender ends by itself at the stream's stop (the runner waits for it)
    sender_ends: bool = False
    #: the engine stamps its packets at the first and last link (ProbeTap)
    engine_stamps: bool = False

    def files(self, name: str) -> dict[str, str]:
        """Its files in the work directory, by role."""
        raise NotImplementedError

    def realtime_priority(self, rate_pps: float) -> int:
        return 0

    def receiver(self, s: StreamPlan, path: PathOf) -> Launch:
        raise NotImplementedError

    def sender(self, s: StreamPlan, t0_ns: int | None, path: PathOf) -> Launch:
        """Its sender: with `t0_ns` None (a kind that starts ahead) one that is told t0 later."""
        raise NotImplementedError

    def load(self, s: StreamPlan, path: PathOf) -> StreamRecord:
        """Its record, from its files (OSError, ValueError or KeyError when they are missing or bad)."""
        raise NotImplementedError

    def analyze(self, s: StreamPlan, record: StreamRecord, t0_ns: int, windows: Sequence[tuple[int, int]],
                errors: list[str]) -> tuple[dict[str, Any], Series | None]:
        """Its metrics (the registry's names for its kind) and its series (None: none)."""
        raise NotImplementedError

    def packet_rate(self, rate_pps: float, rate_bps: float, size: int) -> float | None:
        """Packets per second (for the jitter window), None when its jitter is not measured."""
        return None


#: probe senders up to this rate run at real-time priority (below the engine's): a sender
#: at normal priority shares its CPU with the routing daemons, iperf3 and the traces'
#: start-up and was seen leaving probes 100-300 ms late, a gap the network never made.
#: It takes the priority only once ready to send (its start-up would hold the CPU the
#: receivers start on); then it sleeps until 0.3 ms before each slot and spins the rest
#: (probe.SLEEP_MARGIN_NS), so at 1 kHz it holds the CPU at most 30 % of the time;
#: faster senders would spin all the time and starve everything else on that CPU, so
#: they stay at normal priority
PROBE_REALTIME_MAX_PPS = 1000
PROBE_REALTIME_PRIORITY = 1


class ProbeTools(StreamTools):
    """Timestamped UDP probes (emulator.traffic.probe), analysed one by one (emulator.traffic.analysis)."""

    base_port = 7000
    # its start-up (scapy's import) takes 0.6 s of CPU, 2-3 s on a loaded machine (seen 0.7 s
    # past a 1.5 s lead): it starts ahead, and t0 waits for it
    starts_ahead = True
    binds_udp = True
    engine_stamps = True

    def files(self, name: str) -> dict[str, str]:
        return {"records": f"{name}.records", "summary": f"{name}.summary"}

    def realtime_priority(self, rate_pps: float) -> int:
        return PROBE_REALTIME_PRIORITY if rate_pps <= PROBE_REALTIME_MAX_PPS else 0

    def receiver(self, s: StreamPlan, path: PathOf) -> Launch:
        return Launch(s.target, probe.receiver_argv(s.port, path(s.files["records"]), s.ipv6), f"probe receiver {s.name}")

    def sender(self, s: StreamPlan, t0_ns: int | None, path: PathOf) -> Launch:
        base = 0 if t0_ns is None else t0_ns
        argv = probe.sender_argv(s.target, s.port, s.rate_pps, s.size, base + s.start_ns, base + s.stop_ns,
                                 path(s.files["summary"]), s.ipv6, s.realtime_priority, t0_from_stdin=t0_ns is None)
        return Launch(s.source, argv, f"probe sender {s.name}", handshake=t0_ns is None)

    def load(self, s: StreamPlan, path: PathOf) -> StreamRecord:
        return StreamRecord(records=probe.load_records(path(s.files["records"])),
                            summary=probe.load_summary(path(s.files["summary"])))

    def analyze(self, s: StreamPlan, record: StreamRecord, t0_ns: int, windows: Sequence[tuple[int, int]],
                errors: list[str]) -> tuple[dict[str, Any], Series | None]:
        summary = record.summary or {}
        result = analysis.analyze_probes(record.records, summary["sent"], summary["interval_ns"],
                                         event_windows=windows)
        result.update(_network_owd(record, errors, s.name))
        sent_times = analysis.estimate_send_times(record.records, summary["sent"], summary["interval_ns"],
                                                  summary["first_ns"])
        return result, analysis.probe_series(record.records, t0_ns, sent_times=sent_times)

    def packet_rate(self, rate_pps: float, rate_bps: float, size: int) -> float | None:
        return rate_pps


def _network_owd(record: StreamRecord, errors: list[str], name: str) -> dict[str, float | None]:
    """`net_owd_*` of a tapped probe stream from the engine's stamps ({} when untapped)."""
    if not record.tap_stamps:
        return {}
    merged: dict[str, dict[str, list[int]]] = {"first": {"seq": [], "t_ns": []}, "last": {"seq": [], "t_ns": []}}
    for got in record.tap_stamps:
        merged[got["role"]]["seq"] += got["seq"]
        merged[got["role"]]["t_ns"] += got["t_ns"]
        if got["overflow"]:
            errors.append(f"{name}: the engine's probe stamps overflowed ({got['overflow']} lost)")
    return analysis.network_owd(merged["first"], merged["last"])


class IperfTools(StreamTools):
    """An iperf3 flow (emulator.traffic.iperf): a one-off server, a client that writes its JSON."""

    base_port = 5201
    programs = ("iperf3",)
    sender_ends = True

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def files(self, name: str) -> dict[str, str]:
        return {"iperf": f"{name}.iperf.json"}

    def receiver(self, s: StreamPlan, path: PathOf) -> Launch:
        return Launch(s.target, iperf.server_argv(s.port), f"iperf3 server {s.name}")

    def sender(self, s: StreamPlan, t0_ns: int | None, path: PathOf) -> Launch:
        argv = iperf.client_argv(s.target, s.port, self.kind, s.seconds, int(s.rate_bps), s.ipv6, s.size)
        return Launch(s.source, argv, f"iperf3 client {s.name}", stdout_file=s.files["iperf"])

    def load(self, s: StreamPlan, path: PathOf) -> StreamRecord:
        with open(path(s.files["iperf"])) as fh:
            return StreamRecord(iperf_json=fh.read())

    def analyze(self, s: StreamPlan, record: StreamRecord, t0_ns: int, windows: Sequence[tuple[int, int]],
                errors: list[str]) -> tuple[dict[str, Any], Series | None]:
        try:
            parsed = iperf.parse_client_json(record.iperf_json or "", self.kind)
        except ValueError as exc:
            errors.append(f"{s.name}: no result ({exc})")
            return {}, None
        offset = s.start_ns / 1e9   # iperf3's intervals count from its own start
        return parsed.metrics, {"throughput_mbps": [(t + offset, v) for t, v in parsed.series]}

    def packet_rate(self, rate_pps: float, rate_bps: float, size: int) -> float | None:
        # UDP datagrams of `size` bytes at the target rate; TCP has no jitter figure
        return rate_bps / 8 / max(1, size) if self.kind == "udp" and rate_bps > 0 else None


#: Every traffic kind's tools, by STREAM_KINDS name (a unit test holds the two tables to the same kinds).
TOOLS: dict[str, StreamTools] = {"probe": ProbeTools(), "tcp": IperfTools("tcp"), "udp": IperfTools("udp")}


def tools(kind: str) -> StreamTools:
    """The tools of traffic kind `kind`."""
    return TOOLS[kind]
