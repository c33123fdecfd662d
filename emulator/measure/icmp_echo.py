"""Round trips to an address by ICMP echo, stamped by the kernel: an underlay's own delay.

The machines of a run are joined by an underlay whose delay the run takes
off each crossing link's (emulator.model.underlay). To measure the underlay
and not the measuring program, the far end is the far kernel itself (it
answers an echo request in its receive path, RFC 792) and the answer's time
is the kernel's receive stamp (SO_TIMESTAMPNS); only the send time is read
in user space, just before the request is handed to the kernel. A Python
echo responder at the far end (emulator.multihost.echo) adds its own
scheduling to every answer: on a loaded 2-core host, 1.5-2 ms p99 less
median in a CI run, where the kernel answers in microseconds.

Echoes go one at a time, each after the last one's answer, so none queues
behind another.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time

from emulator.errors import TestbedError
from emulator.network import kernel

SO_TIMESTAMPNS = 35
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
#: the echo's payload: 56 bytes, as ping's
PAYLOAD = bytes(range(56))


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    """An ICMP echo request with identifier `ident` and sequence number `seq`."""
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + PAYLOAD), ident, seq) + PAYLOAD


def parse_reply(datagram: bytes) -> tuple[int, int] | None:
    """(identifier, sequence) of an IPv4 datagram holding an ICMP echo reply, else None."""
    if len(datagram) < 20:
        return None
    start = (datagram[0] & 0x0F) * 4
    if len(datagram) < start + 8 or datagram[start] != ICMP_ECHO_REPLY:
        return None
    ident, seq = struct.unpack("!HH", datagram[start + 4:start + 8])
    return ident, seq


def round_trips(netns: str, address: str, count: int, *, interval_s: float = 0.002,
                timeout_s: float = 1.0, warmup: int = 3) -> list[int]:
    """`count` echo round trips (ns) from namespace `netns` to IPv4 `address`.

    The first `warmup` echoes are not counted (the first waits for ARP).
    Raises TestbedError naming the echo that got no answer within `timeout_s`.
    """
    with kernel.in_netns(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = (os.getpid() ^ id(sock)) & 0xFFFF
    rtts: list[int] = []
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        for seq in range(warmup + count):
            request = echo_request(ident, seq)
            sent_ns = time.time_ns()        # CLOCK_REALTIME, as the receive stamp
            sock.sendto(request, (address, 0))
            stamp = _wait_reply(sock, ident, seq, time.monotonic() + timeout_s)
            if stamp is None:
                raise TestbedError(f"echo {seq} to {address} (from {netns}) got no answer within {timeout_s:g} s")
            if seq >= warmup:
                rtts.append(stamp - sent_ns)
            time.sleep(interval_s)
    finally:
        sock.close()
    return rtts


def _wait_reply(sock: socket.socket, ident: int, seq: int, deadline: float) -> int | None:
    """The kernel's receive stamp (ns) of the reply to (ident, seq), None at the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return None
        data, ancillary, _flags, _addr = sock.recvmsg(2048, 64)
        if parse_reply(data) != (ident, seq):
            continue            # another echo's answer, or other ICMP
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                return sec * 1_000_000_000 + nsec
        return time.time_ns()   # no stamp: the kernel gave none (not expected on Linux)
