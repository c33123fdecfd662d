"""The engine forwarding real traffic between real namespaces.

Each test builds its own uniquely prefixed testbed under a private state root
(`make_testbed` in conftest.py), which is stopped and checked for leftovers
(namespaces, run directory, engine process) after the test.

Timing tolerances are derived from what these 2-vCPU VMs measure (DESIGN.md):
the loop releases a frame 14-17 µs late at the median, p99 54-59 µs, max
80-180 µs; each veth + namespace stack crossing adds tens of µs; iputils ping
prints RTTs with 3 significant digits (0.01 ms below 10 ms, 0.1 ms below 100 ms).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import pytest
from pyroute2 import IPRoute

from emulator.network import kernel
from emulator.scenario.default import default_topology
from emulator.engine.counters import lateness_bound_us
from emulator.scenario.paths import path_hops, rtt_ns, shortest_path
from emulator.traffic.ping import ping
from tests.integration.conftest import HostWindow, fail_or_inconclusive, requires_root, two_host_topology, wait_listening

pytestmark = [pytest.mark.root, requires_root]

needs_ping = pytest.mark.skipif(shutil.which("ping") is None, reason="needs ping (Debian: apt-get install iputils-ping)")
needs_iperf3 = pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3 (Debian: apt-get install iperf3)")

CABLE = "aktau-sumgait"


# ------------------------------------------------------------------ helpers


def invariant_holds(counters: dict[str, Any]) -> bool:
    """rx + duplicated == tx + every drop + in flight, for one direction."""
    return (
        counters["rx_packets"] + counters["duplicated"]
        == counters["tx_packets"] + sum(counters["drops"].values()) + counters["in_flight"]
    )


def assert_invariant(stats: dict[str, Any]) -> None:
    for name, entry in stats.items():
        for direction in ("a_to_b", "b_to_a"):
            c = entry[direction]
            assert invariant_holds(c), f"{name} {direction}: counters break rx + dup = tx + drops + in flight: {c}"


_TIMED_REPLY = re.compile(r"^\[(\d+\.\d+)\] .*icmp_seq=(\d+) .*time=([\d.]+) ms", re.M)


@dataclass(frozen=True)
class Reply:
    seq: int
    received_s: float  # wall clock (ping -D), the same clock as time.time()
    rtt_ms: float

    @property
    def sent_s(self) -> float:
        return self.received_s - self.rtt_ms / 1000


def timed_ping(testbed: Any, source: str, target: str, *, count: int, interval_s: float) -> subprocess.Popen:
    """Start `ping -D` (timestamped replies) from `source`; collect with `replies()`."""
    argv = ["ping", "-4", "-n", "-D", "-c", str(count), "-i", f"{interval_s:g}", "-W", "1", target]
    return testbed.popen(source, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def replies(proc: subprocess.Popen, timeout_s: float = 30) -> tuple[list[Reply], str]:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"ping did not finish in {timeout_s} s: {out}") from None
    found = [Reply(int(seq), float(ts), float(ms)) for ts, seq, ms in _TIMED_REPLY.findall(out)]
    return sorted(found, key=lambda r: r.seq), out


def stop_process(proc: subprocess.Popen) -> None:
    """Kill and reap a process this test started (by its PID, via Popen)."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError):
        proc.wait(timeout=10)


def iperf3_pair(testbed: Any, client: str, server: str, extra: list[str]) -> dict[str, Any]:
    """Run `iperf3 -c server` from `client` against a one-off server; its JSON report."""
    srv = testbed.popen(server, ["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(testbed, server, 5201, srv)
        cli = testbed.popen(client, ["iperf3", "-c", server, "-J", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
        try:
            out, err = cli.communicate(timeout=60)
        finally:
            stop_process(cli)
        assert cli.returncode == 0, f"iperf3 client failed ({cli.returncode}): {out[-2000:]} {err[-2000:]}"
        return json.loads(out)
    finally:
        stop_process(srv)


# ------------------------------------------------------------------ 1. ping


@needs_ping
def _release_lateness_p50_us(before: dict[str, Any], after: dict[str, Any], hops: list[tuple[str, str]]) -> float:
    """The engine's own release lateness between two stats snapshots, its p50 summed along
    `hops` (log2 bin upper edges: at most 2x over). 0 for hops that released nothing."""
    total = 0.0
    for name, direction in hops:
        was, now = before[name][direction]["release_lateness"]["histogram"], after[name][direction]["release_lateness"]["histogram"]
        diff = {"release_lateness": {"histogram": {label: now[label] - was.get(label, 0) for label in now}}}
        total += lateness_bound_us(diff, 0.5) or 0.0
    return total


def test_ping_rtt_across_default_topology_matches_configured(make_testbed: Any) -> None:
    topology = default_topology()
    testbed = make_testbed(topology)
    configured_ms = rtt_ns(topology, "europe", "asia") / 1e6  # 2 x 1.912 cable + 4 x 0.05 access ≈ 4.024 ms
    assert 4.0 < configured_ms < 4.05
    there = path_hops(topology, shortest_path(topology, "europe", "asia"))
    back = path_hops(topology, shortest_path(topology, "asia", "europe"))

    # Warm up ARP on every hop so the first sample is not an outlier (it
    # would not move the median, but keeps the loss count clean).
    ping(testbed, "europe", "asia", count=2, interval_s=0.02)
    before = testbed.stats()
    with HostWindow() as host:
        result = ping(testbed, "europe", "asia", count=50, interval_s=0.02)
    late_us = _release_lateness_p50_us(before, testbed.stats(), there + back)
    # Loss: the cable has 0.001 % loss, crossed twice per ping: P(any of 50
    # lost) ≈ 0.1 %; P(two lost) ≈ 5e-7. At most one is allowed.
    assert result.received >= 49, f"{50 - result.received} of 50 pings lost"
    median = result.median_ms()

    # The same path with every delay at 0, right after: what the veths, the nodes'
    # stacks, ping and the engine's forwarding cost without the link model (the
    # machine's base, 0.3-0.45 ms on this 2-vCPU VM, so no fixed figure serves).
    for link in topology.links:
        testbed.set(link.name, "delay 0ms")
    with HostWindow():
        base = ping(testbed, "europe", "asia", count=50, interval_s=0.02)
    base_ms = base.median_ms()
    print(f"configured {configured_ms:.3f} ms, median {median:.3f} ms, base {base_ms:.3f} ms, "
          f"release lateness p50 along the path {late_us:.0f} us")
    # Bounds. The engine never releases early, so RTT >= configured (ping rounds to
    # 0.01 ms: 0.005 ms allowed below). Above: RTT = configured + base + the releases'
    # lateness on the timer (zero-delay frames leave on arrival, without it). Allowed:
    # the engine's own p50 lateness summed along both ways (its histogram's bin edges,
    # up to 2x over, cover the median of the sum when the hops are late together, as
    # one loop serves them), plus the base ping's own spread: 0.05 ms (two medians,
    # each rounded to 0.01 ms and moved by ~0.02 ms between runs of 50 on a quiet host).
    # Beyond that on a loaded host (steal or CPU pressure past the verdict thresholds)
    # the nodes' stacks, not the links, add the time: inconclusive.
    assert configured_ms - 0.005 <= median, f"median RTT {median:.3f} ms is below the configured {configured_ms:.3f}"
    allowed_ms = configured_ms + base_ms + late_us / 1e3 + 0.05
    if median > allowed_ms:
        fail_or_inconclusive(host, f"median RTT {median:.3f} ms vs configured {configured_ms:.3f} ms + base "
                                   f"{base_ms:.3f} + lateness {late_us:.0f} us + 0.05: {sorted(result.rtts_ms.values())}")

    for link in topology.links:   # back to the model: IPv6 is judged on the same terms
        testbed.set(link.name, link.a_to_b, "a_to_b")
        testbed.set(link.name, link.b_to_a, "b_to_a")
    with HostWindow() as host:
        six = ping(testbed, "europe", "asia", count=10, interval_s=0.02, ipv6=True)
    # IPv6 crosses the same links (ND instead of ARP on the first packet):
    # the same loss argument allows one lost, the same window applies.
    assert six.received >= 9, f"IPv6: {10 - six.received} of 10 lost"
    assert configured_ms - 0.005 <= six.median_ms(), sorted(six.rtts_ms.values())
    if six.median_ms() > allowed_ms:
        fail_or_inconclusive(host, f"IPv6 median RTT {six.median_ms():.3f} ms: {sorted(six.rtts_ms.values())}")
    assert_invariant(testbed.stats())


# ------------------------------------------------------------------ 2. rate


@needs_iperf3
def test_iperf3_tcp_goodput_lands_on_link_rate(make_testbed: Any) -> None:
    rate_bps = 100_000_000
    testbed = make_testbed(two_host_topology("rate: 100mbit"))
    # -4: the MSS below is IPv4's (IPv6's is 20 B less; `right` resolves to
    # IPv6 first). -C cubic: a loss-based sender keeps the link's queue
    # non-empty, so the link never idles; the system default here is BBR,
    # which paces at its bandwidth estimate and lands 3-5 % under the rate.
    # -O 1: omit the first second (slow start filling the 1000-packet queue).
    report = iperf3_pair(testbed, "left", "right", ["-4", "-C", "cubic", "-t", "4", "-O", "1"])
    goodput = report["end"]["sum_received"]["bits_per_second"]
    # Each full segment carries 1448 B of payload (MSS 1500 - 20 IP - 20 TCP
    # - 12 timestamp option) in a 1514 B frame, which costs 1514 + 24 B
    # (preamble, IFG, FCS: LinkParams.overhead_bytes) of link time. ACKs go
    # the other way, whose direction is rate-limited too but nearly idle.
    expected = rate_bps * 1448 / (1514 + 24)  # ≈ 94.15 Mbit/s
    print(f"goodput {goodput / 1e6:.3f} Mbit/s, expected {expected / 1e6:.3f}")
    # ±3 %: the engine paces within 0.5 % at L2 (DESIGN.md); iperf3 measures
    # goodput over wall-clock intervals whose ends do not align with the
    # queue's content (up to ~1000 x 1538 B = 12 ms of link time per edge
    # over the 4 s measured: ±0.3 %), plus a retransmission or two.
    assert abs(goodput - expected) <= 0.03 * expected, (
        f"goodput {goodput / 1e6:.2f} Mbit/s, expected {expected / 1e6:.2f} Mbit/s ±3 %"
    )
    stats = testbed.stats()["left-right"]
    assert_invariant({"left-right": stats})
    assert stats["a_to_b"]["tx_packets"] > 30_000  # the data really went through the engine


# ------------------------------------------------------------------ 3. cut


@needs_ping
def test_cut_stops_traffic_and_restore_resumes_it(make_testbed: Any) -> None:
    testbed = make_testbed(default_topology())
    # No random loss on the cable for this test, so that every lost ping is
    # explained by the cut (0.001 % would make a stray loss possible).
    testbed.set(CABLE, "loss 0%")
    ping(testbed, "europe", "asia", count=3, interval_s=0.02)  # ARP/ND resolved before
    before = testbed.stats()[CABLE]

    proc = timed_ping(testbed, "europe", "asia", count=300, interval_s=0.01)
    try:
        time.sleep(1.0)
        testbed.cut(CABLE)
        cut_done = time.time()
        assert testbed.stats()[CABLE]["cut"] is True
        time.sleep(1.0)
        restore_start = time.time()
        testbed.restore(CABLE)
        got, out = replies(proc)
    finally:
        stop_process(proc)
    after = testbed.stats()[CABLE]
    assert after["cut"] is False

    # While cut nothing comes back. A reply already on the cable when the cut
    # fell is still delivered (cuts act on admission): allow one RTT (4 ms)
    # plus 10 ms of scheduling slack after the cut.
    during = [r for r in got if cut_done + 0.014 < r.received_s < restore_start]
    assert not during, f"replies while cut: {during}"
    # After the restore replies resume: every ping sent 50 ms after it (>= 50
    # of them at 10 ms spacing) is answered.
    resumed = [r for r in got if r.sent_s > restore_start + 0.05]
    assert len(resumed) >= 50, out[-1500:]
    first_after = min(r.seq for r in resumed)
    assert {r.seq for r in got} >= set(range(first_after, 300)), "pings lost after the restore"

    lost = sorted(set(range(1, 301)) - {r.seq for r in got})
    # The cut lasted >= 1 s at 10 ms spacing, but iputils ping sends more
    # slowly while its replies are missing (60-65 per second measured here,
    # not 100): >= 30 still proves the cut hit a long run of traffic.
    assert len(lost) >= 30, f"only {len(lost)} pings lost during a 1 s cut"
    assert lost == list(range(lost[0], lost[-1] + 1)), f"lost pings are not one block: {lost}"

    outage = sum(after[d]["drops"]["outage"] - before[d]["drops"]["outage"] for d in ("a_to_b", "b_to_a"))
    loss = sum(after[d]["drops"]["loss"] - before[d]["drops"]["loss"] for d in ("a_to_b", "b_to_a"))
    assert loss == 0
    print(f"lost pings {len(lost)} (seq {lost[0]}..{lost[-1]}), outage drops {outage}")
    # Each lost ping lost exactly one frame on the cable: its echo request
    # (sumgait -> aktau) or, sent just before the cut, its reply (aktau ->
    # sumgait). Other frames may hit the cut as well: the routers' own ARP
    # refresh or IPv6 ND/MLD on the cable interfaces (neighbour entries are
    # fresh, so at most a probe or two each way; 4 frames of slack).
    assert len(lost) <= outage <= len(lost) + 4, f"outage drops {outage}, lost pings {len(lost)}"
    assert_invariant(testbed.stats())


# ------------------------------------------------------------------ 4. live set


@needs_ping
def test_live_link_set_takes_effect_on_next_packet(make_testbed: Any) -> None:
    topology = default_topology()
    testbed = make_testbed(topology)
    testbed.set(CABLE, "loss 0%")  # so that "no packet lost" tests the change, not 0.001 % luck
    original = {d: testbed.engine.params(CABLE, d) for d in ("a_to_b", "b_to_a")}
    cable_ms = original["a_to_b"].delay_ns / 1e6  # 1.912 ms
    rise_ms = 2 * (10 - cable_ms)  # both directions: ≈ 16.18 ms
    ping(testbed, "europe", "asia", count=3, interval_s=0.02)

    window = HostWindow().__enter__()
    proc = timed_ping(testbed, "europe", "asia", count=150, interval_s=0.02)
    try:
        time.sleep(1.0)
        set_start = time.time()
        testbed.set(CABLE, "delay 10ms")
        set_done = time.time()
        time.sleep(1.0)
        back_start = time.time()
        for direction, params in original.items():
            testbed.set(CABLE, params, direction)
        back_done = time.time()
        got, out = replies(proc)
    finally:
        stop_process(proc)
        window.__exit__()

    assert [r.seq for r in got] == list(range(1, 151)), f"pings lost: {out[-1500:]}"
    old = [r.rtt_ms for r in got if r.received_s < set_start]
    new = [r for r in got if set_done < r.sent_s and r.received_s < back_start]
    restored = [r for r in got if r.sent_s > back_done + 0.025]
    assert len(old) >= 30 and len(new) >= 30 and len(restored) >= 10, (len(old), len(new), len(restored))
    base = statistics.median(old)
    # The change takes effect on the next packet: the first ping after it is
    # nearer the new RTT than the old, i.e. within rise/2 (8 ms) of base + rise;
    # one ping's RTT can be a millisecond late on a loaded host (a stalled vCPU,
    # the stacks waiting for a CPU), far less than 8 ms. The accuracy is judged
    # on medians, with 0.3 ms: ping prints 0.1 ms steps above 10 ms (±0.05), the
    # base ±0.005, and each of the two cable releases' typical lateness is tens
    # of µs (p99 ~55 µs).
    first = new[0]
    print(f"base {base:.3f} ms, first after {first.rtt_ms} ms (expected +{rise_ms:.3f}), back {restored[0].rtt_ms}")
    assert abs(first.rtt_ms - base - rise_ms) < rise_ms / 2, (
        f"first ping after the change: {first.rtt_ms} ms, expected {base:.3f} + {rise_ms:.3f}"
    )
    # Past 0.3 ms on a host loaded beyond the verdicts' thresholds (steal, CPU
    # pressure), the nodes' stacks rather than the link can have moved a median
    # by milliseconds (seen: 1.2-2.6 ms while pings on the same path swung 4-10 ms):
    # inconclusive then, a failure on a quiet host.
    moved = statistics.median(r.rtt_ms for r in new) - base - rise_ms
    if abs(moved) > 0.3:
        fail_or_inconclusive(window, f"median RTT after the change is {moved:+.3f} ms from base + rise")
    # Pings that straddled the change (request before, reply after) lie between.
    for r in got:
        if r.sent_s < set_start and r.received_s > set_done:
            assert base - 0.3 <= r.rtt_ms <= base + rise_ms + 0.3, r
    # Set back: the next ping is at the old RTT again (same rule).
    assert abs(restored[0].rtt_ms - base) < rise_ms / 2, (restored[0], base)
    moved = statistics.median(r.rtt_ms for r in restored) - base
    if abs(moved) > 0.3:
        fail_or_inconclusive(window, f"median RTT after setting back is {moved:+.3f} ms from base")
    assert testbed.engine.params(CABLE, "a_to_b") == original["a_to_b"]
    assert_invariant(testbed.stats())


# ------------------------------------------------------------------ 5. invariant


@needs_iperf3
def test_counters_invariant_holds_in_every_read_under_load(make_testbed: Any) -> None:
    # Delay makes frames sit in flight, loss and duplicate make the drop and
    # duplicate terms move: every term of the invariant is exercised.
    testbed = make_testbed(two_host_topology("delay: 5ms\nloss: 1%\nduplicate: 1%\nrate: 200mbit"))
    srv = testbed.popen("right", ["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli = None
    reads: list[dict[str, Any]] = []
    try:
        wait_listening(testbed, "right", 5201, srv)
        cli = testbed.popen("left", ["iperf3", "-c", "right", "-t", "3", "-J"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        for _ in range(50):
            reads.append(testbed.stats()["left-right"])
            time.sleep(0.04)
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0, err[-2000:]
    finally:
        if cli is not None:
            stop_process(cli)
        stop_process(srv)
    for k, entry in enumerate(reads):
        for direction in ("a_to_b", "b_to_a"):
            c = entry[direction]
            assert invariant_holds(c), f"read {k} {direction}: {c}"
    last = reads[-1]["a_to_b"]
    # The load really exercised each term (1 % of tens of thousands of frames).
    assert last["drops"]["loss"] > 10 and last["duplicated"] > 10
    assert any(r["a_to_b"]["in_flight"] > 0 for r in reads)
    assert reads[0]["a_to_b"]["rx_packets"] < last["rx_packets"]


# ------------------------------------------------------------------ 7. garbage


ETH_P_ALL = 0x0003
#: IEEE 802 local experimental ethertype: no stack in the receiving router
#: takes these frames for anything. Random ethertypes are avoided because
#: 0x8100/0x88a8 would make the receiving kernel strip a "VLAN tag" before
#: the engine's socket sees the frame (4 bytes shorter, or dropped if too
#: short to hold a tag), and random ARP could poison the router's cache.
ETHERTYPE_EXPERIMENTAL = b"\x88\xb5"


def _veth_tx_packets(netns: str, ifname: str) -> int:
    with kernel.in_netns(netns):
        ipr = IPRoute()
    with ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]
    return int(link.get_attr("IFLA_STATS64")["tx_packets"])


@needs_ping
def test_garbage_frames_are_counted_and_forwarding_survives(make_testbed: Any) -> None:
    topology = default_topology()
    testbed = make_testbed(topology)
    link = "europe-sumgait"
    node_netns = testbed.network.node_netns("europe")
    ifname = testbed.network.interfaces[("europe", link)]  # europe's side, towards sumgait
    # europe is end a of europe-sumgait: what it sends is the a_to_b direction.
    assert next(l for l in topology.links if l.name == link).a.node == "europe"

    with kernel.in_netns(node_netns):
        # Silence IPv6 (ND, MLD, RS) on this interface so nothing but the
        # injected frames leaves it; IPv4 sends nothing unprompted.
        kernel.write_sysctl(f"net.ipv6.conf.{ifname}.disable_ipv6", 1)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        mtu_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock, mtu_sock:
        with kernel.in_netns(node_netns):
            ipr = IPRoute()
        with ipr:
            # Without a larger MTU the sending kernel refuses anything above
            # 1514 B (EMSGSIZE); the wire side is at 9000 already.
            ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], mtu=9000)
        sock.bind((ifname, ETH_P_ALL))

        time.sleep(0.3)  # let anything queued before the sysctl drain
        quiet_before = testbed.stats()[link]["a_to_b"]
        tx_before = _veth_tx_packets(node_netns, ifname)
        time.sleep(0.5)
        quiet_after = testbed.stats()[link]["a_to_b"]
        background_rate = quiet_after["rx_packets"] - quiet_before["rx_packets"]

        rng = random.Random(20240917)
        max_frame = topology.links[0].mtu + 18  # the engine's limit for this link (1518)
        kinds = ["runt"] * 1000 + ["oversized"] * 2000 + ["valid"] * 7000
        rng.shuffle(kinds)
        sent = {"runt": 0, "oversized": 0, "valid": 0}
        refused: dict[str, dict[int, int]] = {"runt": {}, "oversized": {}, "valid": {}}
        for k, kind in enumerate(kinds):
            if kind == "runt":
                length = rng.randint(1, 13)
            elif kind == "oversized":
                length = rng.randint(max_frame + 1, 9000)
            else:
                length = rng.randint(14, max_frame)
            frame = bytearray(rng.randbytes(length))
            if length >= 14:
                frame[12:14] = ETHERTYPE_EXPERIMENTAL
            try:
                sock.send(frame)
            except OSError as exc:
                refused[kind][exc.errno] = refused[kind].get(exc.errno, 0) + 1
            else:
                sent[kind] += 1
            if k % 100 == 99:
                time.sleep(0.001)  # paced: the engine's socket buffer never overflows
        time.sleep(0.3)  # all injected frames handled (nothing is delayed more than 50 µs)
        tx_after = _veth_tx_packets(node_netns, ifname)
        after = testbed.stats()[link]["a_to_b"]

    # What the kernel does with runts: an Ethernet device's min_header_len is
    # 14, so AF_PACKET refuses every frame shorter than a header with EINVAL
    # (dev_validate_header), even for root. They never reach the wire.
    assert set(refused["runt"]) <= {22}, refused  # EINVAL only
    assert not refused["oversized"] and not refused["valid"], refused
    assert sent["oversized"] == 2000 and sent["valid"] == 7000

    delta_rx = after["rx_packets"] - quiet_after["rx_packets"]
    print(f"sent {sent}, refused {refused}")
    delta_malformed = after["drops"]["malformed"] - quiet_after["drops"]["malformed"]
    delta_kernel = after["kernel_drops"] - quiet_after["kernel_drops"]
    veth_tx = tx_after - tx_before
    injected = sum(sent.values())
    # The node-side veth's own tx counter counts everything that crossed to
    # the wire side (ours plus any background frame); each one must show up in
    # the engine's rx (or as a kernel drop at its socket, expected 0 here).
    assert background_rate == 0, f"{background_rate} background frames in a quiet 0.5 s"
    assert delta_kernel == 0, f"the engine's socket dropped {delta_kernel} frames (overrun)"
    assert veth_tx - injected in (0, 1, 2), f"veth sent {veth_tx}, we injected {injected}"
    assert delta_rx == veth_tx, f"engine rx {delta_rx}, frames that left the node {veth_tx} (injected {injected})"
    # Malformed = every runt that got out (none) + every oversized frame.
    assert delta_malformed == sent["runt"] + sent["oversized"], (delta_malformed, sent)
    assert_invariant(testbed.stats())

    # The engine still forwards: IPv4 across this link, past the garbage.
    result = ping(testbed, "europe", "asia", count=5, interval_s=0.02)
    assert result.received >= 4, "forwarding broken after garbage frames"
