"""YAML topology files to `Topology`, with one-line errors that say where and how to fix.

Every error is a `ScenarioError` reading `FILE:LINE: field.path: what is wrong
(how to fix)`. Lines come from `yaml.compose`, which keeps each node's
position; we walk the node graph ourselves rather than `yaml.safe_load` it,
because safe_load forgets positions and silently keeps the last of duplicate
keys (two links with the same name would quietly become one).

Validation is table-driven: `TOP_LEVEL` maps each top-level key to the
function that reads its section, and `NODE_FIELDS` / `LINK_FIELDS` /
`DIRECTION_FIELDS` list what each mapping may hold. Adding a section (the
`traffic`, `timeline` and `assertions` to come) is one entry in `TOP_LEVEL`
plus its reader, which stores what it read in `_Builder`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

import yaml

from emulator.errors import InputError, ScenarioError
from emulator.model.linkparams import LinkParams
from emulator.model.netem import parse_netem_words
from emulator.model.presets import PRESETS, get_preset
from emulator.model.propagation import propagation_delay_ns
from emulator.model.trace import load_trace
from emulator.model.units import parse_percent, parse_rate, parse_size, parse_time
from emulator.scenario.topology import DEFAULT_MTU, NODE_ROLES, Link, LinkEnd, Node, Topology

#: Node names become parts of interface and namespace names; 15 is IFNAMSIZ - 1.
NODE_NAME = re.compile(r"[a-z][a-z0-9-]{0,14}")
LINK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")

#: The benchmarking ranges (RFC 2544, RFC 5180): nothing real can collide with them.
IPV4_RANGE = ipaddress.ip_network("198.18.0.0/15")
IPV6_RANGE = ipaddress.ip_network("2001:2::/48")

#: IPv6 needs an MTU of at least 1280 on every link (RFC 8200).
MTU_RANGE = (1280, 65535)


# ---------------------------------------------------------------------------
# Reading YAML nodes with their positions


class _Document:
    """The file being read: its name, and how to turn nodes into values or errors."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        # A SafeLoader only to resolve scalar tags (int, float, bool, str) the
        # way safe_load would; it never reads a stream.
        self._constructor = yaml.SafeLoader("")

    def fail(self, node: yaml.Node | None, path: str, message: str, fix: str = "") -> NoReturn:
        """Raise the one-line ScenarioError for `node` at field `path`."""
        line = node.start_mark.line + 1 if node is not None else 1
        where = f"{self.source}:{line}: {path}" if path else f"{self.source}:{line}"
        raise ScenarioError(message, where=where, fix=fix)

    def value(self, node: yaml.Node, path: str) -> Any:
        """The plain value of a scalar node (mappings and lists are refused)."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, path, f"expected a single value, got a {_kind(node)}", "write one value here")
        return self._constructor.construct_object(node)

    def text(self, node: yaml.Node, path: str, example: str) -> str:
        """A scalar that must be a string."""
        value = self.value(node, path)
        if not isinstance(value, str):
            self.fail(node, path, f"expected text, got {value!r}", f"e.g. {example}")
        return value

    def integer(self, node: yaml.Node, path: str, low: int, high: int, example: str) -> int:
        """A scalar that must be an integer in [low, high]."""
        value = self.value(node, path)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, path, f"expected a whole number, got {value!r}", f"e.g. {example}")
        if not low <= value <= high:
            self.fail(node, path, f"{value} is outside {low}..{high}", f"give a number from {low} to {high}")
        return value

    def mapping(self, node: yaml.Node, path: str, allowed: tuple[str, ...] | None = None) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """(key, key node, value node) of a mapping, in file order.

        Rejects duplicate keys (at the second one), non-text keys, and, if
        `allowed` is given, keys not in it (with a suggestion).
        """
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"expected a mapping (key: value lines), got a {_kind(node)}")
        seen: dict[str, int] = {}
        pairs = []
        for key_node, value_node in node.value:
            key = self.value(key_node, path)
            if not isinstance(key, str):
                self.fail(key_node, path, f"key {key!r} is not text", "write names as text, e.g. europe")
            here = _join(path, key)
            if key in seen:
                self.fail(key_node, here, f"duplicate key {key!r} (first at line {seen[key]})", "give each key once")
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(key_node, here, f"unknown key {key!r}", f"{hint}allowed: {', '.join(allowed)}")
            seen[key] = key_node.start_mark.line + 1
            pairs.append((key, key_node, value_node))
        return pairs

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        """The items of a list node."""
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"expected a list, got a {_kind(node)}", "e.g. [sumgait, aktau]")
        return list(node.value)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return f"value {node.value!r}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------
# Link parameters: one table, applied in table order (not file order) so the
# result does not depend on how the user ordered the keys.

#: A field reader: (document, value node, path, params so far) -> new params.
ParamReader = Callable[[_Document, yaml.Node, str, LinkParams], LinkParams]


def _time_field(attribute: str, name: str) -> ParamReader:
    def read(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
        return params.replace(**{attribute: parse_time(doc.value(node, path), field=name)})

    return read


def _percent_field(attribute: str, name: str) -> ParamReader:
    def read(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
        return params.replace(**{attribute: parse_percent(doc.value(node, path), field=name)})

    return read


def _read_length(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    length = doc.value(node, path)
    if isinstance(length, bool) or not isinstance(length, (int, float)) or length < 0:
        doc.fail(node, path, f"length {length!r} is not a distance in km", "give kilometres >= 0, e.g. 370")
    return params.replace(delay_ns=propagation_delay_ns(float(length)))


def _read_distribution(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return parse_netem_words(["distribution", doc.text(node, path, "normal")], params)


def _read_loss(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    value = doc.value(node, path)
    if not isinstance(value, str):
        parse_percent(value, field="loss")  # raises the "write it as a percentage" error
    return parse_netem_words(["loss", *str(value).split()], params)


def _read_rate(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(rate_bps=parse_rate(doc.value(node, path), field="rate"))


def _read_overhead(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(overhead_bytes=doc.integer(node, path, 0, 1000, "24"))


def _read_limit(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(limit_packets=doc.integer(node, path, 0, 2**32 - 1, "1000"))


def _read_limit_bytes(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(limit_bytes=parse_size(doc.value(node, path), field="limit_bytes"))


def _read_trace(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    relative = doc.text(node, path, "traces/lte.trace")
    trace = load_trace(doc.base_dir / relative)
    return params.replace(trace_ms=trace)


def _read_netem(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
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

NODE_FIELDS: tuple[str, ...] = ("role", "address", "address6")
LINK_FIELDS: tuple[str, ...] = ("ends", "preset", *PARAM_FIELDS, "mtu", "addresses", "a_to_b", "b_to_a")
DIRECTION_FIELDS: tuple[str, ...] = tuple(PARAM_FIELDS)


def _apply_params(
    doc: _Document, pairs: list[tuple[str, yaml.Node, yaml.Node]], path: str, params: LinkParams
) -> LinkParams:
    """Apply the parameter fields among `pairs` to `params`, in `PARAM_FIELDS` order."""
    given = {key: value_node for key, _, value_node in pairs}
    for name, reader in PARAM_FIELDS.items():
        if name not in given:
            continue
        here = _join(path, name)
        try:
            params = reader(doc, given[name], here, params)
        except ScenarioError:
            raise
        except InputError as exc:
            # Units, netem words and LinkParams speak without a location; add it.
            doc.fail(given[name], here, exc.bare_message, exc.fix)
    return params


# ---------------------------------------------------------------------------
# Sections


@dataclass
class _Builder:
    """What the section readers have read so far."""

    name: str = "testbed"
    seed: int | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    #: address (without prefix) -> field path that claimed it, to catch reuse
    addresses: dict[str, str] = field(default_factory=dict)


def _read_name(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    name = doc.text(node, path, "aktau-sumgait")
    if not 1 <= len(name) <= 64:
        doc.fail(node, path, "name must be 1..64 characters", "e.g. name: aktau-sumgait")
    out.name = name


def _read_seed(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    out.seed = doc.integer(node, path, 0, 2**64 - 1, "42")


def _claim_address(doc: _Document, node: yaml.Node, path: str, address: str, out: _Builder) -> None:
    if address in out.addresses:
        doc.fail(node, path, f"address {address} is already used by {out.addresses[address]}", "give each address once")
    out.addresses[address] = path


def _host_address(doc: _Document, node: yaml.Node, path: str, version: int, out: _Builder) -> str:
    """A node's own address: one host (/32 or /128) in the benchmarking range."""
    text = doc.text(node, path, "198.18.255.1" if version == 4 else "2001:2:0:ff::1")
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        doc.fail(node, path, f"{text!r} is not an IP address", "e.g. 198.18.255.1 or 2001:2:0:ff::1")
    _check_range(doc, node, path, interface.ip, version)
    if interface.network.prefixlen != interface.max_prefixlen:
        doc.fail(node, path, f"{text} is a network, not one address", f"write it as /{interface.max_prefixlen}")
    _claim_address(doc, node, path, str(interface.ip), out)
    return f"{interface.ip}/{interface.max_prefixlen}"


def _check_range(doc: _Document, node: yaml.Node, path: str, ip: Any, version: int | None) -> None:
    if version is not None and ip.version != version:
        want = "an IPv4" if version == 4 else "an IPv6"
        doc.fail(node, path, f"{ip} is not {want} address", "use address for IPv4 and address6 for IPv6")
    allowed = IPV4_RANGE if ip.version == 4 else IPV6_RANGE
    if ip not in allowed:
        doc.fail(node, path, f"{ip} is outside {allowed}", f"use the benchmarking range {allowed}, reserved by RFC 2544/5180")


def _read_nodes(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    pairs = doc.mapping(node, path)
    if not pairs:
        doc.fail(node, path, "no nodes", "list at least two nodes, e.g. europe: {role: host}")
    for name, key_node, value_node in pairs:
        here = _join(path, name)
        if not NODE_NAME.fullmatch(name):
            doc.fail(key_node, here, f"node name {name!r} is not valid", "use a-z, 0-9 and -, start with a letter, at most 15 characters")
        fields = {} if _is_null(value_node) else {k: v for k, _, v in doc.mapping(value_node, here, NODE_FIELDS)}
        role = "host"
        if "role" in fields:
            role = doc.text(fields["role"], _join(here, "role"), "router")
            if role not in NODE_ROLES:
                doc.fail(fields["role"], _join(here, "role"), f"unknown role {role!r}", f"use one of {', '.join(NODE_ROLES)}")
        address = address6 = None
        if "address" in fields:
            address = _host_address(doc, fields["address"], _join(here, "address"), 4, out)
        if "address6" in fields:
            address6 = _host_address(doc, fields["address6"], _join(here, "address6"), 6, out)
        out.nodes[name] = Node(name=name, role=role, address=address, address6=address6)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _read_ends(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> tuple[str, str]:
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


def _read_link_addresses(
    doc: _Document, node: yaml.Node, path: str, ends: tuple[str, str], out: _Builder
) -> dict[str, tuple[str | None, str | None]]:
    """`addresses: {node: 198.18.0.1/30 | [v4, v6]}` -> node -> (address, address6)."""
    result: dict[str, tuple[str | None, str | None]] = {}
    networks: dict[int, tuple[Any, str]] = {}
    for name, key_node, value_node in doc.mapping(node, path, ends):
        here = _join(path, name)
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
            _check_range(doc, item, here, interface.ip, None)
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
            _claim_address(doc, item, here, str(interface.ip), out)
        result[name] = (v4, v6)
    return result


def _read_link(doc: _Document, name: str, key_node: yaml.Node, node: yaml.Node, path: str, out: _Builder) -> Link:
    if not LINK_NAME.fullmatch(name):
        doc.fail(key_node, path, f"link name {name!r} is not valid", "use a-z, 0-9 and -, at most 31 characters")
    pairs = doc.mapping(node, path, LINK_FIELDS)
    fields = {key: value_node for key, _, value_node in pairs}
    if "ends" not in fields:
        doc.fail(node, path, "a link needs ends", "add ends: [node1, node2]")
    ends = _read_ends(doc, fields["ends"], _join(path, "ends"), out)

    params = LinkParams()
    preset_name = None
    length_km = None
    if "preset" in fields:
        preset_path = _join(path, "preset")
        preset_name = doc.text(fields["preset"], preset_path, "aktau-sumgait")
        try:
            preset = get_preset(preset_name)
        except InputError as exc:
            doc.fail(fields["preset"], preset_path, exc.bare_message, exc.fix)
        params = preset.params()
        length_km = preset.length_km
    shared = _apply_params(doc, pairs, path, params)
    if "length_km" in fields:  # validated by _apply_params above
        length_km = float(doc.value(fields["length_km"], _join(path, "length_km")))

    directions = []
    for direction in ("a_to_b", "b_to_a"):
        if direction in fields and not _is_null(fields[direction]):
            here = _join(path, direction)
            directions.append(_apply_params(doc, doc.mapping(fields[direction], here, DIRECTION_FIELDS), here, shared))
        else:
            directions.append(shared)

    mtu = DEFAULT_MTU
    if "mtu" in fields:
        mtu = doc.integer(fields["mtu"], _join(path, "mtu"), *MTU_RANGE, "1500")
    addresses: dict[str, tuple[str | None, str | None]] = {}
    if "addresses" in fields:
        addresses = _read_link_addresses(doc, fields["addresses"], _join(path, "addresses"), ends, out)
    a, b = (LinkEnd(end, *addresses.get(end, (None, None))) for end in ends)
    return Link(
        name=name, a=a, b=b, a_to_b=directions[0], b_to_a=directions[1], mtu=mtu, preset=preset_name, length_km=length_km
    )


def _read_links(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    if _is_null(node):
        return
    for name, key_node, value_node in doc.mapping(node, path):
        out.links[name] = _read_link(doc, name, key_node, value_node, _join(path, name), out)


@dataclass(frozen=True)
class Section:
    """A top-level key: its reader, whether it must be present, and its read order."""

    read: Callable[[_Document, yaml.Node, str, _Builder], None]
    required: bool = False


#: Top-level sections, in the order they are read (links need nodes first,
#: whatever order the file uses). To add a section, add it here.
TOP_LEVEL: dict[str, Section] = {
    "name": Section(_read_name),
    "seed": Section(_read_seed),
    "nodes": Section(_read_nodes, required=True),
    "links": Section(_read_links),
}


# ---------------------------------------------------------------------------
# Entry points


def parse_topology(text: str, *, source: str, base_dir: str | Path | None = None) -> Topology:
    """Parse and validate topology YAML `text`; `source` names it in errors.

    Relative paths in the file (capacity traces) are resolved against
    `base_dir`, by default the current directory.
    """
    doc = _Document(source, Path(base_dir) if base_dir is not None else Path.cwd())
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "not valid YAML"
        raise ScenarioError(f"YAML syntax: {problem}", where=f"{source}:{line}", fix="check indentation, colons and quotes near this line") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"YAML syntax: {exc}", where=f"{source}:1", fix="check the file is YAML text") from None
    if root is None or _is_null(root):
        doc.fail(root, "", "the file is empty", "start with 'nodes:' and 'links:'")
    pairs = doc.mapping(root, "", tuple(TOP_LEVEL))
    given = {key: value_node for key, _, value_node in pairs}
    out = _Builder()
    for key, section in TOP_LEVEL.items():
        if key in given:
            section.read(doc, given[key], key, out)
        elif section.required:
            doc.fail(root, key, f"missing section {key!r}", f"add a '{key}:' section")
    return Topology(
        nodes=tuple(out.nodes.values()), links=tuple(out.links.values()), name=out.name, source=source, seed=out.seed
    )


def load_topology(path: str | Path) -> Topology:
    """Read, parse and validate the topology file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"topology file {str(path)!r} does not exist", fix="check the path") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"topology file {str(path)!r} is not UTF-8 text", fix="save it as UTF-8") from None
    except OSError as exc:
        raise ScenarioError(f"cannot read topology file {str(path)!r}: {exc.strerror}") from None
    return parse_topology(text, source=str(path), base_dir=path.parent)


#: Preset names, re-exported for `caspian validate --help` and the docs.
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
