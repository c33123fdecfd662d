"""UDP probe streams with one-way delays: `python -m emulator.traffic.probe send|recv ...`.

- `send TARGET PORT RATE_PPS SIZE START_AT_NS STOP_AT_NS SUMMARY_PATH [--ipv6]
  [--realtime=P] [--t0-from-stdin]` runs in the source node (with
  `--t0-from-stdin`, START/STOP count from a t0 it reads on stdin once it has
  said `ready` on stdout: see `sender_argv`). TARGET (a node name) resolves with getaddrinfo
  (the node's /etc/hosts is the testbed's). scapy builds the packet once as
  a template; each probe patches its sequence number (u64) and its
  CLOCK_REALTIME send time in ns (u64, taken right before the send) into the
  first 16 payload bytes, big-endian, and, when the payload has room (24
  bytes or more), a check word after them (see `check_word`); the rest of
  the payload is zeros. Probes are paced to RATE_PPS between
  the absolute CLOCK_REALTIME times START_AT_NS and STOP_AT_NS (it waits for
  the start): it sleeps while the next send is more than 300 µs away and
  spins the rest. If it falls more than 1 ms behind, it does not catch up in
  a burst: it skips the slots passed over, counted as `skipped`, and keeps
  to the schedule's grid (sent + skipped = the slots between start and stop). Sequence numbers count sent probes (0..sent-1), so
  a skip is never mistaken for loss. On exit (stop time, SIGTERM, SIGINT)
  it writes SUMMARY_PATH: JSON {"sent", "first_ns", "last_ns",
  "interval_ns", "skipped"}.
- `recv PORT OUT_PATH [--ipv6]` runs in the target node: a UDP socket bound
  to PORT with SO_TIMESTAMPNS (the kernel's receive stamp, the same
  CLOCK_REALTIME as the sender's: every node shares the host's clock, so the
  one-way delay is exact). It records until SIGTERM/SIGINT, then writes
  OUT_PATH and exits 0. A datagram that is not an intact probe (too short,
  a check word or padding that does not match, a value past int64: a link's
  `corrupt` flips one bit, and the IPv4 probes carry no UDP checksum that
  would make the kernel drop it) is counted as `corrupted` and not
  recorded, so it counts as lost; it never stops the receiver.

Sockets. IPv4: AF_INET/SOCK_RAW/IPPROTO_RAW (IP_HDRINCL implied); the whole
scapy-built IPv4+UDP packet is sent, the kernel fills in the IP checksum and
ID; the UDP checksum is 0 ("none", allowed for IPv4), so patching the payload
needs no recomputation. IPv6: a UDP checksum is mandatory. The sender uses
AF_INET6/SOCK_RAW/IPPROTO_UDP with `IPV6_CHECKSUM` = 6 (the UDP checksum's
offset): the kernel builds the IPv6 header and computes the UDP checksum over
the pseudo-header for every packet (writing 0xffff for a zero result, as
RFC 8200 requires for UDP), so the template is scapy's UDP header + payload
and no per-packet checksum work happens in Python. (`udp_checksum` below
computes the same for tests.)

Records file (OUT_PATH): one JSON header line
`{"format": "caspian-probe-records", "version": 1, "count": N, "byteorder": ..., "corrupted": C}`
followed by three arrays of N signed 64-bit integers (`array('q')`, native
byte order as named in the header): seq, send_ns, recv_ns, in arrival order.
Binary rather than JSON: 200k records are 4.8 MB and load in milliseconds.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import struct
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from emulator.network.kernel import socket_buffers

#: sequence number, send time (ns, CLOCK_REALTIME): the first 16 payload bytes
PROBE_HEADER = struct.Struct("!QQ")
MIN_SIZE = PROBE_HEADER.size
#: ... followed by the check word when the payload has room for it
CHECKED_HEADER = struct.Struct("!QQQ")
CHECKED_SIZE = CHECKED_HEADER.size
#: mixed into every check word, so a payload of zeros is not a valid probe
CHECK_MAGIC = 0x6373_7020_7072_6F62  # "csp prob"
#: the largest value a records column (int64) holds
INT64_MAX = (1 << 63) - 1
RECORDS_FORMAT = "caspian-probe-records"
SO_TIMESTAMPNS = 35
IPV6_CHECKSUM = 7
SLEEP_MARGIN_NS = 300_000   # sleep while the next send is further away than this; spin the rest
BEHIND_LIMIT_NS = 1_000_000  # further behind than this: restart the schedule, count the slots skipped
#: the probes that left more than one interval late, as [seq, ns late], kept up to this many
#: (a gap between two received probes is longer by the sender's lateness inside it)
LATE_EVENTS_MAX = 4096


@dataclass
class ProbeRecords:
    """Every intact probe the receiver got, in arrival order (duplicates included),
    and how many datagrams it refused as corrupted."""

    seq: list[int] = field(default_factory=list)
    send_ns: list[int] = field(default_factory=list)
    recv_ns: list[int] = field(default_factory=list)
    corrupted: int = 0

    def __len__(self) -> int:
        return len(self.seq)


class _Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler to end a loop."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop(signum)


def _install_stop_handlers() -> None:
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)


def _ignore_stop_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------ argv helpers for the runner


def sender_argv(target: str, port: int, rate_pps: float, size: int, start_at_ns: int, stop_at_ns: int,
                summary_path: str, ipv6: bool = False, realtime_priority: int = 0, *,
                t0_from_stdin: bool = False) -> list[str]:
    """The command line of a sender (run it in the source node).

    `realtime_priority` > 0: the sender takes SCHED_FIFO at that priority once
    it is ready to send (not before: its start-up, scapy's import, would
    otherwise hold the CPU the receivers and daemons start on).

    `t0_from_stdin`: START/STOP are ns from a t0 the sender is told later. Once
    ready to send it writes `ready` on stdout and reads t0 (CLOCK_REALTIME ns)
    from stdin, so the run can fix t0 after its senders' start-up, however
    long a loaded CPU makes it, rather than guess a lead time."""
    argv = [sys.executable, "-m", "emulator.traffic.probe", "send", target, str(port), f"{rate_pps:g}",
            str(size), str(int(start_at_ns)), str(int(stop_at_ns)), summary_path]
    if realtime_priority > 0:
        argv.append(f"--realtime={realtime_priority}")
    if t0_from_stdin:
        argv.append(T0_FROM_STDIN)
    return argv + (["--ipv6"] if ipv6 else [])


#: the sender's flag: START/STOP count from a t0 read on stdin after it says `ready`
T0_FROM_STDIN = "--t0-from-stdin"
#: what a sender writes on stdout once it is ready to send
READY_LINE = "ready"


def _t0_from_stdin() -> int | None:
    """Say `ready` on stdout and read t0 (ns) from stdin; None when stdin closes first (the run stopped)."""
    sys.stdout.write(READY_LINE + "\n")
    sys.stdout.flush()
    line = sys.stdin.readline()
    return int(line) if line.strip() else None


def receiver_argv(port: int, out_path: str, ipv6: bool = False) -> list[str]:
    """The command line of a receiver (run it in the target node, before the sender starts)."""
    argv = [sys.executable, "-m", "emulator.traffic.probe", "recv", str(port), out_path]
    return argv + (["--ipv6"] if ipv6 else [])


def load_summary(path: str) -> dict[str, Any]:
    """The sender's summary {"sent", "first_ns", "last_ns", "interval_ns", "skipped", the pacing
    error "late_max_ns", "late_over_interval", "late_events" ([seq, ns], the probes that left
    over an interval late) and "late_events_complete"}."""
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def dump_records(records: ProbeRecords) -> bytes:
    """The records file's bytes (header line + three int64 arrays)."""
    header = {"format": RECORDS_FORMAT, "version": 1, "count": len(records.seq), "byteorder": sys.byteorder,
              "fields": ["seq", "send_ns", "recv_ns"], "corrupted": int(records.corrupted)}
    out = json.dumps(header).encode() + b"\n"
    for column in (records.seq, records.send_ns, records.recv_ns):
        out += array("q", column).tobytes()
    return out


def load_records(path: str) -> ProbeRecords:
    """Read a receiver's records file."""
    with open(path, "rb") as fh:
        header = json.loads(fh.readline())
        if header.get("format") != RECORDS_FORMAT:
            raise ValueError(f"{path}: not a probe records file")
        count = int(header["count"])
        columns = []
        for _ in range(3):
            column = array("q")
            column.frombytes(fh.read(8 * count))
            if len(column) != count:
                raise ValueError(f"{path}: truncated ({len(column)} of {count} values)")
            if header.get("byteorder", sys.byteorder) != sys.byteorder:
                column.byteswap()
            columns.append(column.tolist())
    seq, send_ns, recv_ns = columns
    return ProbeRecords(seq, send_ns, recv_ns, corrupted=int(header.get("corrupted", 0)))


# ------------------------------------------------------------------ packets


def check_word(seq: int, send_ns: int, payload_bytes: int) -> int:
    """The check word of a probe: its sequence number, send time and payload
    length XORed with CHECK_MAGIC.

    One flipped bit anywhere in the first 24 bytes changes one side of the
    equation and not the other, and a datagram cut short changes the length;
    one XOR per probe keeps the sender's cost per packet where it was.
    """
    return seq ^ send_ns ^ payload_bytes ^ CHECK_MAGIC


def parse_probe(data: bytes) -> tuple[int, int] | None:
    """(seq, send_ns) of an intact probe payload; None for anything else.

    Refused: a payload shorter than MIN_SIZE; from CHECKED_SIZE bytes on, a
    check word that does not match or padding that is not all zeros (where a
    flipped bit lands in most probes); a sequence number or send time that
    does not fit the records' int64 columns. A payload of 16..23 bytes has
    no check word: only the last test applies to it.
    """
    size = len(data)
    if size < MIN_SIZE:
        return None
    if size >= CHECKED_SIZE:
        seq, send_ns, check = CHECKED_HEADER.unpack_from(data)
        if check != check_word(seq, send_ns, size) or data.count(0, CHECKED_SIZE) != size - CHECKED_SIZE:
            return None
    else:
        seq, send_ns = PROBE_HEADER.unpack_from(data)
    if seq > INT64_MAX or send_ns > INT64_MAX:
        return None
    return seq, send_ns


def udp_checksum(src: str, dst: str, udp: bytes, ipv6: bool) -> int:
    """The UDP checksum of `udp` (header with checksum field 0 + payload) between src and dst."""
    if ipv6:
        pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        pseudo += struct.pack("!I3xB", len(udp), socket.IPPROTO_UDP)
    else:
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!xBH", socket.IPPROTO_UDP, len(udp))
    data = pseudo + udp + (b"\0" if len(udp) % 2 else b"")
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    return checksum or 0xFFFF


def resolve(target: str, ipv6: bool) -> str:
    """TARGET's address of the chosen family (node names resolve via the node's /etc/hosts)."""
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    infos = socket.getaddrinfo(target, None, family, socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {target!r}")
    return str(infos[0][4][0])


def source_address(dst: str, ipv6: bool) -> str:
    """The address the kernel would send from towards `dst` (a connected UDP socket; nothing is sent)."""
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((dst, 9))
        return str(probe.getsockname()[0])


def build_template(src: str, dst: str, sport: int, dport: int, size: int, ipv6: bool) -> tuple[bytearray, int]:
    """The bytes the raw socket sends and the payload's offset in them.

    IPv4: IP + UDP (checksum 0) + payload. IPv6: UDP + payload (the kernel
    adds the IPv6 header and the checksum).
    """
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw

    payload = bytes(max(size, MIN_SIZE))
    if ipv6:
        udp = UDP(sport=sport, dport=dport, chksum=0) / Raw(payload)
        return bytearray(bytes(udp)), 8
    packet = IP(src=src, dst=dst, ttl=64) / UDP(sport=sport, dport=dport, chksum=0) / Raw(payload)
    raw = bytes(packet)
    return bytearray(raw), len(raw) - len(payload)


# ------------------------------------------------------------------ sender


def _wait_until(deadline_ns: int) -> None:
    """Sleep while more than SLEEP_MARGIN_NS away from `deadline_ns`, then spin."""
    while True:
        left = deadline_ns - time.time_ns()
        if left <= 0:
            return
        if left > SLEEP_MARGIN_NS:
            time.sleep((left - SLEEP_MARGIN_NS) / 1e9)


def send(target: str, port: int, rate_pps: float, size: int, start_at_ns: int, stop_at_ns: int,
         summary_path: str, ipv6: bool = False, realtime_priority: int = 0, t0_from_stdin: bool = False) -> dict[str, Any]:
    """Send the paced stream; write and return the summary (`t0_from_stdin`: see sender_argv)."""
    if rate_pps <= 0:
        raise ValueError("RATE_PPS must be > 0")
    interval = max(1, round(1e9 / rate_pps))
    # late_max_ns / late_over_interval: the sender's pacing error (how late a
    # probe left against its slot), part of the run's fidelity
    late_events: list[list[int]] = []
    summary: dict[str, Any] = {"sent": 0, "first_ns": 0, "last_ns": 0, "interval_ns": interval, "skipped": 0,
                               "late_max_ns": 0, "late_over_interval": 0, "late_events": late_events,
                               "late_events_complete": True}
    _install_stop_handlers()
    try:
        dst = resolve(target, ipv6)
        src = source_address(dst, ipv6)
        template, offset = build_template(src, dst, port, port, size, ipv6)
        if ipv6:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 6)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        with sock:
            # never read: a raw IPPROTO_UDP socket also gets copies of arriving UDP datagrams (dropped here)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
            address = (dst, 0)
            sendto, now_ns = sock.sendto, time.time_ns
            payload_bytes = len(template) - offset
            checked = payload_bytes >= CHECKED_SIZE
            check_key = check_word(0, 0, payload_bytes)  # check_word(seq, t, n) == seq ^ t ^ check_key
            if realtime_priority > 0:
                try:
                    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime_priority))
                except OSError:
                    pass  # unprivileged: normal priority, the pacing error is in the summary
            if t0_from_stdin:
                t0 = _t0_from_stdin()
                if t0 is None:
                    raise _Stop()
                start_at_ns, stop_at_ns = t0 + start_at_ns, t0 + stop_at_ns
            _wait_until(start_at_ns)
            due = start_at_ns
            seq = 0
            while due < stop_at_ns:
                _wait_until(due)
                now = now_ns()
                late = now - due
                if late > summary["late_max_ns"]:
                    summary["late_max_ns"] = late
                if late > interval:
                    summary["late_over_interval"] += 1
                    if len(late_events) < LATE_EVENTS_MAX:
                        late_events.append([seq, late])
                    else:
                        summary["late_events_complete"] = False
                if late > BEHIND_LIMIT_NS:
                    # skip the slots passed over and keep to the schedule's grid, so
                    # that sent + skipped counts every slot exactly
                    missed = late // interval
                    summary["skipped"] += missed
                    due += missed * interval
                stamp = now_ns()
                if checked:
                    CHECKED_HEADER.pack_into(template, offset, seq, stamp, seq ^ stamp ^ check_key)
                else:
                    PROBE_HEADER.pack_into(template, offset, seq, stamp)
                try:
                    sendto(template, address)
                except OSError as exc:  # a full queue (ENOBUFS/EAGAIN): the probe is lost at the source,
                    if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):  # counted as sent and as lost
                        raise
                if seq == 0:
                    summary["first_ns"] = now
                summary["last_ns"] = now
                seq += 1
                summary["sent"] = seq
                due += interval
    except _Stop:
        pass
    finally:
        _ignore_stop_signals()
        _write_atomic(summary_path, json.dumps(summary).encode())
    return summary


# ------------------------------------------------------------------ receiver


def receive(port: int, out_path: str, ipv6: bool = False) -> int:
    """Record probes until SIGTERM/SIGINT, then write OUT_PATH; the number of datagrams recorded."""
    seqs, sent, arrived = array("q"), array("q"), array("q")
    corrupted = 0
    _install_stop_handlers()
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        with sock:
            socket_buffers(sock, 16 * 1024 * 1024, send=False)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if ipv6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(("::" if ipv6 else "0.0.0.0", port))
            stamp = struct.Struct("qq").unpack_from
            recvmsg = sock.recvmsg
            cmsg_space = socket.CMSG_SPACE(16)
            while True:
                data, ancdata, _flags, _addr = recvmsg(65536, cmsg_space)
                probe = parse_probe(data)
                if probe is None:
                    corrupted += 1
                    continue
                recv_ns = 0
                for level, kind, value in ancdata:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = stamp(value)
                        recv_ns = sec * 1_000_000_000 + nsec
                if not recv_ns:
                    recv_ns = time.time_ns()
                seq, send_ns = probe
                seqs.append(seq)
                sent.append(send_ns)
                arrived.append(recv_ns)
    except _Stop:
        pass
    finally:
        _ignore_stop_signals()
        records = ProbeRecords(seqs, sent, arrived, corrupted)  # type: ignore[arg-type]  # arrays serialize the same
        _write_atomic(out_path, dump_records(records))
    return len(seqs)


# ------------------------------------------------------------------ command line

USAGE = (
    "usage: python -m emulator.traffic.probe send TARGET PORT RATE_PPS SIZE START_AT_NS STOP_AT_NS SUMMARY_PATH [--ipv6]"
    " [--realtime=PRIORITY] [--t0-from-stdin]\n"
    "       python -m emulator.traffic.probe recv PORT OUT_PATH [--ipv6]"
)


def main(argv: list[str]) -> int:
    ipv6 = "--ipv6" in argv
    realtime = [int(a.split("=", 1)[1]) for a in argv if a.startswith("--realtime=")]
    t0_from_stdin = T0_FROM_STDIN in argv
    args = [a for a in argv if a not in ("--ipv6", T0_FROM_STDIN) and not a.startswith("--realtime=")]
    try:
        if args and args[0] == "send" and len(args) == 8:
            send(args[1], int(args[2]), float(args[3]), int(args[4]), int(args[5]), int(args[6]), args[7], ipv6,
                 realtime_priority=realtime[0] if realtime else 0, t0_from_stdin=t0_from_stdin)
            return 0
        if args and args[0] == "recv" and len(args) == 3:
            receive(int(args[1]), args[2], ipv6)
            return 0
    except ValueError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a socket or file the tool needs: one line for the run's error list
        print(f"probe: {exc}", file=sys.stderr)
        return 1
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
