"""The probe receiver takes any datagram: a corrupted probe is counted, never a crash.

A link's `corrupt` flips one bit past the Ethernet header, and IPv4 probes
carry no UDP checksum, so the receiver sees the damaged payload: a flipped
top bit of the sequence number used to stop it with OverflowError (array('q')).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.traffic.analysis import analyze_probes, corrupted_count, probe_series
from emulator.traffic.probe import (
    CHECKED_HEADER,
    CHECKED_SIZE,
    MIN_SIZE,
    PROBE_HEADER,
    ProbeRecords,
    check_word,
    dump_records,
    load_records,
    parse_probe,
)

REPO = Path(__file__).resolve().parents[2]
SEND_NS = 1_764_000_000_000_000_000


def probe(seq: int, send_ns: int = SEND_NS, size: int = 64) -> bytes:
    """A probe payload as the sender writes it."""
    payload = bytearray(size)
    if size >= CHECKED_SIZE:
        CHECKED_HEADER.pack_into(payload, 0, seq, send_ns, check_word(seq, send_ns, size))
    else:
        PROBE_HEADER.pack_into(payload, 0, seq, send_ns)
    return bytes(payload)


def flipped(data: bytes, bit: int) -> bytes:
    """`data` with bit `bit` flipped (bit 0 = the lowest of byte 0; 7 = its highest)."""
    damaged = bytearray(data)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


def test_an_intact_probe_parses() -> None:
    assert parse_probe(probe(7)) == (7, SEND_NS)
    assert parse_probe(probe(7, size=MIN_SIZE)) == (7, SEND_NS)
    assert parse_probe(probe(2**63 - 1)) == (2**63 - 1, SEND_NS)


@pytest.mark.parametrize("size", [CHECKED_SIZE, 64, 1400])
def test_every_single_bit_flip_is_refused(size: int) -> None:
    """What a link's `corrupt` does to a probe's payload, at every position."""
    intact = probe(123_456, size=size)
    refused = [bit for bit in range(8 * size) if parse_probe(flipped(intact, bit)) is None]
    assert len(refused) == 8 * size


def test_a_short_probe_keeps_only_the_range_check() -> None:
    """16..23 bytes have no room for the check word: values past int64 are still refused."""
    intact = probe(5, size=MIN_SIZE)
    assert parse_probe(flipped(intact, 7)) is None   # the sequence number's top bit
    assert parse_probe(flipped(intact, 71)) is None  # the send time's top bit
    assert parse_probe(flipped(intact, 0)) == (5 + (1 << 56), SEND_NS)  # a lower one passes: no room to tell


@pytest.mark.parametrize("data", [b"", b"x" * (MIN_SIZE - 1), bytes(64), b"\xff" * 64, probe(1)[:40],
                                  probe(1) + b"\0"])
def test_foreign_or_cut_datagrams_are_refused(data: bytes) -> None:
    assert parse_probe(data) is None


def test_records_keep_the_corrupted_count(tmp_path: Path) -> None:
    path = tmp_path / "records"
    path.write_bytes(dump_records(ProbeRecords([0, 1], [10, 20], [15, 25], corrupted=3)))
    loaded = load_records(str(path))
    assert (loaded.seq, loaded.corrupted) == ([0, 1], 3)


def test_analysis_keeps_stray_sequence_numbers_out() -> None:
    """A flipped bit a short probe could not show: a sequence number past `sent` is no probe."""
    records = ProbeRecords([0, 1, 1 << 40, 2], [0, 10, 20, 30], [5, 15, 25, 35], corrupted=2)
    metrics = analyze_probes(records, 4, 10)
    assert (metrics["received"], metrics["duplicates"], metrics["loss_pct"]) == (3.0, 0.0, 25.0)
    assert corrupted_count(records, 4) == 3
    series = probe_series(records, 0, sent_times=[0, 10, 20, 30])
    assert len(series["owd_ms"]) == 3


def test_every_probe_duplicated() -> None:
    """duplicate 100%: each probe twice, nothing lost."""
    seqs = [k for k in range(100) for _ in (0, 1)]
    records = ProbeRecords(seqs, [k * 10 for k in seqs], [k * 10 + 3 for k in seqs])
    metrics = analyze_probes(records, 100, 10)
    assert (metrics["received"], metrics["duplicates"], metrics["loss_pct"]) == (100.0, 100.0, 0.0)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_receiver_process_counts_what_it_cannot_read(tmp_path: Path) -> None:
    """The real receiver on loopback: intact, corrupted, foreign and oversized values, then SIGTERM."""
    port, out = free_udp_port(), tmp_path / "records"
    receiver = subprocess.Popen([sys.executable, "-m", "emulator.traffic.probe", "recv", str(port), str(out)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        datagrams = [probe(0), flipped(probe(1), 7), probe(1), b"hello", probe(2), probe(2),
                     flipped(probe(3, size=MIN_SIZE), 7), struct.pack("!QQ", 2**64 - 1, 2**64 - 1)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            deadline = time.monotonic() + 10
            while not _bound(port) and time.monotonic() < deadline:  # it takes a moment to start
                time.sleep(0.02)
            for data in datagrams:
                sender.sendto(data, ("127.0.0.1", port))
        time.sleep(0.3)
        receiver.send_signal(signal.SIGTERM)
        _, err = receiver.communicate(timeout=10)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    assert receiver.returncode == 0, err
    records = load_records(str(out))
    assert records.seq == [0, 1, 2, 2]
    assert records.corrupted == 4


def _bound(port: int) -> bool:
    """True once something listens on UDP `port` here (/proc/net/udp, port in hex)."""
    with open("/proc/net/udp") as fh:
        return any(line.split()[1].endswith(f":{port:04X}") for line in fh.readlines()[1:])


def test_the_receiver_exits_cleanly_without_a_socket(tmp_path: Path) -> None:
    """A port it cannot bind: one line and exit 1, no traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "emulator.traffic.probe", "recv", str(port),
                               str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert os.path.exists(tmp_path / "r")  # the (empty) records are still written
