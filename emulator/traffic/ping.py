"""Round-trip times with the system `ping` run inside a node.

A first, simple measurement (iputils ping, whose RTTs come from kernel
timestamps); the scenario layer adds scapy probes with one-way delays.
"""

from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass
from typing import Any

_RTT = re.compile(r"icmp_seq=(\d+) .*time=([\d.]+) ms")


@dataclass(frozen=True)
class PingResult:
    """What one ping run saw: RTTs by sequence number and how many were sent."""

    sent: int
    rtts_ms: dict[int, float]

    @property
    def received(self) -> int:
        return len(self.rtts_ms)

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 0.0

    def median_ms(self) -> float:
        if not self.rtts_ms:
            raise ValueError("no replies")
        return statistics.median(self.rtts_ms.values())


def parse_ping_output(text: str, sent: int) -> PingResult:
    """Parse iputils `ping` output (one line per reply)."""
    rtts = {int(seq): float(ms) for seq, ms in _RTT.findall(text)}
    return PingResult(sent, rtts)


def ping(testbed: Any, source: str, target: str, *, count: int = 10, interval_s: float = 0.05,
         size: int = 56, ipv6: bool = False, timeout_s: float = 30) -> PingResult:
    """Ping `target` (a node name) from node `source` inside the testbed."""
    argv = ["ping", "-6" if ipv6 else "-4", "-n", "-c", str(count), "-i", f"{interval_s:g}",
            "-s", str(size), "-W", "1", target]
    proc = testbed.popen(source, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return parse_ping_output(out, count)
