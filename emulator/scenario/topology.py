"""The topology: nodes and the links between them, as a pure graph.

These dataclasses are what the network layer makes real; they hold no system
state. `emulator.scenario.loader` builds them from a YAML file and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from emulator.model.linkparams import LinkParams

NODE_ROLES = ("host", "router")
DEFAULT_MTU = 1500


@dataclass(frozen=True)
class Node:
    """A host or router: one network namespace."""

    name: str
    role: str = "host"
    #: the node's own address (on `lo`), by which other nodes reach it by name;
    #: None = assigned from the address plan
    address: str | None = None
    address6: str | None = None


@dataclass(frozen=True)
class LinkEnd:
    """One end of a link: the node it attaches to and optional fixed addresses."""

    node: str
    #: "198.18.0.1/30"-style; None = assigned from the address plan
    address: str | None = None
    address6: str | None = None


@dataclass(frozen=True)
class Link:
    """A point-to-point emulated link between ends `a` and `b`.

    `a_to_b` shapes frames sent by `a`'s node toward `b`'s; `b_to_a` the reverse.
    """

    name: str
    a: LinkEnd
    b: LinkEnd
    a_to_b: LinkParams = field(default_factory=LinkParams)
    b_to_a: LinkParams = field(default_factory=LinkParams)
    mtu: int = DEFAULT_MTU
    #: where the parameters came from, for reports (`preset aktau-sumgait`)
    preset: str | None = None
    length_km: float | None = None

    @property
    def nodes(self) -> tuple[str, str]:
        """Names of the two nodes this link joins, `a` first."""
        return (self.a.node, self.b.node)

    def direction(self, sender: str) -> LinkParams:
        """Parameters of the direction whose frames `sender` transmits."""
        if sender == self.a.node:
            return self.a_to_b
        if sender == self.b.node:
            return self.b_to_a
        raise KeyError(f"node {sender!r} is not an end of link {self.name!r}")


@dataclass(frozen=True)
class Topology:
    """Nodes and links; `source` names the file it came from (for messages)."""

    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    name: str = "testbed"
    source: str = "<default>"
    seed: int | None = None

    def node(self, name: str) -> Node:
        """The node called `name` (KeyError if there is none)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def link(self, name: str) -> Link:
        """The link called `name` (KeyError if there is none)."""
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def links_of(self, node: str) -> Iterator[Link]:
        """Links with `node` at one end, in file order."""
        return (link for link in self.links if node in link.nodes)
