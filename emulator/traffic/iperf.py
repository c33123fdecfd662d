"""Bulk TCP and constant-rate UDP with iperf3 (Debian's 3.12), run inside nodes.

The server is one-off (`-s -1`): it serves exactly one test and exits, so
each stream gets its own server on its own port and nothing lingers (the
runner still stops it by PID). It runs with `-J` so that the client's
`--get-server-output` embeds the server's (receiver's) JSON report: the
per-interval series then shows what arrived, not what was offered.

Client options: `-J` (one JSON document at the end; `--forceflush` only
matters for the streaming text output, so it is not used), `-4`/`-6`
(node names resolve to both families), `-t` duration, `-i` report interval.
TCP: `-C cubic`. The system default here is BBR, which paces at its
bandwidth estimate and settles a few per cent under a bottleneck's rate;
cubic is loss-based and keeps the bottleneck queue filled like a real bulk
transfer, so its goodput lands on the link's payload rate. `-b` caps it
when the spec gives a rate (0 = unlimited). UDP: `-u -b RATE -l SIZE`
(SIZE = UDP payload bytes per datagram).

Metrics (names of TRAFFIC_METRICS["tcp"/"udp"]):
- tcp: `throughput_mbps` = receiver goodput (end.sum_received, payload bits
  per wall-clock second), `retransmits` (end.sum_sent, from the sender's
  TCP_INFO), `bytes` received.
- udp: `throughput_mbps` and `bytes` of what the receiver got
  (end.sum_received), `loss_pct` = the receiver's lost_percent (sequence
  gaps), `jitter_ms` = the receiver's RFC 3550 jitter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from emulator.scenario.scenario import TRAFFIC_METRICS


@dataclass(frozen=True)
class IperfResult:
    """One iperf3 test: its metrics and throughput per report interval."""

    kind: str
    metrics: dict[str, float | None]
    #: (end of the interval in s since the test start, Mbit/s) — receiver side when the server's report is embedded
    series: list[tuple[float, float]] = field(default_factory=list)
    #: the report the series came from: "server" (receiver) or "client"
    series_side: str = "client"


def server_argv(port: int) -> list[str]:
    """A one-off iperf3 server on `port`, both families (run it in the target node; stdout can go to DEVNULL)."""
    return ["iperf3", "-s", "-1", "-J", "-p", str(port)]


def client_argv(target: str, port: int, kind: str, duration_s: float, rate_bps: float = 0.0,
                ipv6: bool = False, size: int = 0, *, interval_s: float = 1.0) -> list[str]:
    """An iperf3 client for a `tcp` or `udp` stream (run it in the source node)."""
    if kind not in ("tcp", "udp"):
        raise ValueError(f"iperf3 streams are tcp or udp, not {kind!r}")
    argv = ["iperf3", "-c", target, "-p", str(port), "-J", "--get-server-output",
            "-6" if ipv6 else "-4", "-t", f"{duration_s:g}", "-i", f"{interval_s:g}"]
    if kind == "tcp":
        argv += ["-C", "cubic"]
        if rate_bps > 0:
            argv += ["-b", f"{int(rate_bps)}"]
    else:
        if rate_bps <= 0:
            raise ValueError("a udp stream needs a rate in bit/s")
        argv += ["-u", "-b", f"{int(rate_bps)}"]
        if size > 0:
            argv += ["-l", str(size)]
    return argv


def _series(report: dict[str, Any]) -> list[tuple[float, float]]:
    out = []
    for interval in report.get("intervals", []):
        total = interval.get("sum", {})
        if total.get("omitted"):
            continue
        out.append((float(total["end"]), float(total["bits_per_second"]) / 1e6))
    return out


def parse_client_json(text: str, kind: str) -> IperfResult:
    """Metrics and series from an iperf3 client's `-J` output (raises ValueError on an iperf3 error)."""
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"iperf3 output is not JSON: {exc}") from None
    if report.get("error"):
        raise ValueError(f"iperf3: {report['error']}")
    end = report.get("end", {})
    received = end.get("sum_received", {})
    sent = end.get("sum_sent", {})
    metrics: dict[str, float | None] = dict.fromkeys(TRAFFIC_METRICS[kind])
    if kind == "tcp":
        metrics["throughput_mbps"] = _mbps(received)
        metrics["retransmits"] = _number(sent.get("retransmits"))
        metrics["bytes"] = _number(received.get("bytes"))
    elif kind == "udp":
        metrics["throughput_mbps"] = _mbps(received)
        metrics["loss_pct"] = _number(received.get("lost_percent"))
        metrics["jitter_ms"] = _number(received.get("jitter_ms"))
        metrics["bytes"] = _number(received.get("bytes"))
    else:
        raise ValueError(f"iperf3 streams are tcp or udp, not {kind!r}")
    server = report.get("server_output_json")
    if isinstance(server, dict) and server.get("intervals"):
        return IperfResult(kind, metrics, _series(server), "server")
    return IperfResult(kind, metrics, _series(report), "client")


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _mbps(total: dict[str, Any]) -> float | None:
    bps = total.get("bits_per_second")
    return None if bps is None else float(bps) / 1e6
