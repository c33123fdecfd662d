"""The rtnetlink encoder against byte layouts written out by hand (linux/rtnetlink.h). No root."""

from __future__ import annotations

import errno
import struct

import pytest

from emulator.network import rtnl


def hexbytes(*parts: str) -> bytes:
    """Bytes from hex fragments (spaces ignored), one fragment per field group."""
    return bytes.fromhex("".join(parts).replace(" ", ""))


def test_set_link_up_with_mtu() -> None:
    assert rtnl.set_link(16, mtu=1500) == hexbytes(
        "28000000 1300 0500 00000000 00000000",  # nlmsghdr: len 40, RTM_SETLINK, REQUEST|ACK
        "00 00 0000 10000000 01000000 01000000",  # ifinfomsg: index 16, flags IFF_UP, change IFF_UP
        "0800 0400 dc050000",  # IFLA_MTU 1500
    )
    # down, no MTU: the change mask still names IFF_UP
    assert rtnl.set_link(1, up=False)[16:] == hexbytes("00 00 0000 01000000 00000000 01000000")


def test_new_route_ipv4_with_prefsrc() -> None:
    assert rtnl.new_route("198.19.0.4/32", "198.18.0.2", 16, "198.19.0.1") == hexbytes(
        "3c000000 1800 0506 00000000 00000000",  # len 60, RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE
        "02 20 00 00 fe 04 00 01 00000000",  # AF_INET /32, main table, proto static, universe, unicast
        "0800 0100 c6130004",  # RTA_DST 198.19.0.4
        "0800 0500 c6120002",  # RTA_GATEWAY 198.18.0.2
        "0800 0400 10000000",  # RTA_OIF 16
        "0800 0700 c6130001",  # RTA_PREFSRC 198.19.0.1
    )


def test_default_route_has_no_destination() -> None:
    msg = rtnl.new_route("::/0", "2001:2::2", 16, "2001:2:0:ffff::1")
    assert msg[16:28] == hexbytes("0a 00 00 00 fe 04 00 01 00000000")
    assert msg[28:32] == hexbytes("1400 0500")  # the first attribute is the gateway
    with pytest.raises(ValueError):
        rtnl.new_route("::/0", "198.18.0.2", 16)


def test_new_address_ipv6_nodad() -> None:
    address = "20010002 0000ffff 00000000 00000001"
    assert rtnl.new_address(1, "2001:2:0:ffff::1/128", nodad=True) == hexbytes(
        "40000000 1400 0506 00000000 00000000",  # len 64, RTM_NEWADDR, create exclusively
        "0a 80 02 00 01000000",  # AF_INET6 /128, IFA_F_NODAD, universe, index 1
        "1400 0200", address,  # IFA_LOCAL
        "1400 0100", address,  # IFA_ADDRESS
    )
    assert rtnl.new_address(16, "198.18.0.1/29")[16:24] == hexbytes("02 1d 00 00 10000000")


def test_new_neighbour_permanent() -> None:
    assert rtnl.new_neighbour(16, "fe80::1", "02:00:00:00:00:01") == hexbytes(
        "3c000000 1c00 0506 00000000 00000000",  # len 60, RTM_NEWNEIGH
        "0a 000000 10000000 8000 00 00",  # AF_INET6, ifindex 16, NUD_PERMANENT
        "1400 0100 fe800000 00000000 00000000 00000001",  # NDA_DST
        "0a00 0200 020000000001 0000",  # NDA_LLADDR, padded to 4
    )


def test_new_veth_nests_the_peer() -> None:
    msg = rtnl.new_veth("r0x0", 16, "02:12:34:50:00:00", 1500, "l0a", 17, "02:12:34:50:00:01", 9000, 7)
    assert msg == hexbytes(
        "8c000000 1000 0506 00000000 00000000",  # len 140, RTM_NEWLINK, create exclusively
        "00 00 0000 10000000 01000000 01000000",  # index 16, up
        "0900 0300 72307830 00 000000",  # IFLA_IFNAME "r0x0"
        "0800 0400 dc050000",  # IFLA_MTU 1500
        "0a00 0100 021234500000 0000",  # IFLA_ADDRESS
        "4c00 1200",  # IFLA_LINKINFO (76)
        "0900 0100 76657468 00 000000",  # IFLA_INFO_KIND "veth"
        "3c00 0200",  # IFLA_INFO_DATA (60)
        "3800 0100",  # VETH_INFO_PEER (56): an ifinfomsg, then the peer's attributes
        "00 00 0000 11000000 00000000 00000000",  # peer index 17
        "0800 0300 6c306100",  # IFLA_IFNAME "l0a"
        "0800 0400 28230000",  # IFLA_MTU 9000
        "0a00 0100 021234500001 0000",  # IFLA_ADDRESS
        "0800 1c00 07000000",  # IFLA_NET_NS_FD 7
    )


def test_set_seq() -> None:
    msg = rtnl.set_seq(rtnl.set_link(1), 0x01020304)
    assert msg[8:12] == hexbytes("04030201") and len(msg) == len(rtnl.set_link(1))


def test_parse_acks_success_and_capped_error_with_note() -> None:
    ok = hexbytes("24000000 0200 0001 05000000 99000000", "00000000", "28000000 1300 0500 05000000 00000000")
    note = b"Route exists\0"
    tlv = struct.pack("=HH", 4 + len(note), rtnl.NLMSGERR_ATTR_MSG) + note + b"\0" * 3
    body = struct.pack("=i", -errno.EEXIST) + hexbytes("3c000000 1800 0506 06000000 00000000") + tlv
    error = struct.pack("=IHHII", 16 + len(body), rtnl.NLMSG_ERROR, 0x300, 6, 0x99) + body
    assert rtnl.parse_acks(ok + error) == [rtnl.Ack(5, 0), rtnl.Ack(6, errno.EEXIST, "Route exists")]
    assert rtnl.parse_acks(b"") == [] and rtnl.parse_acks(b"\0" * 16) == []  # malformed: no loop


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        rtnl.mac_bytes("02:00:00:00:00")
    with pytest.raises(ValueError):
        rtnl.new_address(1, "198.18.0.1/33")
    with pytest.raises(ValueError):
        rtnl.new_neighbour(1, "not-an-address", "02:00:00:00:00:01")
