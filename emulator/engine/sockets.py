"""AF_PACKET sockets for the engine's link ends, with the options veth needs.

Created in Python (the engine only gets file descriptors) so every option is
visible and testable here. Must be called inside the wire namespace.
"""

from __future__ import annotations

import socket
import struct

from emulator.network.kernel import socket_buffers

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
SO_TIMESTAMPNS = 35

#: Socket buffers sized for rate x delay with headroom: 1 Gbit/s x 4 ms ≈ 0.5 MB,
#: 10 Gbit/s bursts need more; the kernel doubles this figure internally.
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024


def open_link_end(ifname: str, *, buffer_bytes: int = DEFAULT_BUFFER_BYTES) -> socket.socket:
    """A raw packet socket bound to `ifname`, ready for the engine.

    - PACKET_IGNORE_OUTGOING: the engine's own sends are not looped back to it
      (otherwise every frame is seen twice).
    - PACKET_QDISC_BYPASS: sends go straight to the veth, no qdisc on the way.
    - SO_TIMESTAMPNS: each frame carries its kernel arrival time, so delay is
      measured from arrival, not from when the loop got round to it.
    - SO_RCVBUFFORCE/SO_SNDBUFFORCE: large buffers so bursts are not dropped
      before the engine sees them (what is dropped shows in PACKET_STATISTICS);
      in a rootless sandbox what net.core.rmem_max/wmem_max give (kernel.socket_buffers).
    """
    # Protocol 0 at creation, ETH_P_ALL at bind: a socket created with a
    # protocol is hooked into the stack at once, and bind() then unhooks it
    # again, which waits for an RCU grace period (synchronize_net, ~10 ms):
    # 364 link ends would cost seconds. Created unhooked, bind hooks it once.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        socket_buffers(sock, buffer_bytes)
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def close_all(sockets: list[socket.socket]) -> None:
    """Close many link-end sockets at once.

    Closing an AF_PACKET socket waits for an RCU grace period
    (synchronize_net in packet_release, ~10 ms here); one after another, a
    testbed of 182 links took 4 s to stop. Closed from many threads, the
    waits overlap and share grace periods.
    """
    from concurrent.futures import ThreadPoolExecutor

    if len(sockets) <= 2:
        for sock in sockets:
            sock.close()
        return
    with ThreadPoolExecutor(max_workers=min(64, len(sockets)), thread_name_prefix="caspian-close") as pool:
        list(pool.map(lambda sock: sock.close(), sockets))


def kernel_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped at this socket since the last call (receive buffer full)."""
    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    _packets, drops = struct.unpack("II", raw)
    return drops
