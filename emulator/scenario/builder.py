"""What the section readers of a scenario file have read so far, and the look-ups they share.

The sections are read in `emulator.scenario.loader.TOP_LEVEL` order into one
`Builder`; later sections refer to what earlier ones stored (traffic names
nodes, the timeline names links), through `existing_node` and `existing_link`
so a wrong name always gets the same did-you-mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from emulator.model.units import format_time
from emulator.scenario.reader import Document, suggest
from emulator.scenario.scenario import EVENT_KINDS, Assertion, CaptureSpec, Event, TrafficSpec
from emulator.model.placement import Placement
from emulator.model.underlay import SimulatedUnderlay
from emulator.scenario.topology import Link, Node, RoutingConfig

#: A scenario's duration when the file has no traffic, timeline or assertions.
DEFAULT_DURATION_NS = 10 * 10**9


@dataclass
class Builder:
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
    #: the `placement:` section: the split as written, or how many machines to split over
    placement: Placement | int | None = None
    #: the `underlay:` section: the machines simulated on this host
    underlay: SimulatedUnderlay | None = None
    capture: list[CaptureSpec] = field(default_factory=list)
    #: timeline events of each kind (read once, for every routing metric's step label)
    step_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENT_KINDS, 0))


def existing_node(doc: Document, node: yaml.Node, path: str, out: Builder) -> str:
    """The name of an existing node."""
    name = doc.text(node, path, "europe")
    if name not in out.nodes:
        doc.fail(node, path, f"no node called {name!r}", suggest(name, out.nodes, "nodes"))
    return name


def existing_link(doc: Document, node: yaml.Node, path: str, out: Builder) -> Link:
    """An existing link, by name."""
    name = doc.text(node, path, "aktau-sumgait")
    if name not in out.links:
        doc.fail(node, path, f"no link called {name!r}", suggest(name, out.links, "links"))
    return out.links[name]


def scenario_end(out: Builder) -> str:
    """The scenario's end, for messages."""
    return f"the scenario's end (duration {format_time(out.duration_ns)})"
