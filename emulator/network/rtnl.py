"""rtnetlink without a round trip per object: a pure encoder and a pipelining socket.

The encoder functions (`new_veth`, `set_link`, `new_address`, `new_route`,
`new_neighbour`) turn one request into the bytes of one netlink message:
`struct nlmsghdr`, the family header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`,
`ndmsg`) and its `rtattr`s, laid out as linux/netlink.h, linux/rtnetlink.h,
linux/if_link.h and linux/neighbour.h define them. They are pure and tested
against known byte layouts without root.

`RtnlSocket` is one NETLINK_ROUTE socket opened inside one namespace (it
stays there). `queue()` takes a message and a description of the object;
`flush()` sends the queued messages many per `send()` with NLM_F_ACK, reads
the acknowledgements, and raises TestbedError naming the first object the
kernel refused. The kernel handles the messages of one socket in the order
sent, so an address queued before a route that uses it is there in time.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from types import TracebackType

from emulator.errors import TestbedError
from emulator.network import kernel

# --- constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, ...) -------

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # error acks carry the request's header only, not its body
NETLINK_EXT_ACK = 11  # error acks carry the kernel's explanation (extack)

NLM_F_REQUEST = 0x001
NLM_F_ACK = 0x004
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # in an ack: TLVs follow the capped header
NLMSG_ERROR = 2
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK = 16
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RTM_NEWNEIGH = 28

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFF_UP = 0x1

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_F_NODAD = 0x02

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PREFSRC = 7
RT_TABLE_MAIN = 254
#: `proto static`, as pyroute2 wrote them before: routes an administrator configured
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

NDA_DST = 1
NDA_LLADDR = 2
NUD_PERMANENT = 0x80

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")  # family, pad, pad, ifindex, state, flags, type
_RTATTR = struct.Struct("=HH")  # len, type
_ERR = struct.Struct("=i")

#: flags of a request that creates an object and fails if it exists
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL

#: bytes queued before a send(): well below the default socket send buffer
#: (netlink refuses a message larger than sndbuf - 32)
SEND_CHUNK_BYTES = 64 * 1024
#: receive buffer asked for (SO_RCVBUFFORCE, we are root), so acks of a
#: whole chunk fit: a dropped ack would leave us waiting for it forever
RCVBUF_BYTES = 4 * 1024 * 1024


# --- encoding -------------------------------------------------------------------


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr: length, type, payload, padded to 4 bytes."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def attr_u32(kind: int, value: int) -> bytes:
    """An rtattr holding a native-endian u32."""
    return attr(kind, struct.pack("=I", value))


def attr_str(kind: int, value: str) -> bytes:
    """An rtattr holding a NUL-terminated string."""
    return attr(kind, value.encode() + b"\0")


def message(kind: int, flags: int, body: bytes, seq: int = 0) -> bytes:
    """One netlink message: nlmsghdr (pid 0: the kernel fills in ours) + body."""
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def set_seq(msg: bytes, seq: int) -> bytes:
    """`msg` with its nlmsghdr sequence number replaced."""
    return msg[:8] + struct.pack("=I", seq) + msg[12:]


def mac_bytes(mac: str) -> bytes:
    """'02:00:00:00:00:01' -> 6 bytes."""
    value = bytes.fromhex(mac.replace(":", ""))
    if len(value) != 6:
        raise ValueError(f"{mac!r} is not a MAC address")
    return value


def _ip(text: str) -> tuple[int, bytes]:
    """(address family, packed address) of an IPv4 or IPv6 address in text.

    inet_pton, not the ipaddress module: a large testbed encodes some
    100,000 addresses and ipaddress parses them ten times slower.
    """
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        return family, socket.inet_pton(family, text)
    except OSError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _prefix(text: str) -> tuple[int, bytes, int]:
    """(family, packed network address, prefix length) of "198.19.0.4/32"."""
    address, _, length = text.partition("/")
    family, packed = _ip(address)
    bits = 8 * len(packed)
    prefixlen = int(length) if length else bits
    if not 0 <= prefixlen <= bits:
        raise ValueError(f"{text!r} has a prefix length out of range")
    return family, packed, prefixlen


def _link_attrs(ifname: str, mtu: int, mac: str | None) -> bytes:
    attrs = attr_str(IFLA_IFNAME, ifname) + attr_u32(IFLA_MTU, mtu)
    if mac is not None:
        attrs += attr(IFLA_ADDRESS, mac_bytes(mac))
    return attrs


def new_veth(
    ifname: str,
    ifindex: int,
    mac: str,
    mtu: int,
    peer_ifname: str,
    peer_ifindex: int,
    peer_mac: str,
    peer_mtu: int,
    peer_netns_fd: int,
    *,
    up: bool = True,
) -> bytes:
    """RTM_NEWLINK for a veth pair with both ends' index, MAC and MTU given.

    The peer goes straight into the namespace open at `peer_netns_fd`.
    `up` sets IFF_UP on this end only: the kernel does not apply the peer's
    flags at creation, so the peer is brought up by `set_link` in its own
    namespace.
    """
    flags = IFF_UP if up else 0
    peer = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, peer_ifindex, 0, 0) + _link_attrs(peer_ifname, peer_mtu, peer_mac)
    peer += attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
    linkinfo = attr_str(IFLA_INFO_KIND, "veth") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, flags, IFF_UP) + _link_attrs(ifname, mtu, mac)
    body += attr(IFLA_LINKINFO, linkinfo)
    return message(RTM_NEWLINK, _CREATE, body)


def set_link(ifindex: int, *, up: bool = True, mtu: int | None = None) -> bytes:
    """RTM_SETLINK: set interface `ifindex` up (or down) and optionally its MTU."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, IFF_UP if up else 0, IFF_UP)
    if mtu is not None:
        body += attr_u32(IFLA_MTU, mtu)
    return message(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, body)


def new_address(ifindex: int, address: str, *, nodad: bool = False) -> bytes:
    """RTM_NEWADDR for `address` ("198.18.0.1/29", "2001:2::1/64") on interface `ifindex`.

    (A bare address is a host address, /32 or /128.)

    IFA_LOCAL and IFA_ADDRESS both carry the address, as `ip address add`
    sends them (for IPv4 IFA_LOCAL is the interface's own address).
    """
    family, packed, prefixlen = _prefix(address)
    flags = IFA_F_NODAD if nodad else 0
    body = _IFADDRMSG.pack(family, prefixlen, flags, RT_SCOPE_UNIVERSE, ifindex)
    body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    return message(RTM_NEWADDR, _CREATE, body)


def new_route(prefix: str, via: str, oif: int, prefsrc: str | None = None) -> bytes:
    """RTM_NEWROUTE in the main table: `prefix` via gateway `via` out of interface `oif`."""
    family, destination, prefixlen = _prefix(prefix)
    gateway_family, gateway = _ip(via)
    if gateway_family != family:
        raise ValueError(f"route {prefix} has a gateway {via} of the other family")
    body = _RTMSG.pack(family, prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    if prefixlen:
        body += attr(RTA_DST, destination)
    body += attr(RTA_GATEWAY, gateway) + attr_u32(RTA_OIF, oif)
    if prefsrc is not None:
        body += attr(RTA_PREFSRC, _ip(prefsrc)[1])
    return message(RTM_NEWROUTE, _CREATE, body)


def new_neighbour(ifindex: int, address: str, mac: str) -> bytes:
    """RTM_NEWNEIGH: a permanent ARP/ND entry `address` -> `mac` on interface `ifindex`."""
    family, packed = _ip(address)
    body = _NDMSG.pack(family, ifindex, NUD_PERMANENT, 0, 0)
    body += attr(NDA_DST, packed) + attr(NDA_LLADDR, mac_bytes(mac))
    return message(RTM_NEWNEIGH, _CREATE, body)


@dataclass(frozen=True)
class Ack:
    """One acknowledgement: the sequence number it answers, errno (0 = done), kernel's note."""

    seq: int
    error: int
    note: str = ""


def parse_acks(data: bytes) -> list[Ack]:
    """Acknowledgements (NLMSG_ERROR messages) in one datagram from the kernel; others are skipped."""
    acks = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break  # malformed: never loop forever on it
        if kind == NLMSG_ERROR:
            (error,) = _ERR.unpack_from(data, offset + _NLMSGHDR.size)
            note = ""
            if error and flags & NLM_F_ACK_TLVS:
                # capped ack: the TLVs follow the echoed 16-byte header
                note = _ack_note(data[offset + _NLMSGHDR.size + 4 + _NLMSGHDR.size : offset + length])
            acks.append(Ack(seq, -error, note))
        offset += _align(length)
    return acks


def _ack_note(tlvs: bytes) -> str:
    offset = 0
    while offset + _RTATTR.size <= len(tlvs):
        length, kind = _RTATTR.unpack_from(tlvs, offset)
        if length < _RTATTR.size:
            break
        if kind == NLMSGERR_ATTR_MSG:
            return tlvs[offset + _RTATTR.size : offset + length].rstrip(b"\0").decode(errors="replace")
        offset += _align(length)
    return ""


# --- the socket -----------------------------------------------------------------


class RtnlSocket:
    """A NETLINK_ROUTE socket inside one namespace that sends requests pipelined.

    Use as a context manager, or call `close()`.
    """

    def __init__(self, netns: str) -> None:
        self.netns = netns
        with kernel.in_netns(netns):
            # made here, the socket talks to this namespace for good
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            kernel.socket_buffers(self._sock, RCVBUF_BYTES, send=False)
            self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._seq = 0
        self._queued: list[bytes] = []
        self._what: dict[int, str] = {}

    def queue(self, msg: bytes, what: str) -> None:
        """Queue one request; `what` says what it does ("add route X via Y") for errors."""
        self._seq += 1
        self._queued.append(set_seq(msg, self._seq))
        self._what[self._seq] = what

    def flush(self) -> int:
        """Send every queued request and wait for all acks; the number sent.

        Raises TestbedError for the first refused request (in the order
        queued), naming its object and the kernel's reason.
        """
        sent = len(self._queued)
        failures: list[Ack] = []
        chunk: list[bytes] = []
        size = 0
        for msg in self._queued:
            if size + len(msg) > SEND_CHUNK_BYTES and chunk:
                failures += self._exchange(chunk)
                chunk, size = [], 0
            chunk.append(msg)
            size += len(msg)
        if chunk:
            failures += self._exchange(chunk)
        self._queued = []
        what = self._what
        self._what = {}
        if failures:
            first = min(failures, key=lambda ack: ack.seq)
            reason = os.strerror(first.error)
            if first.note:
                reason += f" ({first.note})"
            more = f"; {len(failures) - 1} more request(s) refused" if len(failures) > 1 else ""
            raise TestbedError(f"cannot {what.get(first.seq, f'do request {first.seq}')} in {self.netns}: {reason}{more}")
        return sent

    def _exchange(self, chunk: list[bytes]) -> list[Ack]:
        """Send one chunk in one datagram; read until each of its messages is acked; the errors."""
        first = struct.unpack_from("=I", chunk[0], 8)[0]
        pending = {struct.unpack_from("=I", msg, 8)[0] for msg in chunk}
        try:
            self._sock.send(b"".join(chunk))
        except OSError as exc:
            raise TestbedError(f"cannot send {len(chunk)} netlink requests in {self.netns}: {exc.strerror}") from exc
        failures = []
        while pending:
            try:
                data = self._sock.recv(1 << 20)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    raise TestbedError(
                        f"netlink acks lost in {self.netns} (receive buffer overrun): raise RCVBUF_BYTES"
                    ) from exc
                raise TestbedError(f"cannot read netlink acks in {self.netns}: {exc.strerror}") from exc
            for ack in parse_acks(data):
                if ack.seq < first or ack.seq not in pending:
                    continue  # not ours (never expected: the socket is private)
                pending.discard(ack.seq)
                if ack.error:
                    failures.append(ack)
        return failures

    def close(self) -> None:
        """Close the socket (queued requests are dropped)."""
        self._sock.close()

    def __enter__(self) -> "RtnlSocket":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
