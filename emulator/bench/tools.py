"""Traffic tools the benchmark runs inside nodes: `python -m emulator.bench.tools CMD ...`.

- `pps-send IFNAME SECONDS SIZE [RATE_PPS [BATCH]]`: raw frames as fast as the socket
  takes them (or paced), from the compiled sender; prints JSON {sent, refused}.
- `pps-recv IFNAME SECONDS`: counts benchmark frames; prints JSON.
- `probe-send IFNAME SECONDS RATE_PPS`: timestamped probe frames.
- `probe-recv IFNAME SECONDS`: prints the one-way delay of every probe (ns),
  from the sender's CLOCK_REALTIME stamp to the kernel's arrival stamp: both
  ends share one clock, so the delay is exact.

Frames are addressed to the broadcast MAC with IEEE "local experimental"
EtherTypes, so a bridge forwards them without learning and the receiving
stack drops them cheaply after the counter has seen them.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

from emulator import _engine
from emulator.engine.sockets import ETH_P_ALL, SO_TIMESTAMPNS
from emulator.network.kernel import socket_buffers

BLAST_ETHERTYPE = 0x88B5
PROBE_ETHERTYPE = 0x88B6
BROADCAST = b"\xff" * 6
_PROBE = struct.Struct("!QQ")  # sequence number, send time (ns, CLOCK_REALTIME)


def _socket(ifname: str, *, timestamps: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    socket_buffers(sock, 32 * 1024 * 1024)
    sock.setsockopt(263, 20, 1)  # PACKET_QDISC_BYPASS: a sender as fast as the socket allows
    if timestamps:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((ifname, ETH_P_ALL))
    return sock


def frame(ifname_mac: bytes, ethertype: int, size: int) -> bytes:
    """A broadcast frame of `size` bytes (without FCS) from `ifname_mac`."""
    header = BROADCAST + ifname_mac + struct.pack("!H", ethertype)
    return header + bytes(max(0, size - len(header)))


def pps_send(ifname: str, seconds: float, size: int, rate_pps: float = 0.0, batch: int = 64) -> dict:
    with _socket(ifname) as sock:
        mac = sock.getsockname()[4][:6]
        sent, refused = _engine.blast(sock.fileno(), frame(mac, BLAST_ETHERTYPE, size), seconds, batch, rate_pps)
    return {"sent": sent, "refused": refused, "seconds": seconds}


def pps_recv(ifname: str, seconds: float) -> dict:
    with _socket(ifname, timestamps=True) as sock:
        return _engine.count_frames(sock.fileno(), seconds, BLAST_ETHERTYPE)


def probe_send(ifname: str, seconds: float, rate_pps: float) -> dict:
    with _socket(ifname) as sock:
        mac = sock.getsockname()[4][:6]
        header = BROADCAST + mac + struct.pack("!H", PROBE_ETHERTYPE)
        sent = _engine.send_probes(sock.fileno(), header, seconds, rate_pps, 60)
    return {"sent": sent}


def probe_recv(ifname: str, seconds: float) -> dict:
    delays: list[int] = []
    seqs: list[int] = []
    with _socket(ifname, timestamps=True) as sock:
        sock.settimeout(0.2)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, ancdata, _flags, addr = sock.recvmsg(2048, 64)
            except socket.timeout:
                continue
            if addr[2] == socket.PACKET_OUTGOING or len(data) < 14 + _PROBE.size:
                continue
            if struct.unpack_from("!H", data, 12)[0] != PROBE_ETHERTYPE:
                continue
            seq, sent_ns = _PROBE.unpack_from(data, 14)
            stamp = None
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec * 1_000_000_000 + nsec
            if stamp is None:
                stamp = time.time_ns()
            seqs.append(seq)
            delays.append(stamp - sent_ns)
    return {"received": len(delays), "delays_ns": delays, "seqs": seqs}


COMMANDS = {
    "pps-send": lambda a: pps_send(a[0], float(a[1]), int(a[2]), float(a[3]) if len(a) > 3 else 0.0,
                                   int(a[4]) if len(a) > 4 else 64),
    "pps-recv": lambda a: pps_recv(a[0], float(a[1])),
    "probe-send": lambda a: probe_send(a[0], float(a[1]), float(a[2])),
    "probe-recv": lambda a: probe_recv(a[0], float(a[1])),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m emulator.bench.tools {{{','.join(COMMANDS)}}} ARGS...", file=sys.stderr)
        return 2
    print(json.dumps(COMMANDS[argv[0]](argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
