"""Probe streams and iperf3 through the engine between two namespaces.

Each test builds its own testbed under a private state root (`make_testbed`)
and stops every process it starts by PID in `finally`. Clocks: sender and
receiver stamp CLOCK_REALTIME of the same host, so one-way delays are exact.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import time
from typing import Any, Callable

import pytest

from emulator.traffic.analysis import analyze_probes, estimate_send_times, probe_series
from emulator.traffic.iperf import client_argv, parse_client_json, server_argv
from emulator.traffic.probe import load_records, load_summary, receiver_argv, sender_argv
from tests.integration.conftest import HostWindow, fail_or_inconclusive, requires_root, two_host_topology, wait_listening

pytestmark = [pytest.mark.root, requires_root]

needs_iperf3 = pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3 (Debian: apt-get install iperf3)")

#: time for both Python tools to start (2 shared vCPUs) before the stream begins
LEAD_NS = 1_200_000_000


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal a process this test started (by PID) if it still runs, and reap it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run_probes(testbed: Any, workdir: str, *, rate_pps: float, seconds: float, port: int, ipv6: bool = False,
               during: Callable[[int], Any] | None = None) -> tuple[dict[str, Any], Any, Any]:
    """One probe stream left -> right; (summary, records, what `during(start_ns)` returned)."""
    tag = f"{port}{'-6' if ipv6 else ''}"
    out, summary_path = os.path.join(workdir, f"rec-{tag}.bin"), os.path.join(workdir, f"sum-{tag}.json")
    receiver = testbed.popen("right", receiver_argv(port, out, ipv6), stderr=subprocess.PIPE)
    sender = None
    try:
        start = time.time_ns() + LEAD_NS
        stop_at = start + int(seconds * 1e9)
        sender = testbed.popen("left", sender_argv("right", port, rate_pps, 64, start, stop_at, summary_path, ipv6),
                               stderr=subprocess.PIPE)
        extra = during(start) if during is not None else None
        _, err = sender.communicate(timeout=seconds + 30)
        assert sender.returncode == 0, f"sender failed: {err.decode()[-2000:]}"
        time.sleep(0.2)  # the last probes land
        assert receiver.poll() is None, f"receiver exited early: {receiver.communicate()[1].decode()[-2000:]}"
        receiver.send_signal(signal.SIGTERM)
        _, err = receiver.communicate(timeout=10)
        assert receiver.returncode == 0, f"receiver failed: {err.decode()[-2000:]}"
        return load_summary(summary_path), load_records(out), extra
    finally:
        if sender is not None:
            stop(sender)
        stop(receiver)


def test_probe_stream_lossless_link(make_testbed: Any, tmp_path: os.PathLike[str]) -> None:
    testbed = make_testbed(two_host_topology("delay: 2ms\nloss: 0%"))
    with HostWindow() as host:
        summary, records, _ = run_probes(testbed, str(tmp_path), rate_pps=1000, seconds=2, port=7101)
    m = analyze_probes(records, summary["sent"], summary["interval_ns"])
    print(summary, m)
    # 1 kpps for 2 s: 2000 slots; a stall of the shared vCPUs may skip some, and
    # a sender behind by > 1 ms skips the slots it passed over and keeps to its
    # grid, so sent + skipped counts every slot: 2000, or 2001 when the last
    # slot falls on the stop instant
    assert 2000 <= summary["sent"] + summary["skipped"] <= 2001
    # more than 10 % of the slots skipped is the sender's CPU, not the link: a failure
    # on a quiet host, inconclusive on a loaded one (seen: 245 skipped, 180 probes
    # over 1 ms late, in a CI run whose other timing checks were inconclusive too)
    if summary["sent"] < 1800:
        fail_or_inconclusive(host, f"the sender skipped {summary['skipped']} of 2000 slots")
    assert m["received"] == m["sent"] == summary["sent"]
    # never early; above 2 ms: the veth and stack crossings plus the engine's
    # release lateness (tens of µs), far under 0.3 ms at the median
    assert m["owd_min_ms"] is not None and m["owd_min_ms"] >= 2.0
    assert m["owd_median_ms"] is not None and 2.0 <= m["owd_median_ms"]
    # above 0.3 ms more at the median, a loaded host's stacks (not the link) can be the cause
    if m["owd_median_ms"] > 2.3:
        fail_or_inconclusive(host, f"OWD median {m['owd_median_ms']:.3f} ms > 2.3 ms")
    assert m["reordered"] == 0 and m["duplicates"] == 0 and m["longest_gap_ms"] == 0
    series = probe_series(records, summary["first_ns"], sent_times=estimate_send_times(
        records, summary["sent"], summary["interval_ns"], summary["first_ns"]))
    assert len(series["owd_ms"]) == summary["sent"]
    assert all(pct == 0 for _, pct in series["loss_pct"]) and len(series["loss_pct"]) in (20, 21)

    # the same over IPv6 (kernel-computed UDP checksum: a wrong one would be dropped by the receiver)
    with HostWindow() as host6:
        summary6, records6, _ = run_probes(testbed, str(tmp_path), rate_pps=1000, seconds=0.5, port=7102, ipv6=True)
    m6 = analyze_probes(records6, summary6["sent"], summary6["interval_ns"])
    print(summary6, m6)
    if summary6["sent"] < 450:
        fail_or_inconclusive(host6, f"the IPv6 sender skipped {summary6['skipped']} of 500 slots")
    assert m6["received"] == summary6["sent"]
    assert m6["owd_median_ms"] is not None and 2.0 <= m6["owd_median_ms"]
    if m6["owd_median_ms"] > 2.3:
        fail_or_inconclusive(host6, f"IPv6 OWD median {m6['owd_median_ms']:.3f} ms > 2.3 ms")


def test_probe_loss_matches_configured_rate(make_testbed: Any, tmp_path: os.PathLike[str]) -> None:
    testbed = make_testbed(two_host_topology("delay: 2ms\nloss: 10%"))
    summary, records, _ = run_probes(testbed, str(tmp_path), rate_pps=1000, seconds=2, port=7103)
    m = analyze_probes(records, summary["sent"], summary["interval_ns"])
    n, p = summary["sent"], 0.10
    # the number lost is Binomial(n, 0.1) (independent per-packet loss): a
    # two-sided 99.9 % interval by the normal approximation (n p = 200 > 10), z = 3.2905
    half_width = 3.2905 * math.sqrt(n * p * (1 - p)) / n * 100
    print(summary, m, f"±{half_width:.2f} %")
    assert m["loss_pct"] is not None and abs(m["loss_pct"] - 10.0) <= half_width
    assert m["duplicates"] == 0 and m["reordered"] == 0


def test_probe_cut_shows_as_the_longest_gap(make_testbed: Any, tmp_path: os.PathLike[str]) -> None:
    testbed = make_testbed(two_host_topology("delay: 2ms\nloss: 0%"))

    def cut_in_the_middle(start_ns: int) -> tuple[int, int]:
        time.sleep(max(0.0, (start_ns + 750_000_000 - time.time_ns()) / 1e9))
        cut_at = time.time_ns()
        testbed.cut("left-right")
        time.sleep(0.5)
        testbed.restore("left-right")
        return cut_at, time.time_ns()

    with HostWindow() as host:
        summary, records, (cut_at, restored_at) = run_probes(
            testbed, str(tmp_path), rate_pps=1000, seconds=2, port=7104, during=cut_in_the_middle)
    window = (cut_at - 5_000_000, restored_at + 1_000_000)  # probes in flight at the cut die too
    m = analyze_probes(records, summary["sent"], summary["interval_ns"], event_windows=[window])
    print(summary, m, f"cut held {(restored_at - cut_at) / 1e6:.2f} ms")
    # the cut holds 500 ms plus a control round trip and sleep overshoot; the
    # gap is measured between send stamps at 1 ms granularity
    assert m["longest_gap_ms"] is not None and abs(m["longest_gap_ms"] - 500) <= 20
    assert m["loss_pct"] is not None and 20 <= m["loss_pct"] <= 30  # ~500 of ~2000
    # No loss outside the cut (the link has none): a probe sent 5 ms before the
    # cut was released 2 ms later, before it. Unless the host held the sender
    # between its stamp and its send, or the engine's loop, for more than 3 ms:
    # then the cut, which is "now" for a live `cut`, takes probes that the
    # stamps put before it (seen under stress-ng: 0.28 %), inconclusive.
    if m["loss_outside_events_pct"] != 0.0:
        lost = f"{m['loss_outside_events_pct']} % of the probes lost outside the cut"
        held_ms = summary["late_max_ns"] / 1e6
        if held_ms > 3.0:
            # the sender itself was held longer than the window's 3 ms somewhere
            # (its own record, late against its slots): held so between its stamp
            # and its send, a probe is stamped before the cut and sent inside it.
            # A stressed repeat run: 0.07 %, the sender held up to 8.5 ms, while
            # the host's pressure (23 %) stayed under the general threshold.
            pytest.skip(f"inconclusive: {lost}; the sender was held up to {held_ms:.1f} ms (the window allows 3 ms)")
        fail_or_inconclusive(host, lost)


def iperf3_run(testbed: Any, kind: str, port: int, rate_bps: float, size: int, seconds: float) -> Any:
    """One iperf3 test left -> right against a one-off server; the parsed result."""
    server = testbed.popen("right", server_argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = None
    try:
        wait_listening(testbed, "right", port, server)
        client = testbed.popen("left", client_argv("right", port, kind, seconds, rate_bps, False, size),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = client.communicate(timeout=seconds + 60)
        assert client.returncode == 0, f"iperf3 {kind} failed ({client.returncode}): {out[-2000:]} {err[-2000:]}"
        return parse_client_json(out, kind)
    finally:
        if client is not None:
            stop(client)
        stop(server)


@needs_iperf3
def test_iperf3_tcp_fills_a_rate_limit(make_testbed: Any) -> None:
    testbed = make_testbed(two_host_topology("delay: 2ms\nrate: 50mbit"))
    tcp = iperf3_run(testbed, "tcp", 5311, 0, 0, 4)
    print(tcp)
    # cubic fills the link: each 1514 B frame (1448 B payload: MSS 1460 - 12
    # timestamp option) costs 1538 B of link time (preamble, IFG, FCS)
    expected = 50 * 1448 / 1538  # ≈ 47.07 Mbit/s
    assert tcp.metrics["throughput_mbps"] is not None
    assert abs(tcp.metrics["throughput_mbps"] - expected) <= 0.05 * expected
    assert tcp.series_side == "server" and len(tcp.series) >= 4


@needs_iperf3
def test_iperf3_udp_rate(make_testbed: Any) -> None:
    testbed = make_testbed(two_host_topology("delay: 2ms\nrate: 50mbit"))
    udp = iperf3_run(testbed, "udp", 5312, 10_000_000, 1200, 3)
    assert udp.metrics["throughput_mbps"] is not None and abs(udp.metrics["throughput_mbps"] - 10) <= 0.5
    assert udp.metrics["loss_pct"] is not None and udp.metrics["loss_pct"] < 1
