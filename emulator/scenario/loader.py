"""YAML scenario files to `Scenario` (and `Topology`), with one-line errors that say where and how to fix.

A scenario file is a topology file (`name`, `seed`, `nodes`, `links`, see
docs/topology.md) plus `duration`, `traffic`, `timeline` and `assertions`
(docs/scenario.md). One parser reads both: `parse_scenario` returns the whole
`Scenario`, `parse_topology` its `.topology` (so a topology-only reader
accepts scenario files too).

The contract: what the loader accepts, the run can run as written; anything
else is a `ScenarioError` of one line, `FILE:LINE: field.path: what is wrong
(how to fix)`, its control and non-printable characters escaped
(`emulator.errors.one_line`). No input, however made, gets another exception,
a hang or unbounded work:

- Files are read by `emulator.model.limits.read_bounded`: regular files only
  (a FIFO, /dev/zero or a directory is refused before it is opened), at most
  MAX_SCENARIO_BYTES, decoded as UTF-8 with a bad byte named by line and offset.
- YAML is turned into nodes by `_compose`, our own loop over the parser's
  events (no recursion, so 500 levels of nesting are refused, not a
  RecursionError): nesting depth and the nodes reached through aliases are
  bounded (a "billion laughs" is refused), tags (`!foo`, `!!binary`) and merge
  keys (`<<`) are refused, and plain scalars are resolved by `_resolve_plain`
  to null, bool, int, float or text only (a timestamp is text). Numbers are
  bounded before conversion (digits, exponent); NaN and infinity are refused.
- Values are checked against the engine's ranges (`emulator.model.limits`):
  LinkParams does it for every link direction and netem words; the readers
  here for the rest (duration, flap spacing, the timeline's steps, probe
  counts, BFD timers per daemon).

Lines come from the parser's marks: we build the node graph ourselves rather
than `yaml.safe_load` it, because safe_load forgets positions and silently
keeps the last of duplicate keys (two links with the same name would quietly
become one).

Validation is table-driven: `TOP_LEVEL` maps each top-level key to the
function that reads its section, and `NODE_FIELDS` / `LINK_FIELDS` /
`DIRECTION_FIELDS` (and `TRAFFIC_FIELDS`, `EVENT_FIELDS`, `ASSERTION_FIELDS`)
list what each mapping may hold. Adding a section is one entry in `TOP_LEVEL`
plus its reader, which stores what it read in `_Builder`. docs/scenario.schema.json
mirrors these tables; tests/unit/test_scenario_loader.py keeps the two in step.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from decimal import Decimal
from typing import Any, Callable, NoReturn

import yaml

from emulator.errors import InputError, ScenarioError
from emulator.model.limits import (
    BFD_INTERVAL_NS,
    BFD_INTERVAL_UNIT_NS,
    BFD_MULTIPLIER,
    MAX_DELAY_NS,
    MAX_DURATION_NS,
    MAX_FLAP_COUNT,
    MAX_LIMIT_PACKETS,
    MAX_NUMBER_DIGITS,
    MAX_OVERHEAD_BYTES,
    MAX_PROBE_PACKETS,
    MAX_QUANTITY_CHARS,
    MAX_RATE_BPS,
    MAX_SCENARIO_BYTES,
    MAX_SEED,
    MAX_TIMELINE_STEPS,
    MAX_YAML_ALIAS_NODES,
    MAX_YAML_DEPTH,
    MIN_CARRIER_FLAP_HALF_NS,
    MIN_FLAP_HALF_NS,
    read_bounded,
)
from emulator.model.linkparams import LinkParams
from emulator.model.netem import parse_netem_words
from emulator.model.presets import PRESETS, get_preset
from emulator.model.propagation import propagation_delay_ns
from emulator.model.trace import load_trace
from emulator.model.units import format_rate, format_time, parse_percent, parse_rate, parse_size, parse_time
from emulator.scenario.scenario import (
    CUT_MODES,
    DIRECTIONS,
    EVENT_KINDS,
    EVENT_METRICS,
    LINK_METRICS,
    REVERT_KINDS,
    ROUTING_METRICS,
    START_METRICS,
    START_STEP,
    TRAFFIC_KINDS,
    TRAFFIC_METRICS,
    Assertion,
    CaptureSpec,
    Event,
    Scenario,
    TrafficSpec,
    unit_scale_ms,
)
from emulator.scenario.topology import (
    BGP_PREPEND_MAX,
    DEFAULT_MTU,
    NODE_ROLES,
    OSPF_COST_RANGE,
    ROUTING_DAEMONS,
    ROUTING_PROTOCOLS,
    SUPPORTED_ROUTING,
    BfdConfig,
    Link,
    LinkEnd,
    Node,
    RoutingConfig,
    Topology,
)

#: Node names become parts of interface and namespace names; 15 is IFNAMSIZ - 1.
NODE_NAME = re.compile(r"[a-z][a-z0-9-]{0,14}")
LINK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")

#: The benchmarking ranges (RFC 2544, RFC 5180): nothing real can collide with them.
IPV4_RANGE = ipaddress.ip_network("198.18.0.0/15")
IPV6_RANGE = ipaddress.ip_network("2001:2::/48")

#: IPv6 needs an MTU of at least 1280 on every link (RFC 8200).
MTU_RANGE = (1280, 65535)

#: A scenario's duration when the file has no traffic, timeline or assertions.
DEFAULT_DURATION_NS = 10 * 10**9


# ---------------------------------------------------------------------------
# Reading YAML: events to nodes, bounded, with only the scalar kinds we read

#: The parser: libyaml's when PyYAML has it (ten times faster: a 1 MiB file is
#: parsed in under a second), else PyYAML's own. Both are loops over a state
#: stack, not recursive; we use only their events, never their composer or
#: constructor (both recursive, and the constructor resolves tags we refuse).
_PARSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
STR_TAG = "tag:yaml.org,2002:str"

#: Plain scalars that are null and bool: YAML 1.1's words, as safe_load reads
#: them (so `ipv6: yes` keeps its meaning).
_PLAIN_NULL = frozenset(("", "~", "null", "Null", "NULL"))
_PLAIN_BOOL: dict[str, bool] = {
    spelling: value
    for word, value in (("yes", True), ("no", False), ("true", True), ("false", False), ("on", True), ("off", False))
    for spelling in (word, word.capitalize(), word.upper())
}
#: Plain integers: decimal, and 0x / 0o / 0b with at least one digit (`_` between
#: digits, as YAML 1.1). A leading-zero decimal (`010`) is an int here and
#: refused when read: YAML 1.1 makes it octal 8, YAML 1.2 decimal 10.
_PLAIN_INT = re.compile(r"[-+]?(?:[0-9][0-9_]*|0x_*[0-9a-fA-F][0-9a-fA-F_]*|0o_*[0-7][0-7_]*|0b_*[01][01_]*)")
#: Plain floats as YAML 1.1 writes them (a dot required; the exponent signed),
#: and the infinities and NaN, which are refused when read.
_PLAIN_FLOAT = re.compile(
    r"[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
#: Characters YAML allows in a stream (YAML 1.1 §5.1, what PyYAML and libyaml
#: accept); anything else is named by line and column before the parser sees it.
_NOT_YAML_TEXT = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _resolve_plain(value: str) -> str:
    """The tag of a plain (unquoted, untagged) scalar: null, bool, int, float or str.

    Everything YAML 1.1 would make something else is text: timestamps
    (`2001-13-45` is a name, not a broken date), sexagesimal numbers
    (`1:30`), `=`. `<<` is text here; as a key it is refused by `_compose`.
    """
    if value in _PLAIN_NULL:
        return NULL_TAG
    if value in _PLAIN_BOOL:
        return BOOL_TAG
    first = value[:1]
    if first in "0123456789+-.":
        if _PLAIN_INT.fullmatch(value):
            return INT_TAG
        if _PLAIN_FLOAT.fullmatch(value):
            return FLOAT_TAG
    return STR_TAG


class _Open:
    """A collection being composed: its node, its items so far, and its expanded size."""

    __slots__ = ("node", "items", "size", "height", "anchor")

    def __init__(self, node: yaml.Node, anchor: str | None) -> None:
        self.node = node
        self.items: list[yaml.Node] = []
        self.size = 1  # nodes, aliased subtrees counted whole
        self.height = 1  # levels, through aliases too
        self.anchor = anchor


def _path_of(stack: list[_Open]) -> str:
    """The field path of the place being composed (`links.l.delay`, `timeline[2]`)."""
    path = ""
    for frame in stack:
        if isinstance(frame.node, yaml.MappingNode):
            if len(frame.items) % 2:  # a key read, its value being composed
                key = frame.items[-1]
                path = _join(path, key.value if isinstance(key, yaml.ScalarNode) else "?")
        else:
            path = f"{path}[{len(frame.items)}]"
    return path


def _compose(text: str, source: str) -> yaml.Node | None:
    """The node tree of YAML `text` (None if it holds no document), or a one-line ScenarioError.

    Replaces yaml.compose: a loop over the parser's events with a stack of its
    own, so the depth is ours to bound (MAX_YAML_DEPTH, aliases included) and
    nothing recurses. It also refuses what the loader does not read: more than
    one document, tags, merge keys, aliases of a node inside itself, and more
    than MAX_YAML_ALIAS_NODES nodes reached through aliases (each use of an
    alias counts its whole subtree, so an exponential "billion laughs" stops at
    the alias that crosses the bound).
    """

    def fail(mark: Any, stack: list[_Open], message: str, fix: str) -> NoReturn:
        line = mark.line + 1 if mark is not None else 1
        path = _path_of(stack)
        raise ScenarioError(message, where=f"{source}:{line}: {path}" if path else f"{source}:{line}", fix=fix)

    bad = _NOT_YAML_TEXT.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise ScenarioError(f"character {bad.group()!r} (U+{ord(bad.group()):04X}) at column {column} is not allowed in YAML",
                            where=f"{source}:{line}", fix="remove it; inside double quotes write it escaped, e.g. \"\\t\"")
    stack: list[_Open] = []
    anchors: dict[str, tuple[yaml.Node, int, int]] = {}
    open_anchors: set[str] = set()
    root: yaml.Node | None = None
    documents = 0
    aliased = 0

    def add(node: yaml.Node, size: int, height: int, mark: Any) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        parent = stack[-1]
        if (isinstance(parent.node, yaml.MappingNode) and len(parent.items) % 2 == 0
                and isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG and node.value == "<<" and node.style is None):
            parent.items.append(node)
            fail(mark, stack, "YAML merge keys (<<) are not supported",
                 "write the keys out, or give the whole value an anchor and use it: key: *name")
        parent.items.append(node)
        parent.size += size
        parent.height = max(parent.height, height + 1)

    def tag_refused(tag: str | None, mark: Any) -> None:
        if tag is not None:
            # as written: the parser expands `!!bool` to tag:yaml.org,2002:bool
            shown = "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag
            fail(mark, stack, f"YAML tags are not supported ({shown})",
                 "remove the tag; quote the value if it must be text")

    try:
        for event in yaml.parse(text, Loader=_PARSER):
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    fail(event.start_mark, stack, "a second YAML document (after ---)", "keep one document per file")
            elif isinstance(event, yaml.ScalarEvent):
                tag_refused(event.tag, event.start_mark)
                tag = _resolve_plain(event.value) if event.implicit[0] else STR_TAG
                node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark,
                                       style=None if event.implicit[0] else (event.style or '"'))
                if event.anchor is not None:
                    if event.anchor in anchors or event.anchor in open_anchors:
                        fail(event.start_mark, stack, f"anchor &{event.anchor} is defined twice", "give each anchor one name")
                    anchors[event.anchor] = (node, 1, 1)
                add(node, 1, 1, event.start_mark)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                tag_refused(event.tag, event.start_mark)
                if len(stack) + 1 > MAX_YAML_DEPTH:
                    fail(event.start_mark, stack, f"nested more than {MAX_YAML_DEPTH} levels deep",
                         "no field nests deeper than a few levels: check the brackets and indentation")
                if isinstance(event, yaml.SequenceStartEvent):
                    node = yaml.SequenceNode("tag:yaml.org,2002:seq", [], event.start_mark, None, flow_style=event.flow_style)
                else:
                    node = yaml.MappingNode("tag:yaml.org,2002:map", [], event.start_mark, None, flow_style=event.flow_style)
                if event.anchor is not None:
                    if event.anchor in anchors or event.anchor in open_anchors:
                        fail(event.start_mark, stack, f"anchor &{event.anchor} is defined twice", "give each anchor one name")
                    open_anchors.add(event.anchor)
                stack.append(_Open(node, event.anchor))
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                frame = stack.pop()
                frame.node.end_mark = event.end_mark
                if isinstance(frame.node, yaml.MappingNode):
                    items = frame.items
                    frame.node.value = list(zip(items[0::2], items[1::2]))
                else:
                    frame.node.value = frame.items
                if frame.anchor is not None:
                    open_anchors.discard(frame.anchor)
                    anchors[frame.anchor] = (frame.node, frame.size, frame.height)
                add(frame.node, frame.size, frame.height, event.start_mark)
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor in open_anchors:
                    fail(event.start_mark, stack, f"alias *{event.anchor} is inside the node it names (a loop)",
                         "an alias can only repeat a node that is complete before it")
                if event.anchor not in anchors:
                    fail(event.start_mark, stack, f"alias *{event.anchor} has no anchor &{event.anchor} before it",
                         "define the anchor (&name) earlier in the file")
                node, size, height = anchors[event.anchor]
                aliased += size
                if aliased > MAX_YAML_ALIAS_NODES:
                    fail(event.start_mark, stack, f"aliases expand to more than {MAX_YAML_ALIAS_NODES} nodes",
                         "use fewer aliases, or aliases of smaller nodes: an alias of aliases multiplies")
                if len(stack) + height > MAX_YAML_DEPTH:
                    fail(event.start_mark, stack, f"alias *{event.anchor} nests more than {MAX_YAML_DEPTH} levels deep",
                         "no field nests deeper than a few levels")
                add(node, size, height, event.start_mark)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "not valid YAML"
        raise ScenarioError(f"YAML syntax: {problem}", where=f"{source}:{line}",
                            fix="check indentation, colons and quotes near this line") from None
    except yaml.YAMLError as exc:  # a reader error the check above missed: no line to give
        raise ScenarioError(f"YAML syntax: {type(exc).__name__}", where=f"{source}:1", fix="check the file is YAML text") from None
    return root


class _Document:
    """The file being read: its name, and how to turn nodes into values or errors."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, node: yaml.Node | None, path: str, message: str, fix: str = "") -> NoReturn:
        """Raise the one-line ScenarioError for `node` at field `path`."""
        line = node.start_mark.line + 1 if node is not None else 1
        where = f"{self.source}:{line}: {path}" if path else f"{self.source}:{line}"
        raise ScenarioError(message, where=where, fix=fix)

    def value(self, node: yaml.Node, path: str) -> Any:
        """The plain value of a scalar node (mappings and lists are refused).

        None, a bool, an int, a finite float or a str, as `_resolve_plain`
        tagged it; numbers are bounded before they are converted.
        """
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, path, f"expected a single value, got a {_kind(node)}", "write one value here")
        text = node.value
        if node.tag == NULL_TAG:
            return None
        if node.tag == BOOL_TAG:
            return _PLAIN_BOOL[text]
        if node.tag == INT_TAG:
            return self._integer_value(node, path, text)
        if node.tag == FLOAT_TAG:
            return self._float_value(node, path, text)
        return text

    def _integer_value(self, node: yaml.Node, path: str, text: str) -> int:
        digits = text.replace("_", "").lstrip("+-")
        base = {"0x": 16, "0o": 8, "0b": 2}.get(digits[:2].lower(), 10)
        if base != 10:
            digits = digits[2:]
        # Count before int(): a 5000-digit number is beyond every field, and int() refuses it anyway.
        if len(digits.lstrip("0")) > MAX_NUMBER_DIGITS:
            self.fail(node, path, f"a {len(digits)}-digit number is beyond any value here",
                      "the widest field, seed, takes at most 20 digits")
        if base == 10 and len(digits) > 1 and digits.startswith("0"):
            self.fail(node, path, f"{text} has a leading zero: YAML 1.1 reads it as octal, YAML 1.2 as decimal",
                      f"write {digits.lstrip('0') or '0'}, or 0o{digits.lstrip('0') or '0'} for octal")
        value = int(digits, base)
        return -value if text.startswith("-") else value

    def _float_value(self, node: yaml.Node, path: str, text: str) -> float:
        if text.lstrip("+-").lower() in (".inf", ".nan"):
            self.fail(node, path, f"{text} is not a finite number", "no field takes infinity or NaN: write a number")
        if len(text) > MAX_QUANTITY_CHARS:
            self.fail(node, path, f"a number of {len(text)} characters is beyond any value here", "write a shorter number")
        value = float(text.replace("_", ""))
        if not math.isfinite(value):
            self.fail(node, path, f"{text} is too large to be a number here", "write a number within range")
        return value

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
                # (no suggestion for a key longer than any name: difflib's work grows with its length)
                close = difflib.get_close_matches(key, allowed, n=1) if len(key) <= 64 else []
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
    delay_ns = propagation_delay_ns(float(length))
    if delay_ns > MAX_DELAY_NS:
        most_km = int(length * MAX_DELAY_NS / delay_ns)
        doc.fail(node, path, f"length {length} km gives a delay of {format_time(delay_ns)}, over the engine's "
                 f"maximum of {format_time(MAX_DELAY_NS)}", f"give at most {most_km} km")
    return params.replace(delay_ns=delay_ns)


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
    return params.replace(overhead_bytes=doc.integer(node, path, 0, MAX_OVERHEAD_BYTES, "24"))


def _read_limit(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(limit_packets=doc.integer(node, path, 0, MAX_LIMIT_PACKETS, "1000"))


def _read_limit_bytes(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    return params.replace(limit_bytes=parse_size(doc.value(node, path), field="limit_bytes"))


def _read_trace(doc: _Document, node: yaml.Node, path: str, params: LinkParams) -> LinkParams:
    relative = doc.text(node, path, "traces/lte.trace")
    try:
        # bounded: a regular file of at most MAX_TRACE_BYTES (not a FIFO, not /dev/zero, no NUL in the path)
        trace = load_trace(doc.base_dir / relative)
    except InputError as exc:
        # keep the trace's own FILE:LINE, after the field that names the trace
        doc.fail(node, path, f"{exc.where}: {exc.bare_message}" if exc.where else exc.bare_message, exc.fix)
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

NODE_FIELDS: tuple[str, ...] = ("role", "address", "address6", "asn")
LINK_FIELDS: tuple[str, ...] = ("ends", "preset", *PARAM_FIELDS, "mtu", "addresses", "cost", "bgp_prepend", "a_to_b", "b_to_a")
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
    duration_ns: int = DEFAULT_DURATION_NS
    traffic: dict[str, TrafficSpec] = field(default_factory=dict)
    timeline: list[Event] = field(default_factory=list)
    assertions: list[Assertion] = field(default_factory=list)
    routing: RoutingConfig | None = None
    engine_shards: int | None = None
    capture: list[CaptureSpec] = field(default_factory=list)
    #: timeline events of each kind (read once, for every routing metric's step label)
    step_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENT_KINDS, 0))


def _read_name(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    name = doc.text(node, path, "aktau-sumgait")
    if not 1 <= len(name) <= 64:
        doc.fail(node, path, "name must be 1..64 characters", "e.g. name: aktau-sumgait")
    if not name.isprintable():  # it is printed in reports and on the terminal
        doc.fail(node, path, f"name {name!r} has a control character", "e.g. name: aktau-sumgait")
    out.name = name


def _read_seed(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    out.seed = doc.integer(node, path, 0, MAX_SEED, "42")


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
        asn = None
        if "asn" in fields:
            asn = _read_asn(doc, fields["asn"], _join(here, "asn"), role, out)
        out.nodes[name] = Node(name=name, role=role, address=address, address6=address6, asn=asn)
    if out.routing is not None and out.routing.protocol == "bgp":
        _check_asns(doc, {name: key_node for name, key_node, _ in pairs}, path, out)


#: BGP AS numbers: 4 bytes, not 0 (RFC 7607) nor 23456 (AS_TRANS, RFC 6793) nor 4294967295
ASN_RANGE = (1, 4_294_967_294)


def _read_asn(doc: _Document, node: yaml.Node, path: str, role: str, out: _Builder) -> int:
    if out.routing is None or out.routing.protocol != "bgp":
        doc.fail(node, path, "asn applies to BGP routing only", "add 'routing: {protocol: bgp}' at the top level or remove asn")
    if role != "router":
        doc.fail(node, path, "asn applies to routers only (hosts run no daemon)", "remove it, or give the node role: router")
    asn = doc.integer(node, path, *ASN_RANGE, "64512")
    if asn == 23456:
        doc.fail(node, path, "AS 23456 is AS_TRANS (RFC 6793), not a real AS", "e.g. a private AS from 64512..65534")
    return asn


def _check_asns(doc: _Document, keys: dict[str, yaml.Node], path: str, out: _Builder) -> None:
    """Every router's AS (given or default) is its own: eBGP between every pair of routers."""
    topology = Topology(nodes=tuple(out.nodes.values()), links=(), source=doc.source, routing=out.routing)
    owner: dict[int, str] = {}
    for router, asn in zip(topology.routers(), topology.router_asns()):  # not asn() per router: O(n) each
        if asn in owner:
            here = _join(path, router.name)
            doc.fail(keys[router.name], here, f"router {router.name} has AS {asn}, as {owner[asn]} does",
                     "give every router its own asn (each router is an AS of its own: eBGP only)")
        owner[asn] = router.name


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
    cost = None
    if "cost" in fields:
        here = _join(path, "cost")
        if out.routing is None or out.routing.protocol != "ospf":
            doc.fail(fields["cost"], here, "cost applies to OSPF routing only", "add 'routing: {protocol: ospf}' at the top level or remove cost")
        cost = doc.integer(fields["cost"], here, *OSPF_COST_RANGE, "100")
    prepend = 0
    if "bgp_prepend" in fields:
        here = _join(path, "bgp_prepend")
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
        length_km=length_km, cost=cost, bgp_prepend=prepend,
    )


def _read_links(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    if _is_null(node):
        return
    for name, key_node, value_node in doc.mapping(node, path):
        out.links[name] = _read_link(doc, name, key_node, value_node, _join(path, name), out)


# ---------------------------------------------------------------------------
# Scenario sections: duration, traffic, timeline, assertions. They refer to
# nodes and links by name, so they are read after `nodes` and `links`.

#: Probe streams: packets per second, and payload bytes (sequence 8 B + send time 8 B).
PROBE_RATE_RANGE = (1, 20_000)
PROBE_SIZE_RANGE = (16, 1400)
UDP_SIZE_RANGE = (1, 1400)
#: Default payload: probes are small; UDP fills a 1500-byte frame with IPv6 headers.
DEFAULT_SIZE = {"probe": 64, "udp": 1400, "tcp": 64}
#: Default rate: probe 1000 pps (1 ms resolution for gaps); udp 1 Mbit/s as
#: iperf3; tcp 0 = unlimited.
DEFAULT_RATE = {"probe": 1000.0, "udp": 1e6, "tcp": 0.0}
#: Names an assertion may start with besides traffic names.
ASSERTION_PREFIXES = ("link", "events", "routing")

TRAFFIC_FIELDS: tuple[str, ...] = ("kind", "from", "to", "rate", "size", "start", "stop", "ipv6")
#: Keys of a timeline item: `at`, exactly one of EVENT_KINDS (its value names
#: the link), and the options below (each only for the kinds listed).
EVENT_OPTIONS: dict[str, tuple[str, ...]] = {
    "direction": EVENT_KINDS,
    "netem": ("set",),
    "period": ("flap",),
    "count": ("flap",),
    "mode": ("cut", "flap"),
}
EVENT_FIELDS: tuple[str, ...] = ("at", *EVENT_KINDS, *EVENT_OPTIONS)
#: Bound keys of an assertion: exactly one per assertion.
#: (`includes`/`excludes` for path metrics, `equals: true|false` for boolean ones.)
ASSERTION_BOUNDS: tuple[str, ...] = ("between", "at_most", "at_least", "equals", "includes", "excludes")
#: Bound keys by the kind of value a metric has (scenario.ROUTING_METRICS; every other metric is a number).
BOUNDS_BY_VALUE: dict[str, tuple[str, ...]] = {
    "number": ("between", "at_most", "at_least", "equals"),
    "path": ("includes", "excludes"),
    "bool": ("equals",),
}
_STEP_LABEL = re.compile(r"^(cut|restore|set|flap)([1-9][0-9]*)$")
#: `tolerance`: the largest emulator error (a duration) a timing assertion accepts
#: before it is inconclusive, however far the value lies from its bound
ASSERTION_FIELDS: tuple[str, ...] = ("metric", *ASSERTION_BOUNDS, "tolerance")

_PPS = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_PPS_UNITS = {"pps": 1, "kpps": 1000}


def _suggest(name: str, choices: Any, label: str) -> str:
    """`did you mean 'x'? label: a, b, c` for a fix."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}{label}: {', '.join(choices) or 'none'}"


def _time(doc: _Document, node: yaml.Node, path: str, name: str) -> int:
    """A duration in ns, with unit errors located at `node`."""
    try:
        return parse_time(doc.value(node, path), field=name)
    except ScenarioError:
        raise
    except InputError as exc:
        doc.fail(node, path, exc.bare_message, exc.fix)


def _node_name(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> str:
    """The name of an existing node."""
    name = doc.text(node, path, "europe")
    if name not in out.nodes:
        doc.fail(node, path, f"no node called {name!r}", _suggest(name, out.nodes, "nodes"))
    return name


def _link_name(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> Link:
    """An existing link, by name."""
    name = doc.text(node, path, "aktau-sumgait")
    if name not in out.links:
        doc.fail(node, path, f"no link called {name!r}", _suggest(name, out.links, "links"))
    return out.links[name]


def _read_duration(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    duration = _time(doc, node, path, "duration")
    if duration <= 0:
        doc.fail(node, path, "duration must be longer than 0", "e.g. duration: 20s")
    if duration > MAX_DURATION_NS:
        doc.fail(node, path, f"duration {format_time(duration)} is over the {format_time(MAX_DURATION_NS)} a run may last",
                 f"give at most duration: {format_time(MAX_DURATION_NS)}, iperf3's longest test")
    out.duration_ns = duration


def _end(out: _Builder) -> str:
    """The scenario's end, for messages."""
    return f"the scenario's end (duration {format_time(out.duration_ns)})"


def _probe_rate(doc: _Document, node: yaml.Node, path: str) -> float:
    value = doc.value(node, path)
    match = _PPS.match(value) if isinstance(value, str) and len(value) <= MAX_QUANTITY_CHARS else None
    low, high = PROBE_RATE_RANGE
    if match is None or match.group(2).lower() not in _PPS_UNITS:
        doc.fail(node, path, f"probe rate {value!r} is not in packets per second", "e.g. 1000pps or 10kpps")
    rate = float(Decimal(match.group(1)) * _PPS_UNITS[match.group(2).lower()])
    if not low <= rate <= high:
        doc.fail(node, path, f"probe rate {value} is outside {low}..{high} packets/s", f"give {low}pps to {high // 1000}kpps")
    return rate


def _bit_rate(doc: _Document, node: yaml.Node, path: str, kind: str) -> float:
    value = doc.value(node, path)
    try:
        rate = parse_rate(value, field="rate")
    except InputError as exc:
        doc.fail(node, path, exc.bare_message, f"{kind} rate is a bit rate, e.g. 64kbit or 100mbit")
    if kind == "udp" and rate == 0:
        doc.fail(node, path, "udp rate must be above 0", "e.g. 64kbit or 100mbit")
    if rate > MAX_RATE_BPS:
        doc.fail(node, path, f"{kind} rate {format_rate(rate)} is over {format_rate(MAX_RATE_BPS)}, more than any link here carries",
                 f"give at most {format_rate(MAX_RATE_BPS)}")
    return float(rate)


def _read_traffic_item(doc: _Document, name: str, key_node: yaml.Node, node: yaml.Node, path: str, out: _Builder) -> TrafficSpec:
    if not LINK_NAME.fullmatch(name):
        doc.fail(key_node, path, f"traffic name {name!r} is not valid", "use a-z, 0-9 and -, at most 31 characters")
    if name in ASSERTION_PREFIXES:
        doc.fail(key_node, path, f"traffic name {name!r} is reserved for assertions", "pick another name, e.g. probe")
    fields = {key: value for key, _, value in doc.mapping(node, path, TRAFFIC_FIELDS)}
    for required in ("kind", "from", "to"):
        if required not in fields:
            doc.fail(node, path, f"traffic needs '{required}'", "give kind, from and to, e.g. {kind: probe, from: europe, to: asia}")
    kind = doc.text(fields["kind"], _join(path, "kind"), "probe")
    if kind not in TRAFFIC_KINDS:
        doc.fail(fields["kind"], _join(path, "kind"), f"unknown traffic kind {kind!r}", _suggest(kind, TRAFFIC_KINDS, "kinds"))
    source = _node_name(doc, fields["from"], _join(path, "from"), out)
    target = _node_name(doc, fields["to"], _join(path, "to"), out)
    if source == target:
        doc.fail(fields["to"], _join(path, "to"), f"traffic from {source!r} to itself", "send to another node")

    rate = DEFAULT_RATE[kind]
    if "rate" in fields:
        here = _join(path, "rate")
        rate = _probe_rate(doc, fields["rate"], here) if kind == "probe" else _bit_rate(doc, fields["rate"], here, kind)
    size = DEFAULT_SIZE[kind]
    if "size" in fields:
        here = _join(path, "size")
        if kind == "tcp":
            doc.fail(fields["size"], here, "size applies to probe and udp traffic only", "remove it; tcp sends full segments")
        low, high = PROBE_SIZE_RANGE if kind == "probe" else UDP_SIZE_RANGE
        size = doc.integer(fields["size"], here, low, high, "64")

    start = _time(doc, fields["start"], _join(path, "start"), "start") if "start" in fields else 0
    if start >= out.duration_ns:
        doc.fail(fields["start"], _join(path, "start"), f"start {format_time(start)} is not before {_end(out)}", "start earlier or lengthen duration")
    stop = out.duration_ns
    if "stop" in fields:
        here = _join(path, "stop")
        stop = _time(doc, fields["stop"], here, "stop")
        if stop <= start:
            doc.fail(fields["stop"], here, f"stop {format_time(stop)} is not after start {format_time(start)}", "stop later than start")
        if stop > out.duration_ns:
            doc.fail(fields["stop"], here, f"stop {format_time(stop)} is after {_end(out)}", f"stop at most at {format_time(out.duration_ns)} or lengthen duration")
    probes = rate * (stop - start) / 1e9 if kind == "probe" else 0.0
    if probes > MAX_PROBE_PACKETS:
        where = fields.get("rate", node)
        doc.fail(where, _join(path, "rate") if "rate" in fields else path,
                 f"the probe stream sends {probes:.0f} probes ({rate:g}/s for {format_time(stop - start)}), "
                 f"more than the {MAX_PROBE_PACKETS} a run records per stream",
                 "lower the rate, or shorten the stream with start and stop")
    ipv6 = False
    if "ipv6" in fields:
        ipv6 = doc.value(fields["ipv6"], _join(path, "ipv6"))
        if not isinstance(ipv6, bool):
            doc.fail(fields["ipv6"], _join(path, "ipv6"), f"expected true or false, got {ipv6!r}", "write ipv6: true or ipv6: false")
    return TrafficSpec(
        name=name, kind=kind, source=source, target=target, start_ns=start, stop_ns=stop, rate=rate, size=size, ipv6=ipv6
    )


def _read_traffic(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    if _is_null(node):
        return
    for name, key_node, value_node in doc.mapping(node, path):
        out.traffic[name] = _read_traffic_item(doc, name, key_node, value_node, _join(path, name), out)


def _read_direction(doc: _Document, node: yaml.Node, path: str, link: Link) -> str:
    """`both`, `a_to_b`, `b_to_a`, or the name of the end whose frames are meant."""
    direction = doc.text(node, path, "both")
    if direction in DIRECTIONS:
        return direction
    if direction == link.a.node:
        return "a_to_b"
    if direction == link.b.node:
        return "b_to_a"
    choices = (*DIRECTIONS, *link.nodes)
    doc.fail(node, path, f"unknown direction {direction!r} for link {link.name!r}", _suggest(direction, choices, "use one of"))


def _set_words(doc: _Document, node: yaml.Node, path: str, link: Link, direction: str) -> tuple[str, LinkParams, LinkParams | None]:
    """The words of a `set` event and the parameters they give each chosen direction."""
    words = doc.text(node, path, '"delay 5ms loss 1%"')
    if not words.split():
        doc.fail(node, path, "no netem words", 'e.g. netem: "delay 5ms loss 1%"')
    bases = {"both": (link.a_to_b, link.b_to_a), "a_to_b": (link.a_to_b,), "b_to_a": (link.b_to_a,)}[direction]
    try:
        params = [parse_netem_words(words, base) for base in bases]
    except InputError as exc:
        doc.fail(node, path, exc.bare_message, exc.fix)
    return words, params[0], params[1] if len(params) == 2 else None


def _read_event(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> Event:
    pairs = doc.mapping(node, path, EVENT_FIELDS)
    fields = {key: value for key, _, value in pairs}
    keys = {key: key_node for key, key_node, _ in pairs}
    kinds = [kind for kind in EVENT_KINDS if kind in fields]
    if len(kinds) != 1:
        what = "no event" if not kinds else f"{len(kinds)} events ({', '.join(kinds)})"
        doc.fail(node, path, f"{what} in one item", "give exactly one of cut, restore, set, flap with the link's name, e.g. {at: 10s, cut: aktau-sumgait}")
    kind = kinds[0]
    for option, kinds_allowed in EVENT_OPTIONS.items():
        if option in fields and kind not in kinds_allowed:
            doc.fail(keys[option], _join(path, option), f"'{option}' does not apply to a {kind} event", f"remove it; it is for {', '.join(kinds_allowed)}")
    if "at" not in fields:
        doc.fail(node, path, f"the {kind} event has no time", "add at: with the time from the start, e.g. at: 10s")
    at = _time(doc, fields["at"], _join(path, "at"), "at")
    link = _link_name(doc, fields[kind], _join(path, kind), out)
    direction = _read_direction(doc, fields["direction"], _join(path, "direction"), link) if "direction" in fields else "both"
    if at > out.duration_ns:
        doc.fail(fields["at"], _join(path, "at"), f"at {format_time(at)} is after {_end(out)}", "move the event earlier or lengthen duration")
    mode = "silent"
    if "mode" in fields:
        mode = doc.text(fields["mode"], _join(path, "mode"), "carrier")
        if mode not in CUT_MODES:
            doc.fail(fields["mode"], _join(path, "mode"), f"unknown cut mode {mode!r}", _suggest(mode, CUT_MODES, "modes"))
        if mode == "carrier" and direction != "both":
            doc.fail(fields["mode"], _join(path, "mode"),
                     "a carrier cut takes both ends' interfaces down, so it cannot be one direction",
                     "remove 'direction', or use the default silent mode for a one-way cut")

    if kind == "set":
        if "netem" not in fields:
            doc.fail(node, path, "a set event needs netem words", 'add e.g. netem: "delay 5ms loss 1%"')
        words, params, params_b_to_a = _set_words(doc, fields["netem"], _join(path, "netem"), link, direction)
        return Event(at, kind, link.name, direction, params=params, params_b_to_a=params_b_to_a, words=words)
    if kind == "flap":
        for required, example in (("period", "period: 1s"), ("count", "count: 3")):
            if required not in fields:
                doc.fail(node, path, f"a flap event needs '{required}'", f"add e.g. {example}")
        period = _time(doc, fields["period"], _join(path, "period"), "period")
        if period <= 0:
            doc.fail(fields["period"], _join(path, "period"), "period must be longer than 0", "e.g. period: 1s (down half, up half)")
        # The shortest down/up half the engine holds and the probes resolve
        # (limits.MIN_FLAP_HALF_NS; longer with carrier: interfaces follow from a thread).
        floor = MIN_CARRIER_FLAP_HALF_NS if mode == "carrier" else MIN_FLAP_HALF_NS
        if period // 2 < floor:
            how = "a carrier flap's" if mode == "carrier" else "a flap's"
            doc.fail(fields["period"], _join(path, "period"),
                     f"period {format_time(period)} makes {how} down and up halves {format_time(period // 2)}, "
                     f"shorter than the {format_time(floor)} a run can play", f"give period: {format_time(2 * floor)} or longer")
        count = doc.integer(fields["count"], _join(path, "count"), 1, MAX_FLAP_COUNT, "3")
        if at + period * count > out.duration_ns:
            doc.fail(
                fields["at"], _join(path, "at"),
                f"the flap ends at {format_time(at + period * count)} ({format_time(at)} + {count} x {format_time(period)}), after {_end(out)}",
                "start it earlier, flap fewer times or lengthen duration",
            )  # fmt: skip
        return Event(at, kind, link.name, direction, period_ns=period, count=count, mode=mode)
    return Event(at, kind, link.name, direction, mode=mode)


#: the `engine:` section's keys
ENGINE_FIELDS = ("shards",)
#: the most engine loops a testbed may ask for
MAX_SHARDS = 64


def _read_engine(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    """`engine: {shards: N}`: how many engine loops (threads, a CPU each) share the links."""
    for key, _key_node, value in doc.mapping(node, path, ENGINE_FIELDS):
        if key == "shards":
            shards = doc.integer(value, _join(path, key), 1, MAX_SHARDS, "2")
            if shards > max(1, len(out.links)):
                doc.fail(value, _join(path, key), f"{shards} shards for {len(out.links)} link(s)",
                         f"use at most {max(1, len(out.links))}: each shard forwards at least one whole link")
            out.engine_shards = shards


def _read_timeline(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    if _is_null(node):
        return
    steps = 0
    for i, item in enumerate(doc.sequence(node, path)):
        event = _read_event(doc, item, f"{path}[{i}]", out)
        # Bounded work: every step is handed to the engine (per direction) and reported.
        steps += 2 * event.count if event.kind == "flap" else 1
        if steps > MAX_TIMELINE_STEPS:
            doc.fail(item, f"{path}[{i}]", f"the timeline reaches {steps} steps here (a flap is 2 per cycle), "
                     f"more than the {MAX_TIMELINE_STEPS} a run plays", "flap fewer times, or split the scenario")
        out.timeline.append(event)
    out.step_counts = {kind: sum(1 for e in out.timeline if e.kind == kind) for kind in EVENT_KINDS}


def _number(doc: _Document, node: yaml.Node, path: str) -> float:
    value = doc.value(node, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        doc.fail(node, path, f"expected a number, got {value!r}", "write a plain number, e.g. 1 (the unit is in the metric's name)")
    return value


def _check_metric(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> str:
    """The metric name, if it names something this scenario measures."""
    metric = doc.text(node, path, "probe.loss_pct")
    parts = metric.split(".")
    head = parts[0]
    if head == "link":
        example = f"link.{next(iter(out.links), 'LINK')}.a_to_b.drops_outage"
        if len(parts) != 4:
            doc.fail(node, path, f"link metric {metric!r} is not link.<link>.<direction>.<metric>", f"e.g. {example}")
        _, link, direction, name = parts
        if link not in out.links:
            doc.fail(node, path, f"no link called {link!r} in {metric!r}", _suggest(link, out.links, "links"))
        if direction not in ("a_to_b", "b_to_a"):
            doc.fail(node, path, f"unknown direction {direction!r} in {metric!r}", _suggest(direction, ("a_to_b", "b_to_a"), "use"))
        if name not in LINK_METRICS:
            doc.fail(node, path, f"unknown link metric {name!r} in {metric!r}", _suggest(name, LINK_METRICS, "link metrics"))
        return metric
    if head == "events":
        if len(parts) != 2 or parts[1] not in EVENT_METRICS:
            name = ".".join(parts[1:])
            doc.fail(node, path, f"unknown events metric {name!r} in {metric!r}", _suggest(name, EVENT_METRICS, "events metrics"))
        return metric
    if head == "routing":
        _check_routing_metric(doc, node, path, metric, out)
        return metric
    if head in out.traffic:
        kind = out.traffic[head].kind
        name = ".".join(parts[1:])
        if len(parts) != 2 or name not in TRAFFIC_METRICS[kind]:
            doc.fail(node, path, f"unknown {kind} metric {name!r} in {metric!r}", _suggest(name, TRAFFIC_METRICS[kind], f"{kind} metrics"))
        return metric
    doc.fail(
        node, path, f"{head!r} in {metric!r} is no traffic name, 'link', 'events' or 'routing'",
        _suggest(head, (*out.traffic, *ASSERTION_PREFIXES), "use"),
    )  # fmt: skip


def _check_routing_metric(doc: _Document, node: yaml.Node, path: str, metric: str, out: _Builder) -> None:
    """`routing.<step>.<metric>`: a failover metric of a timeline event (docs/scenario.md)."""
    parts = metric.split(".")
    if len(parts) != 3:
        doc.fail(node, path, f"routing metric {metric!r} is not routing.<step>.<metric>", "e.g. routing.cut1.outage_ms")
    _, step, name = parts
    if out.routing is None or not out.routing.uses_daemons:
        doc.fail(node, path, f"{metric!r} is measured only with a routing protocol run by daemons",
                 "set routing: {protocol: ospf} (docs/routing.md), or assert on the probe stream instead")
    if step == START_STEP:
        if name not in START_METRICS:
            doc.fail(node, path, f"unknown start-up routing metric {name!r} in {metric!r}",
                     _suggest(name, START_METRICS, "start-up metrics"))
        return
    match = _STEP_LABEL.match(step)
    counts = out.step_counts
    have = [f"{kind}{n}" for kind in EVENT_KINDS for n in range(1, counts[kind] + 1)]
    if not match or int(match.group(2)) > counts[match.group(1)]:
        doc.fail(node, path, f"no timeline step {step!r} in {metric!r} (steps are the event kind and its number "
                 "in time order)", _suggest(step, have, "steps") if have else "add a timeline event")
    if name not in ROUTING_METRICS or (name == "reverts_on_restore" and match.group(1) not in REVERT_KINDS):
        names = [m for m in ROUTING_METRICS if m != "reverts_on_restore" or match.group(1) in REVERT_KINDS]
        doc.fail(node, path, f"unknown {match.group(1)} routing metric {name!r} in {metric!r}",
                 _suggest(name, names, "routing metrics"))
    if not any(spec.kind == "probe" for spec in out.traffic.values()):
        doc.fail(node, path, f"{metric!r} is measured on a probe stream, and there is none",
                 "add e.g. traffic: {probe: {kind: probe, from: HOST, to: HOST}}")


def _metric_value_kind(metric: str) -> str:
    """"number", "path" or "bool": what kind of value `metric` has."""
    return ROUTING_METRICS.get(metric.split(".")[-1], "number") if metric.startswith("routing.") else "number"


def _node_list(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> tuple[str, ...]:
    items = doc.sequence(node, path) if _kind(node) == "list" else [node]
    if not items:
        doc.fail(node, path, "an empty list of nodes", "name at least one node, e.g. includes: moscow")
    return tuple(_node_name(doc, item, path, out) for item in items)


def _read_assertion(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> Assertion:
    assertion = _read_bound(doc, node, path, out)
    fields = {key: value for key, _, value in doc.mapping(node, path, ASSERTION_FIELDS)}
    if "tolerance" not in fields:
        return assertion
    here = _join(path, "tolerance")
    if unit_scale_ms(assertion.metric) is None:
        doc.fail(fields["tolerance"], here, f"a tolerance applies to timing metrics, and {assertion.metric} is not one",
                 "drop tolerance, or use it on a metric ending in _ms, _us or _s")
    return replace(assertion, tolerance_ns=_time(doc, fields["tolerance"], here, "tolerance"))


def _read_bound(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> Assertion:
    """An assertion's metric and its one bound."""
    pairs = doc.mapping(node, path, ASSERTION_FIELDS)
    fields = {key: value for key, _, value in pairs}
    if "metric" not in fields:
        doc.fail(node, path, "an assertion needs a metric", "add e.g. metric: probe.loss_pct")
    metric = _check_metric(doc, fields["metric"], _join(path, "metric"), out)
    bounds = [key for key in ASSERTION_BOUNDS if key in fields]
    value_kind = _metric_value_kind(metric)
    allowed = BOUNDS_BY_VALUE[value_kind]
    if len(bounds) != 1:
        what = "no bound" if not bounds else f"{len(bounds)} bounds ({', '.join(bounds)})"
        words = {"number": "between: [low, high], at_most, at_least, equals", "path": "includes, excludes",
                 "bool": "equals: true, equals: false"}[value_kind]
        doc.fail(node, path, f"{what} for {metric}", f"give exactly one of {words}")
    bound = bounds[0]
    here = _join(path, bound)
    if bound not in allowed:
        kind_words = {"number": "a number", "path": "a path (node names)", "bool": "true or false"}[value_kind]
        doc.fail(fields[bound], here, f"{bound} does not apply to {metric}, which is {kind_words}",
                 f"use {' or '.join(allowed)}")
    line = node.start_mark.line + 1
    if bound in ("includes", "excludes"):
        nodes = _node_list(doc, fields[bound], here, out)
        words = f"{bound} {', '.join(nodes)}"
        return Assertion(metric, description=words, line=line, **{bound: nodes})
    if value_kind == "bool":
        value = doc.value(fields[bound], here)
        if not isinstance(value, bool):
            doc.fail(fields[bound], here, f"expected true or false, got {value!r}", "write equals: true")
        return Assertion(metric, description=f"equals {str(value).lower()}", line=line, expected=value)
    if bound == "between":
        items = doc.sequence(fields[bound], here)
        if len(items) != 2:
            doc.fail(fields[bound], here, f"between needs two numbers, got {len(items)}", "write between: [low, high]")
        low, high = (_number(doc, item, here) for item in items)
        if low > high:
            doc.fail(fields[bound], here, f"low {low} is above high {high}", f"write between: [{high}, {low}]")
        return Assertion(metric, float(low), float(high), f"between [{low}, {high}]", node.start_mark.line + 1)
    value = _number(doc, fields[bound], here)
    low, high = {"at_most": (None, value), "at_least": (value, None), "equals": (value, value)}[bound]
    return Assertion(
        metric,
        None if low is None else float(low),
        None if high is None else float(high),
        f"{bound.replace('_', ' ')} {value}",
        node.start_mark.line + 1,
    )


def _read_assertions(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    if _is_null(node):
        return
    for i, item in enumerate(doc.sequence(node, path)):
        out.assertions.append(_read_assertion(doc, item, f"{path}[{i}]", out))


# ---------------------------------------------------------------------------
# Routing: `routing: {protocol: ospf, bfd: {interval: 100ms, multiplier: 3}, hello: 1s}`
# or `routing: {protocol: bgp, hold: 3s, keepalive: 1s, bfd: {...}}`

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


def _whole_seconds(doc: _Document, node: yaml.Node, path: str, name: str,
                   limits: tuple[int, int] = OSPF_SECONDS_RANGE, protocol: str = "OSPF") -> int:
    """A time that must be a whole number of seconds in `limits`, in ns."""
    value = _time(doc, node, path, name)
    low, high = limits
    if value % 10**9 or not low <= value // 10**9 <= high:
        doc.fail(node, path, f"{name} {format_time(value)} is not a whole number of seconds from {low} to {high}",
                 f"BIRD counts {protocol} {name} in seconds, e.g. {name}: {max(low, 1)}s")
    return value


#: how each daemon is named in messages
_DAEMON_NAMES = {"bird": "BIRD", "frr": "FRR's bfdd"}


def _read_bfd(doc: _Document, node: yaml.Node, path: str, daemon: str) -> BfdConfig:
    """`bfd: {interval, multiplier}`, each within what `daemon` accepts (limits.BFD_*)."""
    fields = {key: value for key, _, value in doc.mapping(node, path, BFD_FIELDS)}
    bfd = BfdConfig()
    name = _DAEMON_NAMES.get(daemon, daemon)
    if "interval" in fields:
        here = _join(path, "interval")
        interval = _time(doc, fields["interval"], here, "interval")
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
        here = _join(path, "multiplier")
        multiplier = doc.integer(fields["multiplier"], here, 1, high, "3")
        if multiplier < low:
            doc.fail(fields["multiplier"], here, f"{name} takes a BFD detect multiplier of {low}..{high}, not {multiplier}",
                     "e.g. multiplier: 3")
        bfd = BfdConfig(interval_ns=bfd.interval_ns, multiplier=multiplier)
    return bfd


def _read_routing(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    if _is_null(node):
        return
    pairs = doc.mapping(node, path, ROUTING_FIELDS)
    fields = {key: value for key, _, value in pairs}
    keys = {key: key_node for key, key_node, _ in pairs}
    protocol = "static"
    if "protocol" in fields:
        here = _join(path, "protocol")
        protocol = doc.text(fields["protocol"], here, "ospf")
        if protocol not in ROUTING_PROTOCOLS:
            doc.fail(fields["protocol"], here, f"unknown routing protocol {protocol!r}", _suggest(protocol, ROUTING_PROTOCOLS, "protocols"))
        if protocol not in SUPPORTED_ROUTING:
            doc.fail(fields["protocol"], here, f"routing protocol {protocol!r} is not supported yet",
                     f"use one of {', '.join(SUPPORTED_ROUTING)}")
    daemon = "bird"
    if "daemon" in fields:
        here = _join(path, "daemon")
        daemon = doc.text(fields["daemon"], here, "frr")
        if daemon not in ROUTING_DAEMONS:
            doc.fail(fields["daemon"], here, f"unknown routing daemon {daemon!r}", _suggest(daemon, tuple(ROUTING_DAEMONS), "daemons"))
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
            doc.fail(keys[option], _join(path, option), f"'{option}' does not apply to {what}",
                     f"remove it, or set protocol: {' or '.join(users)}")
    bfd = _read_bfd(doc, fields["bfd"], _join(path, "bfd"), daemon) if "bfd" in fields else None
    hold = 9 * 10**9
    keepalive = None
    if "hold" in fields:
        hold = _whole_seconds(doc, fields["hold"], _join(path, "hold"), "hold", BGP_HOLD_RANGE, "BGP")
    if "keepalive" in fields:
        here = _join(path, "keepalive")
        keepalive = _whole_seconds(doc, fields["keepalive"], here, "keepalive", BGP_KEEPALIVE_RANGE, "BGP")
        if keepalive >= hold:
            doc.fail(fields["keepalive"], here, f"keepalive {format_time(keepalive)} is not shorter than hold {format_time(hold)}",
                     "send a few keepalives per hold time, e.g. keepalive = hold / 3")
    hello = _whole_seconds(doc, fields["hello"], _join(path, "hello"), "hello") if "hello" in fields else 10**9
    dead = None
    if "dead" in fields:
        here = _join(path, "dead")
        dead = _whole_seconds(doc, fields["dead"], here, "dead")
        if dead <= hello:
            doc.fail(fields["dead"], here, f"dead {format_time(dead)} is not longer than hello {format_time(hello)}",
                     "give dead a few hellos, e.g. 4 x hello")
    out.routing = RoutingConfig(protocol=protocol, daemon=daemon, bfd=bfd, hello_ns=hello, dead_ns=dead,
                                hold_ns=hold, keepalive_ns=keepalive)


#: Keys of a `capture:` item written as a mapping (a plain item is a link name).
CAPTURE_FIELDS: tuple[str, ...] = ("link", "direction")


def _read_capture(doc: _Document, node: yaml.Node, path: str, out: _Builder) -> None:
    """`capture: [LINK, {link: LINK, direction: NODE}, ...]`: links captured to pcapng in the report directory."""
    if _is_null(node):
        return
    seen: set[str] = set()
    for i, item in enumerate(doc.sequence(node, path)):
        here = f"{path}[{i}]"
        if _kind(item) == "mapping":
            fields = {key: value for key, _, value in doc.mapping(item, here, CAPTURE_FIELDS)}
            if "link" not in fields:
                doc.fail(item, here, "a capture item needs a link", "write e.g. {link: aktau-sumgait}")
            link = _link_name(doc, fields["link"], _join(here, "link"), out)
            direction = _read_direction(doc, fields["direction"], _join(here, "direction"), link) \
                if "direction" in fields else "both"
        else:
            link = _link_name(doc, item, here, out)
            direction = "both"
        if link.name in seen:
            doc.fail(item, here, f"link {link.name!r} is captured twice", "list each link once")
        seen.add(link.name)
        out.capture.append(CaptureSpec(link.name, direction))


@dataclass(frozen=True)
class Section:
    """A top-level key: its reader, whether it must be present, and its read order.

    `needed_by`: the section must be present when any of these keys is.
    """

    read: Callable[[_Document, yaml.Node, str, _Builder], None]
    required: bool = False
    needed_by: tuple[str, ...] = ()


#: Top-level sections, in the order they are read (links need nodes and routing first,
#: traffic needs duration, assertions need traffic and links, whatever order
#: the file uses). To add a section, add it here.
TOP_LEVEL: dict[str, Section] = {
    "name": Section(_read_name),
    "seed": Section(_read_seed),
    "routing": Section(_read_routing),
    "nodes": Section(_read_nodes, required=True),
    "links": Section(_read_links),
    "engine": Section(_read_engine),
    "duration": Section(_read_duration, needed_by=("traffic", "timeline", "assertions")),
    "traffic": Section(_read_traffic),
    "timeline": Section(_read_timeline),
    "assertions": Section(_read_assertions),
    "capture": Section(_read_capture),
}


# ---------------------------------------------------------------------------
# Entry points


def parse_scenario(text: str, *, source: str, base_dir: str | Path | None = None) -> Scenario:
    """Parse and validate scenario YAML `text`; `source` names it in errors.

    A plain topology file is a valid scenario (no traffic, timeline or
    assertions; duration 10 s). Relative paths in the file (capacity traces)
    are resolved against `base_dir`, by default the current directory.
    """
    doc = _Document(source, Path(base_dir) if base_dir is not None else Path.cwd())
    if len(text) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"the text is {len(text)} characters, over the limit of {MAX_SCENARIO_BYTES}",
                            where=f"{source}:1", fix=f"keep scenario files under {MAX_SCENARIO_BYTES // 2**20} MiB")
    root = _compose(text, source)
    if root is None or _is_null(root):
        doc.fail(root, "", "the file is empty", "start with 'nodes:' and 'links:'")
    pairs = doc.mapping(root, "", tuple(TOP_LEVEL))
    given = {key: value_node for key, _, value_node in pairs}
    key_nodes = {key: key_node for key, key_node, _ in pairs}
    out = _Builder()
    for key, section in TOP_LEVEL.items():
        if key in given:
            section.read(doc, given[key], key, out)
            continue
        if section.required:
            doc.fail(root, key, f"missing section {key!r}", f"add a '{key}:' section")
        users = [user for user in section.needed_by if user in given]
        if users:
            example = "duration: 20s" if key == "duration" else f"{key}: ..."
            doc.fail(key_nodes[users[0]], key, f"missing {key!r}, which {users[0]!r} needs", f"add '{example}' at the top level")
    topology = Topology(
        nodes=tuple(out.nodes.values()), links=tuple(out.links.values()), name=out.name, source=source, seed=out.seed,
        routing=out.routing, engine_shards=out.engine_shards,
    )
    return Scenario(
        topology=topology,
        duration_ns=out.duration_ns,
        traffic=tuple(out.traffic.values()),
        timeline=tuple(out.timeline),
        assertions=tuple(out.assertions),
        capture=tuple(out.capture),
        seed=out.seed if out.seed is not None else 1,
        source=source,
        text=text,
    )


def parse_topology(text: str, *, source: str, base_dir: str | Path | None = None) -> Topology:
    """Parse and validate topology YAML `text`; `source` names it in errors.

    The scenario sections (`duration`, `traffic`, `timeline`, `assertions`)
    are accepted and validated too, but only the topology is returned.
    """
    return parse_scenario(text, source=source, base_dir=base_dir).topology


def _read_file(path: Path, what: str) -> str:
    """The text of the scenario or topology file at `path`: bounded, UTF-8, or a one-line ScenarioError."""
    try:
        data = read_bounded(path, max_bytes=MAX_SCENARIO_BYTES, what=what)
    except InputError as exc:
        raise ScenarioError(exc.bare_message, where=exc.where, fix=exc.fix) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ScenarioError(f"byte 0x{data[exc.start]:02x} at offset {exc.start} (column {column}) is not UTF-8",
                            where=f"{path}:{line}", fix="save the file as UTF-8") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read, parse and validate the scenario file at `path`."""
    path = Path(path)
    return parse_scenario(_read_file(path, "scenario"), source=str(path), base_dir=path.parent)


def load_topology(path: str | Path) -> Topology:
    """Read, parse and validate the topology file at `path` (a scenario file's topology)."""
    path = Path(path)
    return parse_topology(_read_file(path, "topology"), source=str(path), base_dir=path.parent)


#: Preset names, re-exported for `caspian validate --help` and the docs.
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
