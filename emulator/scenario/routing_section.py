"""The `routing:` section: static routes, or OSPF or BGP run by BIRD or FRR, with BFD.

`routing: {protocol: ospf, bfd: {interval: 100ms, multiplier: 3}, hello: 1s}`
or `routing: {protocol: bgp, hold: 3s, keepalive: 1s, bfd: {...}}`. Each
timer is checked against what the chosen daemon accepts (the ranges, with
their sources, are in `emulator.model.limits`).
"""

from __future__ import annotations

import yaml

from emulator.model.limits import BFD_INTERVAL_NS, BFD_INTERVAL_UNIT_NS, BFD_MULTIPLIER
from emulator.model.units import format_time
from emulator.scenario.builder import Builder
from emulator.scenario.reader import Document, is_null, join_path, suggest
from emulator.scenario.topology import ROUTING_DAEMONS, ROUTING_PROTOCOLS, SUPPORTED_ROUTING, BfdConfig, RoutingConfig

ROUTING_FIELDS: tuple[str, ...] = ("protocol", "daemon", "bfd", "hello", "dead", "hold", "keepalive")
#: the routing options of each protocol (others are refused with the protocol named)
PROTOCOL_OPTIONS: dict[str, tuple[str, ...]] = {
    "static": (),
    "ospf": ("bfd", "hello", "dead"),
    "bgp": ("bfd", "hold", "keepalive"),
}
BFD_FIELDS: tuple[str, ...] = ("interval", "multiplier")
#: BFD intervals and multipliers per daemon: emulator.model.limits (BFD_INTERVAL_NS,
#: BFD_INTERVAL_UNIT_NS, BFD_MULTIPLIER), with each daemon's own ranges cited there
#: OSPF hello and dead intervals: whole seconds (BIRD's unit), 16 bits
OSPF_SECONDS_RANGE = (1, 65535)
#: BGP hold time: whole seconds, at least 3 (RFC 4271 and BIRD's minimum; 0 = no keepalives is not offered)
BGP_HOLD_RANGE = (3, 65535)
#: BGP keepalive interval: whole seconds, shorter than the hold time
BGP_KEEPALIVE_RANGE = (1, 65535)


def _whole_seconds(doc: Document, node: yaml.Node, path: str, name: str,
                   limits: tuple[int, int] = OSPF_SECONDS_RANGE, protocol: str = "OSPF") -> int:
    """A time that must be a whole number of seconds in `limits`, in ns."""
    value = doc.time(node, path, name)
    low, high = limits
    if value % 10**9 or not low <= value // 10**9 <= high:
        doc.fail(node, path, f"{name} {format_time(value)} is not a whole number of seconds from {low} to {high}",
                 f"BIRD counts {protocol} {name} in seconds, e.g. {name}: {max(low, 1)}s")
    return value


#: how each daemon is named in messages
_DAEMON_NAMES = {"bird": "BIRD", "frr": "FRR's bfdd"}


def _read_bfd(doc: Document, node: yaml.Node, path: str, daemon: str) -> BfdConfig:
    """`bfd: {interval, multiplier}`, each within what `daemon` accepts (limits.BFD_*)."""
    fields = {key: value for key, _, value in doc.mapping(node, path, BFD_FIELDS)}
    bfd = BfdConfig()
    name = _DAEMON_NAMES.get(daemon, daemon)
    if "interval" in fields:
        here = join_path(path, "interval")
        interval = doc.time(fields["interval"], here, "interval")
        if interval <= 0:
            doc.fail(fields["interval"], here, "BFD interval must be longer than 0", "e.g. interval: 100ms")
        unit = BFD_INTERVAL_UNIT_NS[daemon]
        low, high = BFD_INTERVAL_NS[daemon]
        if daemon == "frr" and (interval % unit or not low <= interval <= high):
            doc.fail(fields["interval"], here,
                     f"BFD interval {format_time(interval)} is not whole milliseconds from {low // unit} to {high // unit}",
                     "FRR's bfdd counts in milliseconds, e.g. interval: 100ms")
        if interval % unit:
            doc.fail(fields["interval"], here, f"BFD interval {format_time(interval)} is not whole microseconds", "e.g. interval: 100ms")
        if not low <= interval <= high:
            doc.fail(fields["interval"], here,
                     f"BFD interval {format_time(interval)} is outside {name}'s {format_time(low)}..{format_time(high)}",
                     f"{name} keeps BFD intervals in 32-bit microseconds and cannot keep up below {format_time(low)}, "
                     "e.g. interval: 100ms")
        bfd = BfdConfig(interval_ns=interval, multiplier=bfd.multiplier)
    if "multiplier" in fields:
        low, high = BFD_MULTIPLIER[daemon]
        here = join_path(path, "multiplier")
        multiplier = doc.integer(fields["multiplier"], here, 1, high, "3")
        if multiplier < low:
            doc.fail(fields["multiplier"], here, f"{name} takes a BFD detect multiplier of {low}..{high}, not {multiplier}",
                     "e.g. multiplier: 3")
        bfd = BfdConfig(interval_ns=bfd.interval_ns, multiplier=multiplier)
    return bfd


def read_routing(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`routing: {protocol, daemon, bfd, hello, dead, hold, keepalive}` (read first: nodes and links depend on it)."""
    if is_null(node):
        return
    pairs = doc.mapping(node, path, ROUTING_FIELDS)
    fields = {key: value for key, _, value in pairs}
    keys = {key: key_node for key, key_node, _ in pairs}
    protocol = "static"
    if "protocol" in fields:
        here = join_path(path, "protocol")
        protocol = doc.text(fields["protocol"], here, "ospf")
        if protocol not in ROUTING_PROTOCOLS:
            doc.fail(fields["protocol"], here, f"unknown routing protocol {protocol!r}", suggest(protocol, ROUTING_PROTOCOLS, "protocols"))
        if protocol not in SUPPORTED_ROUTING:
            doc.fail(fields["protocol"], here, f"routing protocol {protocol!r} is not supported yet",
                     f"use one of {', '.join(SUPPORTED_ROUTING)}")
    daemon = "bird"
    if "daemon" in fields:
        here = join_path(path, "daemon")
        daemon = doc.text(fields["daemon"], here, "frr")
        if daemon not in ROUTING_DAEMONS:
            doc.fail(fields["daemon"], here, f"unknown routing daemon {daemon!r}", suggest(daemon, tuple(ROUTING_DAEMONS), "daemons"))
        if protocol == "static":
            doc.fail(keys["daemon"], here, "'daemon' does not apply to static routing", "remove it, or set protocol: ospf")
        if protocol not in ROUTING_DAEMONS[daemon]:
            runs = [name for name, protocols in ROUTING_DAEMONS.items() if protocol in protocols]
            doc.fail(fields["daemon"], here, f"{daemon} runs {', '.join(ROUTING_DAEMONS[daemon])} here, not {protocol}",
                     f"set daemon: {' or '.join(runs)}")
    for option in ROUTING_FIELDS:
        if option not in ("protocol", "daemon") and option in fields and option not in PROTOCOL_OPTIONS[protocol]:
            users = [name for name, options in PROTOCOL_OPTIONS.items() if option in options]
            what = "static routing" if protocol == "static" else protocol.upper()
            doc.fail(keys[option], join_path(path, option), f"'{option}' does not apply to {what}",
                     f"remove it, or set protocol: {' or '.join(users)}")
    bfd = _read_bfd(doc, fields["bfd"], join_path(path, "bfd"), daemon) if "bfd" in fields else None
    hold = 9 * 10**9
    keepalive = None
    if "hold" in fields:
        hold = _whole_seconds(doc, fields["hold"], join_path(path, "hold"), "hold", BGP_HOLD_RANGE, "BGP")
    if "keepalive" in fields:
        here = join_path(path, "keepalive")
        keepalive = _whole_seconds(doc, fields["keepalive"], here, "keepalive", BGP_KEEPALIVE_RANGE, "BGP")
        if keepalive >= hold:
            doc.fail(fields["keepalive"], here, f"keepalive {format_time(keepalive)} is not shorter than hold {format_time(hold)}",
                     "send a few keepalives per hold time, e.g. keepalive = hold / 3")
    hello = _whole_seconds(doc, fields["hello"], join_path(path, "hello"), "hello") if "hello" in fields else 10**9
    dead = None
    if "dead" in fields:
        here = join_path(path, "dead")
        dead = _whole_seconds(doc, fields["dead"], here, "dead")
        if dead <= hello:
            doc.fail(fields["dead"], here, f"dead {format_time(dead)} is not longer than hello {format_time(hello)}",
                     "give dead a few hellos, e.g. 4 x hello")
    out.routing = RoutingConfig(protocol=protocol, daemon=daemon, bfd=bfd, hello_ns=hello, dead_ns=dead,
                                hold_ns=hold, keepalive_ns=keepalive)
