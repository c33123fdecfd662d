"""The engine beyond one loop and one control thread: timeline changes applied
inside the engine at their instant, and links split between shards.

Each test builds its own uniquely prefixed testbed (`make_testbed`), stopped
and checked for leftovers after it. No timing is asserted here: a scheduled
cut is judged on the kernel's arrival stamps, which a sniffer on the same
wire-side interface sees exactly as the engine does, so the test compares
stamps, not durations.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from emulator.network import kernel
from emulator.scenario.default import default_topology
from emulator.traffic.ping import ping
from tests.integration.conftest import requires_root
from tests.integration.test_engine import assert_invariant, needs_ping

pytestmark = [pytest.mark.root, requires_root]

CABLE = "aktau-sumgait"
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
UDP_PORT = 9911
#: Ethernet + IPv4 (no options) + UDP headers before the datagram's payload
PAYLOAD_OFFSET = 14 + 20 + 8

#: UDP datagrams from `europe` to asia's loopback name: 8-byte sequence numbers, paced
SENDER = r"""
import socket, struct, sys, time
count, gap_ns = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("asia", %d))
next_ns = time.time_ns()
for seq in range(count):
    while time.time_ns() < next_ns:
        pass
    s.send(struct.pack("!Q", seq) + bytes(56))
    next_ns += gap_ns
""" % UDP_PORT

RECEIVER = r"""
import socket, struct, sys
SO_RCVBUFFORCE = 33     # <asm-generic/socket.h>; not in Python's socket module
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# room for the whole stream (4000 x ~1 KiB of skb), so a receiver starved of CPU
# loses nothing to its socket
s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
s.bind(("0.0.0.0", %d))
s.settimeout(3.0)
print("ready", flush=True)
seen = []
try:
    while True:
        seen.append(struct.unpack("!Q", s.recv(2048)[:8])[0])
except socket.timeout:
    pass
# what the socket dropped, counted to the end (SO_RXQ_OVFL would miss a lost
# tail: it rides on the next datagram received): /proc/net/udp's last column
port = "%%04X" %% s.getsockname()[1]
with open("/proc/net/udp") as table:
    dropped = sum(int(row.split()[-1]) for row in table if row.split()[1].endswith(":" + port))
print(dropped, " ".join(map(str, seen)), flush=True)
""" % UDP_PORT


def softnet_dropped() -> int:
    """Frames the kernel dropped from its per-CPU input backlogs (all namespaces):
    /proc/net/softnet_stat's second column, hex, one row per CPU."""
    with open("/proc/net/softnet_stat") as stat:
        return sum(int(row.split()[1], 16) for row in stat if row.strip())


class Sniffer:
    """Arrival stamps of our UDP datagrams at one wire-side interface, as the engine sees them.

    A second AF_PACKET socket on the same interface gets the same skb, so
    the same kernel receive stamp (SO_TIMESTAMPNS) the engine judges by.
    """

    def __init__(self, wire_netns: str, ifname: str) -> None:
        with kernel.in_netns(wire_netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.settimeout(0.2)
        self.stamps: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(2048, 64)
            except socket.timeout:
                continue
            if len(data) < PAYLOAD_OFFSET + 8 or data[12:14] != b"\x08\x00" or data[23] != 17:
                continue  # not IPv4 UDP
            if struct.unpack("!H", data[36:38])[0] != UDP_PORT:
                continue
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    seq = struct.unpack("!Q", data[PAYLOAD_OFFSET:PAYLOAD_OFFSET + 8])[0]
                    self.stamps.setdefault(seq, sec * 1_000_000_000 + nsec)

    def close(self) -> dict[int, int]:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        return self.stamps


def stream_through(testbed: Any, count: int, gap_ns: int, during: Any) -> tuple[list[int], int]:
    """Send `count` datagrams europe -> asia `gap_ns` apart, call `during()` once
    they flow; the sequence numbers asia received, and how many its socket dropped."""
    receiver = testbed.popen("asia", [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        sender = testbed.popen("europe", [sys.executable, "-c", SENDER, str(count), str(gap_ns)],
                               stderr=subprocess.PIPE, text=True)
        during()
        _, err = sender.communicate(timeout=60)
        assert sender.returncode == 0, err
        out, err = receiver.communicate(timeout=30)
    finally:
        for proc in (receiver,):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    dropped, *seen = (int(v) for v in out.split())
    return seen, dropped


@needs_ping
def test_scheduled_cut_drops_exactly_the_frames_that_arrived_after_its_instant(make_testbed: Any) -> None:
    testbed = make_testbed(default_topology())
    testbed.set(CABLE, "loss 0%")       # every missing datagram must be the cut's
    ping(testbed, "europe", "asia", count=3, interval_s=0.02)
    link = testbed.topology.link(CABLE)
    # frames europe -> asia enter the cable at sumgait's end
    sumgait_end = testbed.network.link_ends[CABLE][0 if link.a.node == "sumgait" else 1]
    sniffer = Sniffer(testbed.network.wire_netns, sumgait_end)
    window: dict[str, int] = {}
    sumgait_to_aktau = "a_to_b" if link.a.node == "sumgait" else "b_to_a"

    def schedule_cut() -> None:
        # 4000 datagrams 100 µs apart: 0.4 s; cut 0.1 s after the first reached the
        # cable (the sender's interpreter may take a while to start on a busy host)
        deadline = time.monotonic() + 20
        while not sniffer.stamps and time.monotonic() < deadline:
            time.sleep(0.002)
        window["cut"] = time.time_ns() + 100_000_000
        window["restore"] = window["cut"] + 100_000_000
        testbed.schedule([
            {"at_ns": window["cut"], "link": CABLE, "kind": "cut", "direction": "both"},
            {"at_ns": window["restore"], "link": CABLE, "kind": "restore", "direction": "both"},
        ])

    backlog_drops = softnet_dropped()
    try:
        seen, socket_drops = stream_through(testbed, 4000, 100_000, schedule_cut)
    finally:
        stamps = sniffer.close()
    backlog_drops = softnet_dropped() - backlog_drops
    received = set(seen)
    cut_at, restore_at = window["cut"], window["restore"]
    assert len(stamps) >= 3900, f"the sniffer saw {len(stamps)} of 4000 datagrams"
    inside = {seq for seq, t in stamps.items() if cut_at <= t < restore_at}
    outside = {seq for seq, t in stamps.items() if t < cut_at or t >= restore_at}
    assert len(inside) >= 100, f"only {len(inside)} datagrams reached the cable during the cut"
    # The rule, frame by frame: arrived before the instant -> judged before it.
    assert not inside & received, f"delivered although they arrived during the cut: {sorted(inside & received)[:10]}"
    lost = sorted(outside - received)
    if lost and (socket_drops or backlog_drops):
        # Not the engine's doing: the host's kernel dropped frames past the
        # engine. (A CI run under 34.5 % CPU steal lost datagrams 3329-3999 of
        # a receiver with the default 208 KiB buffer, before these counts.)
        # The engine's rule cannot be judged on this run: inconclusive, as a
        # scenario's verdict would be, with the counts that say why.
        pytest.skip(f"inconclusive: {len(lost)} datagrams lost past the engine "
                    f"(receiver socket dropped {socket_drops}, kernel backlogs {backlog_drops})")
    assert not lost, (f"lost although they arrived outside the cut: {lost[:10]} "
                      f"({len(lost)}; the host dropped none: socket 0, backlogs 0)")
    # The engine's own account names the same frames either side of each instant.
    status = testbed.schedule_status()
    cut, restore = (entry["directions"][sumgait_to_aktau] for entry in status)
    before_cut = max(t for t in stamps.values() if t < cut_at)
    after_cut = min(t for t in stamps.values() if t >= cut_at)
    assert (cut["last_before_ns"], cut["first_after_ns"]) == (before_cut, after_cut)
    before_restore = max(t for t in stamps.values() if t < restore_at)
    after_restore = min(t for t in stamps.values() if t >= restore_at)
    assert (restore["last_before_ns"], restore["first_after_ns"]) == (before_restore, after_restore)
    assert cut["applied_ns"] >= cut_at and restore["applied_ns"] >= restore_at
    stats = testbed.stats()
    assert stats[CABLE][sumgait_to_aktau]["drops"]["outage"] >= len(inside)
    assert stats[CABLE]["cut"] is False
    assert_invariant(stats)


@needs_ping
def test_two_shards_forward_a_path_across_both_and_counters_add_up(make_testbed: Any) -> None:
    testbed = make_testbed(default_topology(), shards=2)
    before = testbed.stats()
    shard_of = {name: entry["shard"] for name, entry in before.items()}
    assert set(shard_of.values()) == {0, 1}, f"links not split between two shards: {shard_of}"
    result = ping(testbed, "europe", "asia", count=50, interval_s=0.01)
    assert result.received == 50, result
    after = testbed.stats()
    for name in after:
        for direction in ("a_to_b", "b_to_a"):
            sent = after[name][direction]["tx_packets"] - before[name][direction]["tx_packets"]
            # each of the 50 requests crosses every link one way, each reply the other
            assert sent >= 50, f"{name} {direction} (shard {shard_of[name]}) forwarded {sent} frames"
    assert_invariant(after)
    # the scheduled-change path works per shard too
    at = time.time_ns() + 50_000_000
    testbed.schedule([{"at_ns": at, "link": name, "kind": "cut", "direction": "both"} for name in after])
    time.sleep(0.3)
    ping(testbed, "europe", "asia", count=3, interval_s=0.01)
    status = testbed.schedule_status()
    assert all(d["applied_ns"] is not None for entry in status for d in entry["directions"].values()), status
    assert all(entry["cut"] for entry in testbed.stats().values())


@needs_ping
def test_a_25_router_grid_forwards_corner_to_corner_and_leaves_nothing(make_testbed: Any) -> None:
    """A 5x5 router grid with its two corner hosts, engine and all: a ping crosses
    it (10 links each way) and the testbed goes without a trace (make_testbed checks
    namespaces, run directory and engine process after the test)."""
    from emulator.bench.grid import grid_topology

    topology = grid_topology(5, 5)
    hosts = [node.name for node in topology.nodes if node.role == "host"]
    testbed = make_testbed(topology)
    assert len(testbed.stats()) == len(topology.links) == 42
    result = ping(testbed, hosts[0], hosts[-1], count=5, interval_s=0.02)
    assert result.received == 5, result
    assert_invariant(testbed.stats())
