"""The reading core of the scenario loader: bounded YAML text to nodes, nodes to checked values.

Every section reader (`emulator.scenario.nodes`, `links`, `traffic` ...) reads
through the `Document` here, so every error has the same one-line form,
`FILE:LINE: field.path: what is wrong (how to fix)`.

- Files are read by `read_file` over `emulator.model.limits.read_bounded`:
  regular files only (a FIFO, /dev/zero or a directory is refused before it
  is opened), at most MAX_SCENARIO_BYTES, decoded as UTF-8 with a bad byte
  named by line and offset.
- YAML is turned into nodes by `compose`, our own loop over the parser's
  events (no recursion, so 500 levels of nesting are refused, not a
  RecursionError): nesting depth and the nodes reached through aliases are
  bounded (a "billion laughs" is refused), tags (`!foo`, `!!binary`) and merge
  keys (`<<`) are refused, and plain scalars are resolved by `resolve_plain`
  to null, bool, int, float or text only (a timestamp is text). Numbers are
  bounded before conversion (digits, exponent); NaN and infinity are refused.

Lines come from the parser's marks: we build the node graph ourselves rather
than `yaml.safe_load` it, because safe_load forgets positions and silently
keeps the last of duplicate keys (two links with the same name would quietly
become one).
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Iterable, NoReturn

import yaml

from emulator.errors import InputError, ScenarioError
from emulator.model.limits import (
    MAX_NUMBER_DIGITS,
    MAX_QUANTITY_CHARS,
    MAX_SCENARIO_BYTES,
    MAX_YAML_ALIAS_NODES,
    MAX_YAML_DEPTH,
    read_bounded,
)
from emulator.model.units import parse_time

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


def resolve_plain(value: str) -> str:
    """The tag of a plain (unquoted, untagged) scalar: null, bool, int, float or str.

    Everything YAML 1.1 would make something else is text: timestamps
    (`2001-13-45` is a name, not a broken date), sexagesimal numbers
    (`1:30`), `=`. `<<` is text here; as a key it is refused by `compose`.
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
                path = join_path(path, key.value if isinstance(key, yaml.ScalarNode) else "?")
        else:
            path = f"{path}[{len(frame.items)}]"
    return path


def compose(text: str, source: str) -> yaml.Node | None:
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
                tag = resolve_plain(event.value) if event.implicit[0] else STR_TAG
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


class Document:
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

        None, a bool, an int, a finite float or a str, as `resolve_plain`
        tagged it; numbers are bounded before they are converted.
        """
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, path, f"expected a single value, got a {kind_of(node)}", "write one value here")
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

    def mapping(
        self, node: yaml.Node, path: str, allowed: tuple[str, ...] | None = None, renamed: tuple[str, ...] = ()
    ) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """(key, key node, value node) of a mapping, in file order.

        Rejects duplicate keys (at the second one), non-text keys, and, if
        `allowed` is given, keys not in it (with a suggestion). Keys in
        `renamed` (old spellings) pass, for the caller to refuse naming the
        new key; they are never suggested.
        """
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"expected a mapping (key: value lines), got a {kind_of(node)}")
        seen: dict[str, int] = {}
        pairs = []
        for key_node, value_node in node.value:
            key = self.value(key_node, path)
            if not isinstance(key, str):
                self.fail(key_node, path, f"key {key!r} is not text", "write names as text, e.g. europe")
            here = join_path(path, key)
            if key in seen:
                self.fail(key_node, here, f"duplicate key {key!r} (first at line {seen[key]})", "give each key once")
            if allowed is not None and key not in allowed and key not in renamed:
                # (no suggestion for a key longer than any name: difflib's work grows with its length)
                close = difflib.get_close_matches(key, allowed, n=1) if len(key) <= 64 else []
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(key_node, here, f"unknown key {key!r}", f"{hint}allowed: {', '.join(allowed)}")
            seen[key] = key_node.start_mark.line + 1
            pairs.append((key, key_node, value_node))
        return pairs

    def time(self, node: yaml.Node, path: str, name: str) -> int:
        """A duration in ns (`5ms`, `1s`), with unit errors located at `node`."""
        try:
            return parse_time(self.value(node, path), field=name)
        except ScenarioError:
            raise
        except InputError as exc:
            self.fail(node, path, exc.bare_message, exc.fix)

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        """The items of a list node."""
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"expected a list, got a {kind_of(node)}", "e.g. [sumgait, aktau]")
        return list(node.value)


def kind_of(node: yaml.Node) -> str:
    """What a node is, for messages: `mapping`, `list` or `value '...'`."""
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return f"value {node.value!r}"


def join_path(path: str, key: str) -> str:
    """The field path of `key` inside `path` (`links.l` + `delay`)."""
    return f"{path}.{key}" if path else key


def is_null(node: yaml.Node) -> bool:
    """Whether `node` is a YAML null (`~`, `null` or nothing): an empty section."""
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG


def suggest(name: str, choices: Iterable[str], label: str) -> str:
    """`did you mean 'x'? label: a, b, c` for a fix."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}{label}: {', '.join(choices) or 'none'}"


def read_file(path: Path, what: str) -> str:
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

