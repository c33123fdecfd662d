"""The `links:` section: each link's ends, its parameters per direction, MTU, addresses and routing costs.

Link parameters are one table, `PARAM_FIELDS`, applied in table order (not
file order) so the result does not depend on how the user ordered the keys;
a link's `a_to_b` / `b_to_a` mappings apply the same table on top of the
link's shared fields. LinkParams checks every value against the engine's
ranges (`emulator.model.limits`).
"""

from __future__ import annotations

import difflib
import re
from typing import Callable

import yaml

from emulator.errors import InputError, ScenarioError
from emulator.model.capacity import (
    Capacity,
    CapacityError,
    LinkCapacity,
    Lit,
    check_scale,
    fit_scale,
    scaled_limit_bytes,
    scaled_rate_bps,
)
from emulator.model.direction import UnknownDirection, link_directions, normalise
from emulator.model.limits import MAX_DELAY_NS, MAX_LIMIT_PACKETS, MAX_OVERHEAD_BYTES
from emulator.model.linkparams import LinkParams
from emulator.model.netem import parse_netem_words
from emulator.model.presets import get_preset
from emulator.model.propagation import propagation_delay_ns
from emulator.model.trace import load_trace
from emulator.model.units import format_time, parse_percent, parse_rate, parse_size, parse_time
from emulator.scenario.addresses import read_link_addresses
from emulator.scenario.builder import Builder
from emulator.scenario.reader import Document, is_null, join_path, suggest
from emulator.scenario.scenario import DIRECTIONS
from emulator.scenario.topology import BGP_PREPEND_MAX, DEFAULT_MTU, OSPF_COST_RANGE, Link, LinkEnd

LINK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")

#: IPv6 needs an MTU of at least 1280 on every link (RFC 8200).
MTU_RANGE = (1280, 65535)

#: A field reader: (document, value node, path, params so far) -> new params.
ParamReader = Callable[[Document, yaml.Node, str, LinkParams], LinkParams]


def _time_field(attribute: str, name: str) -> ParamReader:
    def read(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
        return params.replace(**{attribute: parse_time(doc.value(node, path), field=name)})

    return read


def _percent_field(attribute: str, name: str) -> ParamReader:
    def read(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
        return params.replace(**{attribute: parse_percent(doc.value(node, path), field=name)})

    return read


def _read_length(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    length = doc.value(node, path)
    if isinstance(length, bool) or not isinstance(length, (int, float)) or length < 0:
        doc.fail(node, path, f"length {length!r} is not a distance in km", "give kilometres >= 0, e.g. 370")
    delay_ns = propagation_delay_ns(float(length))
    if delay_ns > MAX_DELAY_NS:
        most_km = int(length * MAX_DELAY_NS / delay_ns)
        doc.fail(node, path, f"length {length} km gives a delay of {format_time(delay_ns)}, over the engine's "
                 f"maximum of {format_time(MAX_DELAY_NS)}", f"give at most {most_km} km")
    return params.replace(delay_ns=delay_ns)


def _read_distribution(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return parse_netem_words(["distribution", doc.text(node, path, "normal")], params)


def _read_loss(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    value = doc.value(node, path)
    if not isinstance(value, str):
        parse_percent(value, field="loss")  # raises the "write it as a percentage" error
    return parse_netem_words(["loss", *str(value).split()], params)


def _read_rate(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(rate_bps=parse_rate(doc.value(node, path), field="rate"))


def _read_overhead(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(overhead_bytes=doc.integer(node, path, 0, MAX_OVERHEAD_BYTES, "24"))


def _read_limit(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(limit_packets=doc.integer(node, path, 0, MAX_LIMIT_PACKETS, "1000"))


def _read_limit_bytes(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(limit_bytes=parse_size(doc.value(node, path), field="limit_bytes"))


def _read_trace(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    relative = doc.text(node, path, "traces/lte.trace")
    try:
        # bounded: a regular file of at most MAX_TRACE_BYTES (not a FIFO, not /dev/zero, no NUL in the path)
        trace = load_trace(doc.base_dir / relative)
    except InputError as exc:
        # keep the trace's own FILE:LINE, after the field that names the trace
        doc.fail(node, path, f"{exc.where}: {exc.bare_message}" if exc.where else exc.bare_message, exc.fix)
    return params.replace(trace_ms=trace)


def _read_netem(doc: Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return parse_netem_words(doc.text(node, path, '"delay 5ms loss 1%"'), params)


#: Fields shaping a direction, in the order they are applied. `length_km` comes
#: before `delay` so an explicit delay wins; `netem` comes last so its words
#: override the fields (as documented).
PARAM_FIELDS: dict[str, ParamReader] = {
    "length_km": _read_length,
    "delay": _time_field("delay_ns", "delay"),
    "jitter": _time_field("jitter_ns", "jitter"),
    "correlation": _percent_field("jitter_correlation", "correlation"),
    "distribution": _read_distribution,
    "loss": _read_loss,
    "duplicate": _percent_field("duplicate", "duplicate"),
    "corrupt": _percent_field("corrupt", "corrupt"),
    "reorder": _percent_field("reorder", "reorder"),
    "rate": _read_rate,
    "overhead": _read_overhead,
    "limit": _read_limit,
    "limit_bytes": _read_limit_bytes,
    "trace": _read_trace,
    "netem": _read_netem,
}
#: Link-only fields of a link's capacity as built and its replica factor (docs/capacity.md)
CAPACITY_FIELDS: tuple[str, ...] = ("capacity", "lit", "scale", "fit")
LINK_FIELDS: tuple[str, ...] = ("ends", "preset", *PARAM_FIELDS, "mtu", "addresses", "cost", "bgp_prepend",
                                *CAPACITY_FIELDS, "a_to_b", "b_to_a")
#: `capacity: {fiber_pairs, waves_per_pair, wave_rate}` and `lit: {fiber_pairs, waves}`
DESIGN_FIELDS: tuple[str, ...] = ("fiber_pairs", "waves_per_pair", "wave_rate")
LIT_FIELDS: tuple[str, ...] = ("fiber_pairs", "waves")
#: a scale factor written as text (`1e-5`: YAML 1.1 reads a float only with a dot)
_FACTOR = re.compile(r"^[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]{1,3})?$")
DIRECTION_FIELDS: tuple[str, ...] = tuple(PARAM_FIELDS)


def _apply_params(
    doc: Document, pairs: list[tuple[str, yaml.Node, yaml.Node]], path: str, params: LinkParams
) -> LinkParams:
    """Apply the parameter fields among `pairs` to `params`, in `PARAM_FIELDS` order."""
    given = {key: value_node for key, _, value_node in pairs}
    for name, reader in PARAM_FIELDS.items():
        if name not in given:
            continue
        here = join_path(path, name)
        try:
            params = reader(doc, given[name], here, params)
        except ScenarioError:
            raise
        except InputError as exc:
            # Units, netem words and LinkParams speak without a location; add it.
            doc.fail(given[name], here, exc.bare_message, exc.fix)
    return params


def _read_scale(doc: Document, node: yaml.Node, path: str) -> float:
    """`scale: 1.0e-6` (or `1e-6`): the replica factor, 0 < scale <= 1."""
    value = doc.value(node, path)
    if isinstance(value, str) and len(value) <= 32 and _FACTOR.match(value.strip()):
        value = float(value)
    try:
        check_scale(value)
    except CapacityError as exc:
        doc.fail(node, path, exc.bare_message, exc.fix)
    return float(value)


def _read_capacity(doc: Document, fields: dict[str, yaml.Node], path: str) -> LinkCapacity | None:
    """`capacity:` and `lit:` (lit defaults to the whole design); None when the link declares no capacity."""
    if "capacity" not in fields:
        if "lit" in fields:
            doc.fail(fields["lit"], join_path(path, "lit"), "lit needs the link's capacity",
                     "add capacity: {fiber_pairs: 8, waves_per_pair: 128, wave_rate: 400gbit}")
        return None
    here = join_path(path, "capacity")
    given = {key: value for key, _, value in doc.mapping(fields["capacity"], here, DESIGN_FIELDS)}
    for key in DESIGN_FIELDS:
        if key not in given:
            doc.fail(fields["capacity"], here, f"capacity needs '{key}'",
                     "give capacity: {fiber_pairs: 8, waves_per_pair: 128, wave_rate: 400gbit}")
    pairs = doc.integer(given["fiber_pairs"], join_path(here, "fiber_pairs"), 1, 10_000, "8")
    waves = doc.integer(given["waves_per_pair"], join_path(here, "waves_per_pair"), 1, 10_000, "128")
    try:
        rate = parse_rate(doc.value(given["wave_rate"], join_path(here, "wave_rate")), field="wave_rate")
        design = Capacity(pairs, waves, rate)
    except InputError as exc:
        doc.fail(given["wave_rate"], join_path(here, "wave_rate"), exc.bare_message, exc.fix or "e.g. wave_rate: 400gbit")
    lit = Lit(pairs, waves)
    if "lit" in fields:
        lit_path = join_path(path, "lit")
        lit_given = {key: value for key, _, value in doc.mapping(fields["lit"], lit_path, LIT_FIELDS)}
        numbers = {key: doc.integer(lit_given[key], join_path(lit_path, key), 1, 10_000, "1")
                   for key in LIT_FIELDS if key in lit_given}
        lit = Lit(numbers.get("fiber_pairs", pairs), numbers.get("waves", waves))
        try:
            lit.check(design)
        except CapacityError as exc:
            key = exc.bare_message.split()[0].split(".")[1]
            doc.fail(lit_given.get(key, fields["lit"]), join_path(lit_path, key), exc.bare_message, exc.fix)
    return LinkCapacity(design, lit)


def _replica(doc: Document, fields: dict[str, yaml.Node], path: str, directions: list[LinkParams],
             capacity: LinkCapacity | None) -> tuple[list[LinkParams], LinkCapacity | None, float]:
    """Each direction at the replica's size: lit capacity (or the rate) x scale, byte limits x scale."""
    if "scale" in fields and "fit" in fields:
        doc.fail(fields["fit"], join_path(path, "fit"), "both scale and fit", "give scale: FACTOR or fit: true, not both")
    fit = False
    if "fit" in fields:
        fit = doc.value(fields["fit"], join_path(path, "fit"))
        if not isinstance(fit, bool):
            doc.fail(fields["fit"], join_path(path, "fit"), f"expected true or false, got {fit!r}", "write fit: true")
    if capacity is None and "scale" not in fields and not fit:
        return directions, None, 1.0
    for name, params in zip(("a_to_b", "b_to_a"), directions):
        if params.trace_ms:
            doc.fail(fields.get("trace", fields.get(name)), join_path(path, "trace"),
                     "a capacity trace cannot be scaled or replaced by a capacity", "remove trace, or capacity/scale/fit")
    if capacity is not None:
        rates = [(fields["rate"], join_path(path, "rate"))] if "rate" in fields else []
        for name in ("a_to_b", "b_to_a"):
            if name in fields and not is_null(fields[name]):
                rates += [(value, join_path(path, f"{name}.rate")) for key, _, value
                          in doc.mapping(fields[name], join_path(path, name), DIRECTION_FIELDS) if key == "rate"]
        for node, here in rates:
            doc.fail(node, here, "rate and capacity both set the link's rate",
                     "remove rate: the rate is the lit capacity x scale")
    real = capacity.lit_bps() if capacity is not None else max(p.rate_bps for p in directions)
    if fit and real == 0:
        doc.fail(fields["fit"], join_path(path, "fit"), "fit needs a capacity or a rate to fit",
                 "add capacity: {...} or rate:, or remove fit")
    scale = fit_scale(real) if fit else (_read_scale(doc, fields["scale"], join_path(path, "scale")) if "scale" in fields else 1.0)
    if capacity is not None:
        capacity = LinkCapacity(capacity.capacity, capacity.lit, scale, fitted=fit)
    where = fields.get("scale", fields.get("fit", fields.get("capacity")))
    here = join_path(path, "scale" if "scale" in fields else "fit" if fit else "capacity")
    out = []
    try:
        real_limit = parse_size(doc.value(fields["limit_bytes"], join_path(path, "limit_bytes")),
                                field="limit_bytes") if "limit_bytes" in fields else 0
        for params in directions:
            rate = capacity.emulated_bps() if capacity is not None else scaled_rate_bps(params.rate_bps, scale)
            limit = params.limit_bytes or real_limit   # a direction's own limit, else the link's
            out.append(params.replace(rate_bps=rate, limit_bytes=scaled_limit_bytes(limit, scale)))
    except InputError as exc:
        doc.fail(where, here, exc.bare_message, exc.fix)
    return out, capacity, scale


def _read_ends(doc: Document, node: yaml.Node, path: str, out: Builder) -> tuple[str, str]:
    items = doc.sequence(node, path)
    if len(items) != 2:
        doc.fail(node, path, f"a link has exactly two ends, got {len(items)}", "e.g. ends: [sumgait, aktau]")
    names = []
    for item in items:
        name = doc.text(item, path, "sumgait")
        if name not in out.nodes:
            close = difflib.get_close_matches(name, list(out.nodes), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            doc.fail(item, path, f"no node called {name!r}", f"{hint}nodes: {', '.join(out.nodes) or 'none'}")
        names.append(name)
    if names[0] == names[1]:
        doc.fail(node, path, f"both ends are {names[0]!r}", "join two different nodes")
    return names[0], names[1]


def _read_link(doc: Document, name: str, key_node: yaml.Node, node: yaml.Node, path: str, out: Builder) -> Link:
    if not LINK_NAME.fullmatch(name):
        doc.fail(key_node, path, f"link name {name!r} is not valid", "use a-z, 0-9 and -, at most 31 characters")
    pairs = doc.mapping(node, path, LINK_FIELDS)
    fields = {key: value_node for key, _, value_node in pairs}
    if "ends" not in fields:
        doc.fail(node, path, "a link needs ends", "add ends: [node1, node2]")
    ends = _read_ends(doc, fields["ends"], join_path(path, "ends"), out)

    params = LinkParams()
    preset_name = None
    length_km = None
    if "preset" in fields:
        preset_path = join_path(path, "preset")
        preset_name = doc.text(fields["preset"], preset_path, "aktau-sumgait")
        try:
            preset = get_preset(preset_name)
        except InputError as exc:
            doc.fail(fields["preset"], preset_path, exc.bare_message, exc.fix)
        params = preset.params()
        length_km = preset.length_km
    # A replica's byte limit is the real cable's (a 400 Tbit/s buffer is beyond the
    # engine's u32): read it here, scale it in _replica, never check the real figure
    replica = any(key in fields for key in CAPACITY_FIELDS)
    shared = _apply_params(doc, [p for p in pairs if not (replica and p[0] == "limit_bytes")], path, params)
    if "length_km" in fields:  # validated by _apply_params above
        length_km = float(doc.value(fields["length_km"], join_path(path, "length_km")))

    directions = []
    for direction in ("a_to_b", "b_to_a"):
        if direction in fields and not is_null(fields[direction]):
            here = join_path(path, direction)
            directions.append(_apply_params(doc, doc.mapping(fields[direction], here, DIRECTION_FIELDS), here, shared))
        else:
            directions.append(shared)

    capacity = _read_capacity(doc, fields, path)
    directions, capacity, scale = _replica(doc, fields, path, directions, capacity)

    mtu = DEFAULT_MTU
    if "mtu" in fields:
        mtu = doc.integer(fields["mtu"], join_path(path, "mtu"), *MTU_RANGE, "1500")
    addresses: dict[str, tuple[str | None, str | None]] = {}
    if "addresses" in fields:
        addresses = read_link_addresses(doc, fields["addresses"], join_path(path, "addresses"), ends, out)
    cost = None
    if "cost" in fields:
        here = join_path(path, "cost")
        if out.routing is None or out.routing.protocol != "ospf":
            doc.fail(fields["cost"], here, "cost applies to OSPF routing only", "add 'routing: {protocol: ospf}' at the top level or remove cost")
        cost = doc.integer(fields["cost"], here, *OSPF_COST_RANGE, "100")
    prepend = 0
    if "bgp_prepend" in fields:
        here = join_path(path, "bgp_prepend")
        if out.routing is None or out.routing.protocol != "bgp":
            doc.fail(fields["bgp_prepend"], here, "bgp_prepend applies to BGP routing only",
                     "add 'routing: {protocol: bgp}' at the top level or remove bgp_prepend")
        if any(out.nodes[end].role != "router" for end in ends):
            doc.fail(fields["bgp_prepend"], here, "bgp_prepend applies to links between two routers (a BGP session)",
                     "remove it from a link to a host")
        prepend = doc.integer(fields["bgp_prepend"], here, 0, BGP_PREPEND_MAX, "3")
    a, b = (LinkEnd(end, *addresses.get(end, (None, None))) for end in ends)
    return Link(
        name=name, a=a, b=b, a_to_b=directions[0], b_to_a=directions[1], mtu=mtu, preset=preset_name,
        length_km=length_km, cost=cost, bgp_prepend=prepend, capacity=capacity, scale=scale,
    )


def read_links(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`links: {NAME: {ends, preset, ...}, ...}` (read after `nodes` and `routing`)."""
    if is_null(node):
        return
    for name, key_node, value_node in doc.mapping(node, path):
        out.links[name] = _read_link(doc, name, key_node, value_node, join_path(path, name), out)


def read_direction(doc: Document, node: yaml.Node, path: str, link: Link) -> str:
    """`both`, `a_to_b`, `b_to_a`, or the name of the end whose frames are meant."""
    direction = doc.text(node, path, "both")
    try:
        return normalise(link_directions(direction, link.name, link.a.node, link.b.node))
    except UnknownDirection as exc:
        doc.fail(node, path, f"unknown direction {direction!r} for link {link.name!r}",
                 suggest(direction, exc.choices, "use one of"))
