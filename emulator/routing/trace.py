"""The path and RTT between two nodes: TTL-limited ICMP echo probes crafted with scapy.

Run inside the source node (`Testbed.popen(node, trace_argv(...))`):

    python -m emulator.routing.trace TARGET [--at NS] [--max-hops N] [--timeout S] [--pings N]

It imports scapy, resolves TARGET through the node's /etc/hosts, waits until
`--at` (CLOCK_REALTIME ns; scapy's import takes a while, so callers start it
early and name the moment), then

1. sends one ICMP echo request per TTL 1..max_hops at once (the kernel routes
   them: scapy's raw IP socket) and collects the answers for `--timeout`
   seconds: an ICMP time-exceeded from each router on the way, an echo
   reply from the target once the TTL reaches it (no second try: it would
   be sent after the step the trace is to precede);
2. sends `--pings` echo requests with TTL 64, 20 ms apart: the RTTs.

It prints one JSON object: {"target", "source", "asked_ns" (the moment it was
asked for), "at_ns" (when it began: later on a starved CPU), "hops": [address
or null per TTL, up to the target], "reached": bool, "rtt_ms": [...],
"ping_sent_ns": [when each answered echo left, CLOCK_REALTIME], "runqueue_wait_ms":
how long the trace waited for a CPU meanwhile}: the engine's stalls in that window
and that wait bound how far the run could have moved the RTTs.
`hops_to_nodes` maps the addresses to node names with the run's address plan.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

#: ICMP echo id base: the low 16 bits of the PID keep concurrent traces apart
MAX_HOPS = 16
TIMEOUT_S = 1.0
PINGS = 3
PING_GAP_S = 0.02


def trace_argv(target: str, *, at_ns: int = 0, max_hops: int = MAX_HOPS, timeout_s: float = TIMEOUT_S,
               pings: int = PINGS) -> list[str]:
    """The command line of a trace towards `target` (run it in the source node)."""
    return [sys.executable, "-m", "emulator.routing.trace", target, "--at", str(at_ns), "--max-hops", str(max_hops),
            "--timeout", f"{timeout_s:g}", "--pings", str(pings)]


def hops_from_answers(answers: list[tuple[int, str, bool]], target: str, max_hops: int) -> tuple[list[str | None], bool]:
    """Hop addresses by TTL from (ttl, answering address, is_echo_reply) triples.

    The path ends at the first TTL answered by the target (an echo reply);
    TTLs nobody answered are None. Without an answer from the target, the
    path runs to the last TTL that was answered at all.
    """
    by_ttl: dict[int, tuple[str, bool]] = {}
    for ttl, address, reply in answers:
        by_ttl.setdefault(ttl, (address, reply))
    end = next((ttl for ttl in sorted(by_ttl) if by_ttl[ttl][1] or by_ttl[ttl][0] == target), None)
    reached = end is not None
    if end is None:
        end = max(by_ttl, default=0)
    hops = [by_ttl[ttl][0] if ttl in by_ttl else None for ttl in range(1, min(end, max_hops) + 1)]
    return hops, reached


def hops_to_nodes(hops: list[str | None], owners: dict[str, str], source: str) -> list[str]:
    """The path as node names: the source, then each hop's owner ("?" for no answer or an unknown address)."""
    return [source] + [owners.get(h, "?") if h else "?" for h in hops]


def address_owners(plan: Any) -> dict[str, str]:
    """IPv4/IPv6 address -> node name, from an AddressPlan (loopbacks and link ends)."""
    owners: dict[str, str] = {}
    for mapping in (plan.loopback4, plan.loopback6):
        for node, iface in mapping.items():
            owners[str(iface.ip)] = node
    for mapping in (plan.link4, plan.link6):
        for (node, _link), iface in mapping.items():
            owners[str(iface.ip)] = node
    return owners


def run_trace(target: str, at_ns: int, max_hops: int, timeout_s: float, pings: int) -> dict[str, Any]:
    from scapy.config import conf
    from scapy.layers.inet import ICMP, IP
    from scapy.sendrecv import sr
    from scapy.supersocket import L3RawSocket

    from emulator.traffic.probe import resolve, source_address

    conf.verb = 0
    conf.L3socket = L3RawSocket   # the kernel routes the probes, as it does every other packet
    dst = resolve(target, False)
    src = source_address(dst, False)
    ident = os.getpid() & 0xFFFF
    while (left_ns := at_ns - time.time_ns()) > 0:
        # one reading of the clock per turn: read twice, the moment could pass between
        # the test and the sleep, and a negative sleep raises (seen in CI under 19 % steal)
        time.sleep(min(0.05, left_ns / 1e9))
    started = time.time_ns()
    probes = [IP(src=src, dst=dst, ttl=ttl) / ICMP(id=ident, seq=ttl) for ttl in range(1, max_hops + 1)]
    answered, _ = sr(probes, timeout=timeout_s, verbose=0)
    answers = []
    for sent, got in answered:
        answers.append((int(sent[IP].ttl), str(got[IP].src), int(got[ICMP].type) == 0))
    hops, reached = hops_from_answers(answers, dst, max_hops)
    rtts: list[float] = []
    sent_ns: list[int] = []
    waited_ns = runqueue_wait_ns()
    if pings > 0:
        echo = [IP(src=src, dst=dst, ttl=64) / ICMP(id=ident, seq=1000 + i) for i in range(pings)]
        answered, _ = sr(echo, timeout=timeout_s, inter=PING_GAP_S, verbose=0)
        for sent, got in answered:
            if int(got[ICMP].type) == 0:
                rtts.append(round((float(got.time) - float(sent.sent_time or 0)) * 1000, 3))
                sent_ns.append(int(float(sent.sent_time or 0) * 1e9))
    # how long this process waited for a CPU while its echoes were out: scapy stamps
    # the answers in user space, so a starved trace reads RTTs longer by up to that
    waited_ms = max(0, runqueue_wait_ns() - waited_ns) / 1e6
    return {"target": target, "address": dst, "source": src, "asked_ns": at_ns, "at_ns": started, "hops": hops,
            "reached": reached, "rtt_ms": rtts, "ping_sent_ns": sent_ns, "runqueue_wait_ms": waited_ms}


def runqueue_wait_ns() -> int:
    """The time this process's live threads have waited on a run queue (the second
    field of each thread's /proc schedstat), ns; 0 where the kernel keeps none."""
    total = 0
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat") as stats:
                total += int(stats.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return total


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.routing.trace")
    parser.add_argument("target")
    parser.add_argument("--at", type=int, default=0)
    parser.add_argument("--max-hops", type=int, default=MAX_HOPS)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--pings", type=int, default=PINGS)
    args = parser.parse_args(argv)
    try:
        result = run_trace(args.target, args.at, args.max_hops, args.timeout, args.pings)
    except OSError as exc:
        print(f"trace: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
