"""Addresses in a scenario file: a node's own (`address`, `address6`) and each link end's.

Every address lies in the benchmarking ranges, so nothing real can collide
with a testbed, and is given once in the whole file (`Builder.addresses`
remembers which field claimed it).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import yaml

from emulator.scenario.builder import Builder
from emulator.scenario.reader import Document, join_path

#: The benchmarking ranges (RFC 2544, RFC 5180): nothing real can collide with them.
IPV4_RANGE = ipaddress.ip_network("198.18.0.0/15")
IPV6_RANGE = ipaddress.ip_network("2001:2::/48")


def claim_address(doc: Document, node: yaml.Node, path: str, address: str, out: Builder) -> None:
    """Record that `path` uses `address`; refuse an address given twice."""
    if address in out.addresses:
        doc.fail(node, path, f"address {address} is already used by {out.addresses[address]}", "give each address once")
    out.addresses[address] = path


def host_address(doc: Document, node: yaml.Node, path: str, version: int, out: Builder) -> str:
    """A node's own address: one host (/32 or /128) in the benchmarking range."""
    text = doc.text(node, path, "198.18.255.1" if version == 4 else "2001:2:0:ff::1")
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        doc.fail(node, path, f"{text!r} is not an IP address", "e.g. 198.18.255.1 or 2001:2:0:ff::1")
    check_range(doc, node, path, interface.ip, version)
    if interface.network.prefixlen != interface.max_prefixlen:
        doc.fail(node, path, f"{text} is a network, not one address", f"write it as /{interface.max_prefixlen}")
    claim_address(doc, node, path, str(interface.ip), out)
    return f"{interface.ip}/{interface.max_prefixlen}"


def check_range(doc: Document, node: yaml.Node, path: str, ip: Any, version: int | None) -> None:
    """Refuse `ip` outside the benchmarking range (or of another IP version than `version`)."""
    if version is not None and ip.version != version:
        want = "an IPv4" if version == 4 else "an IPv6"
        doc.fail(node, path, f"{ip} is not {want} address", "use address for IPv4 and address6 for IPv6")
    allowed = IPV4_RANGE if ip.version == 4 else IPV6_RANGE
    if ip not in allowed:
        doc.fail(node, path, f"{ip} is outside {allowed}", f"use the benchmarking range {allowed}, reserved by RFC 2544/5180")


def read_link_addresses(
    doc: Document, node: yaml.Node, path: str, ends: tuple[str, str], out: Builder
) -> dict[str, tuple[str | None, str | None]]:
    """`addresses: {node: 198.18.0.1/30 | [v4, v6]}` -> node -> (address, address6)."""
    result: dict[str, tuple[str | None, str | None]] = {}
    networks: dict[int, tuple[Any, str]] = {}
    for name, key_node, value_node in doc.mapping(node, path, ends):
        here = join_path(path, name)
        items = doc.sequence(value_node, here) if isinstance(value_node, yaml.SequenceNode) else [value_node]
        v4 = v6 = None
        for item in items:
            text = doc.text(item, here, "198.18.0.1/30")
            try:
                interface = ipaddress.ip_interface(text)
            except ValueError:
                doc.fail(item, here, f"{text!r} is not an address with a prefix", "e.g. 198.18.0.1/30 or 2001:2::1/64")
            if "/" not in text:
                doc.fail(item, here, f"{text} has no prefix length", f"e.g. {text}/30" if interface.version == 4 else f"e.g. {text}/64")
            check_range(doc, item, here, interface.ip, None)
            net = interface.network
            if net.prefixlen < net.max_prefixlen - 1 and interface.ip in (net.network_address, net.broadcast_address) and interface.version == 4:
                doc.fail(item, here, f"{interface.ip} is the network or broadcast address of {net}", "pick a host address inside the subnet")
            if interface.version == 4:
                if v4 is not None:
                    doc.fail(item, here, "two IPv4 addresses for one end", "give one IPv4 and at most one IPv6 address")
                v4 = str(interface)
            else:
                if v6 is not None:
                    doc.fail(item, here, "two IPv6 addresses for one end", "give one IPv4 and at most one IPv6 address")
                v6 = str(interface)
            if interface.version in networks and networks[interface.version][0] != net:
                other_net, other = networks[interface.version]
                doc.fail(item, here, f"{interface} is not in {other_net}, the subnet of {other}", "put both ends of a link in one subnet")
            networks[interface.version] = (net, here)
            claim_address(doc, item, here, str(interface.ip), out)
        result[name] = (v4, v6)
    return result
