"""The `traffic:` section: probe, tcp and udp streams between two nodes.

A stream's rate is in its kind's unit, and the key says which: `rate_pps`
for probe streams (packets per second, `1000pps`, `10kpps`), `rate_bps` for
the iperf3 streams (a bit rate, `64kbit`, `20Mbit`). The old `rate:` key is
refused with the key to write instead.

A tcp or udp stream whose path crosses a scaled link (`scale`/`fit`,
docs/capacity.md) is offered at its rate times that factor, as SHRiNK scales
the traffic with the link; its rate is written at the real size. Probe
streams are the measuring instrument and are not scaled.
"""

from __future__ import annotations

import re
from decimal import Decimal

import yaml

from emulator.errors import InputError
from emulator.model.capacity import scaled_rate_bps
from emulator.model.limits import MAX_PROBE_PACKETS, MAX_QUANTITY_CHARS, MAX_RATE_BPS
from emulator.model.metrics import STREAM_KINDS, StreamKind, stream_kind
from emulator.model.units import format_rate, format_time, parse_rate
from emulator.scenario.assertions import ASSERTION_PREFIXES
from emulator.scenario.builder import Builder, existing_node, scenario_end
from emulator.scenario.links import LINK_NAME
from emulator.scenario.reader import Document, is_null, join_path, suggest
from emulator.scenario.paths import path_hops, shortest_path
from emulator.scenario.scenario import TRAFFIC_KINDS, TrafficSpec
from emulator.scenario.topology import Topology

#: Probe streams: packets per second (the kinds' rate keys, defaults and sizes are
#: the registry's, emulator.model.metrics.STREAM_KINDS).
PROBE_RATE_RANGE = (1, 20_000)

#: every kind's rate key is a field; a stream takes its own kind's only
RATE_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(kind.rate_field for kind in STREAM_KINDS))
TRAFFIC_FIELDS: tuple[str, ...] = ("kind", "from", "to", *RATE_FIELDS, "size", "start", "stop", "ipv6")
#: Keys renamed since (`rate` is now `rate_pps` or `rate_bps`): refused naming the new key.
RENAMED_FIELDS: tuple[str, ...] = ("rate",)

_PPS = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_PPS_UNITS = {"pps": 1, "kpps": 1000}


def _probe_rate(doc: Document, node: yaml.Node, path: str) -> float:
    """A probe stream's `rate_pps`: `1000pps` or `10kpps`, within PROBE_RATE_RANGE."""
    value = doc.value(node, path)
    match = _PPS.match(value) if isinstance(value, str) and len(value) <= MAX_QUANTITY_CHARS else None
    low, high = PROBE_RATE_RANGE
    if match is None or match.group(2).lower() not in _PPS_UNITS:
        doc.fail(node, path, f"probe rate {value!r} is not in packets per second", "e.g. 1000pps or 10kpps")
    rate = float(Decimal(match.group(1)) * _PPS_UNITS[match.group(2).lower()])
    if not low <= rate <= high:
        doc.fail(node, path, f"probe rate {value} is outside {low}..{high} packets/s", f"give {low}pps to {high // 1000}kpps")
    return rate


def _bit_rate(doc: Document, node: yaml.Node, path: str, kind: StreamKind) -> float:
    """A `rate_bps` (udp, tcp): a bit rate in tc's words (`64kbit`, `20Mbit`), in bit/s."""
    value = doc.value(node, path)
    try:
        rate = parse_rate(value, field="rate")
    except InputError as exc:
        doc.fail(node, path, exc.bare_message, f"{kind.name} rate is a bit rate, e.g. 64kbit or 100mbit")
    if kind.needs_rate and rate == 0:
        doc.fail(node, path, f"{kind.name} rate must be above 0", "e.g. 64kbit or 100mbit")
    if rate > MAX_RATE_BPS:
        doc.fail(node, path, f"{kind.name} rate {format_rate(rate)} is over {format_rate(MAX_RATE_BPS)}, more than any link here carries",
                 f"give at most {format_rate(MAX_RATE_BPS)}")
    return float(rate)


def _joined(out: Builder, source: str, target: str) -> bool:
    """True when the links read so far join `source` to `target` (any number of hops)."""
    peers: dict[str, set[str]] = {}
    for link in out.links.values():
        peers.setdefault(link.a.node, set()).add(link.b.node)
        peers.setdefault(link.b.node, set()).add(link.a.node)
    seen, frontier = {source}, [source]
    while frontier:
        for peer in peers.get(frontier.pop(), ()):
            if peer not in seen:
                seen.add(peer)
                frontier.append(peer)
    return target in seen


def _path_scale(doc: Document, node: yaml.Node, path: str, out: Builder, source: str, target: str) -> float:
    """The replica factor of the scaled links on the stream's least-delay path (1: none).
    Links scaled by different factors on one path are refused: no one factor scales the traffic back."""
    if not any(link.scale != 1.0 for link in out.links.values()):
        return 1.0
    topology = Topology(nodes=tuple(out.nodes.values()), links=tuple(out.links.values()))
    hops = path_hops(topology, shortest_path(topology, source, target))
    factors = {out.links[name].scale: name for name, _ in hops if out.links[name].scale != 1.0}
    if len(factors) > 1:
        named = ", ".join(f"{name} x {factor:g}" for factor, name in factors.items())
        doc.fail(node, path, f"the stream crosses links scaled by different factors ({named})",
                 "give the scaled links on one path the same scale")
    return next(iter(factors), 1.0)


def _read_traffic_item(doc: Document, name: str, key_node: yaml.Node, node: yaml.Node, path: str, out: Builder) -> TrafficSpec:
    if not LINK_NAME.fullmatch(name):
        doc.fail(key_node, path, f"traffic name {name!r} is not valid", "use a-z, 0-9 and -, at most 31 characters")
    if name in ASSERTION_PREFIXES:
        doc.fail(key_node, path, f"traffic name {name!r} is reserved for assertions", "pick another name, e.g. probe")
    pairs = doc.mapping(node, path, TRAFFIC_FIELDS, renamed=RENAMED_FIELDS)
    fields = {key: value for key, _, value in pairs}
    keys = {key: key_node for key, key_node, _ in pairs}
    for required in ("kind", "from", "to"):
        if required not in fields:
            doc.fail(node, path, f"traffic needs '{required}'", "give kind, from and to, e.g. {kind: probe, from: europe, to: asia}")
    kind_name = doc.text(fields["kind"], join_path(path, "kind"), "probe")
    if kind_name not in TRAFFIC_KINDS:
        doc.fail(fields["kind"], join_path(path, "kind"), f"unknown traffic kind {kind_name!r}", suggest(kind_name, TRAFFIC_KINDS, "kinds"))
    kind = stream_kind(kind_name)
    rate_key = kind.rate_field
    for wrong in (*RENAMED_FIELDS, *RATE_FIELDS):
        if wrong in fields and wrong != rate_key:  # the old key, or another kind's
            what = f"unknown key {wrong!r}" if wrong in RENAMED_FIELDS else f"'{wrong}' does not apply to {kind_name} traffic"
            doc.fail(keys[wrong], join_path(path, wrong), what, f"did you mean {rate_key!r}? {kind.rate_words}")
    source = existing_node(doc, fields["from"], join_path(path, "from"), out)
    target = existing_node(doc, fields["to"], join_path(path, "to"), out)
    if source == target:
        doc.fail(fields["to"], join_path(path, "to"), f"traffic from {source!r} to itself", "send to another node")
    if not _joined(out, source, target):
        # nothing could carry it: a run would measure no path and no figure
        doc.fail(fields["to"], join_path(path, "to"), f"no links join {source!r} and {target!r}",
                 "add links between them, or send between nodes that links join")

    rate = kind.default_rate
    if rate_key in fields:
        here = join_path(path, rate_key)
        rate = _probe_rate(doc, fields[rate_key], here) if rate_key == "rate_pps" else _bit_rate(doc, fields[rate_key], here, kind)
    size = kind.default_size
    if "size" in fields:
        here = join_path(path, "size")
        if kind.size_range is None:
            takers = " and ".join(k.name for k in STREAM_KINDS if k.size_range is not None)
            doc.fail(fields["size"], here, f"size applies to {takers} traffic only", kind.size_fix)
        low, high = kind.size_range
        size = doc.integer(fields["size"], here, low, high, "64")

    start = doc.time(fields["start"], join_path(path, "start"), "start") if "start" in fields else 0
    if start >= out.duration_ns:
        doc.fail(fields["start"], join_path(path, "start"), f"start {format_time(start)} is not before {scenario_end(out)}", "start earlier or lengthen duration")
    stop = out.duration_ns
    if "stop" in fields:
        here = join_path(path, "stop")
        stop = doc.time(fields["stop"], here, "stop")
        if stop <= start:
            doc.fail(fields["stop"], here, f"stop {format_time(stop)} is not after start {format_time(start)}", "stop later than start")
        if stop > out.duration_ns:
            doc.fail(fields["stop"], here, f"stop {format_time(stop)} is after {scenario_end(out)}", f"stop at most at {format_time(out.duration_ns)} or lengthen duration")
    probes = rate * (stop - start) / 1e9 if rate_key == "rate_pps" else 0.0   # a packet rate: each recorded
    if probes > MAX_PROBE_PACKETS:
        where = fields.get(rate_key, node)
        doc.fail(where, join_path(path, rate_key) if rate_key in fields else path,
                 f"the probe stream sends {probes:.0f} probes ({rate:g}/s for {format_time(stop - start)}), "
                 f"more than the {MAX_PROBE_PACKETS} a run records per stream",
                 "lower the rate, or shorten the stream with start and stop")
    ipv6 = False
    if "ipv6" in fields:
        ipv6 = doc.value(fields["ipv6"], join_path(path, "ipv6"))
        if not isinstance(ipv6, bool):
            doc.fail(fields["ipv6"], join_path(path, "ipv6"), f"expected true or false, got {ipv6!r}", "write ipv6: true or ipv6: false")
    # the load is offered at the scale of the links it crosses; the instrument is never scaled
    scale = 1.0 if kind.instrument else _path_scale(doc, fields["to"], join_path(path, "to"), out, source, target)
    if scale != 1.0 and rate > 0:
        try:
            rate = float(scaled_rate_bps(rate, scale))
        except InputError as exc:
            doc.fail(fields[rate_key], join_path(path, rate_key), exc.bare_message, exc.fix)
    return TrafficSpec(
        name=name, kind=kind_name, source=source, target=target, start_ns=start, stop_ns=stop,
        rate_pps=rate if rate_key == "rate_pps" else 0.0, rate_bps=rate if rate_key == "rate_bps" else 0.0, size=size, ipv6=ipv6,
        scale=scale,
    )


def read_traffic(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`traffic: {NAME: {kind, from, to, ...}, ...}` (read after `nodes` and `duration`)."""
    if is_null(node):
        return
    for name, key_node, value_node in doc.mapping(node, path):
        out.traffic[name] = _read_traffic_item(doc, name, key_node, value_node, join_path(path, name), out)
