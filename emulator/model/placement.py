"""Which machine runs which node, for a topology across machines (issue 11 part 2).

A topology may be split over several machines (the `placement:` section; in
the file they are called hosts, the word operators use, but here *machine*,
since a node's role can be `host` too). Each machine runs its nodes'
namespaces and an engine of its own; a link whose ends are on two machines
is carried between them in a tunnel and impaired once, by the engine of the
machine of its `a` end (`Placement.owner`).

`place_nodes` makes the split when the file gives only a count: links are
taken heaviest first (`emulator.engine.shards.link_weights`: the faster a
link, the more forwarding it costs) and their two ends kept on one machine
while that machine's share of the forwarding stays within an even split, so
the links that cross are the light ones; then the groups are dealt out
largest first to the least loaded machine, as the engine's shards are.
Pure: names and weights in, names out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from emulator.errors import InputError


@dataclass(frozen=True)
class Placement:
    """Nodes per machine, in file (or split) order; every node on exactly one."""

    machines: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def names(self) -> list[str]:
        """The machines' names, in order."""
        return [name for name, _ in self.machines]

    def machine_of(self, node: str) -> str:
        """The machine that runs `node` (KeyError if none)."""
        for name, nodes in self.machines:
            if node in nodes:
                return name
        raise KeyError(node)

    def crossing(self, links: Sequence[tuple[str, str, str]]) -> list[str]:
        """The names of the links (name, a node, b node) whose ends are on two machines."""
        where = self.by_node()
        return [name for name, a, b in links if where[a] != where[b]]

    def owner(self, a: str) -> str:
        """The machine whose engine impairs a link with `a` end `a`: that end's."""
        return self.machine_of(a)

    def by_node(self) -> dict[str, str]:
        """node -> machine, for every node."""
        return {node: name for name, nodes in self.machines for node in nodes}

    def to_dict(self) -> dict[str, list[str]]:
        """As report.json shows it: machine -> its nodes."""
        return {name: list(nodes) for name, nodes in self.machines}


def place_nodes(nodes: Sequence[str], links: Sequence[tuple[str, str, float]], machines: int,
                names: Sequence[str] | None = None) -> Placement:
    """Split `nodes` over `machines` machines, keeping heavy links inside one.

    `links` are (a node, b node, weight). Machines are called `names` (by
    default host1, host2, ...). Every machine gets at least one node; the
    result depends only on the input's order (ties keep it).
    """
    if machines < 1:
        raise InputError(f"placement over {machines} machines", fix="place the nodes on 1 or more machines")
    if machines > len(nodes):
        raise InputError(f"placement over {machines} machines but the topology has {len(nodes)} node(s)",
                         fix=f"use at most {len(nodes)}: every machine runs at least one node")
    labels = list(names) if names is not None else [f"host{k + 1}" for k in range(machines)]
    index = {node: k for k, node in enumerate(nodes)}
    # each link's forwarding is counted half at either end: the machine that owns it
    # forwards it all, but which end owns a link is only settled by the split
    load = {node: 0.0 for node in nodes}
    for a, b, weight in links:
        load[a] += weight / 2
        load[b] += weight / 2
    share = sum(load.values()) / machines
    group = {node: node for node in nodes}

    def root(node: str) -> str:
        while group[node] != node:
            group[node] = group[group[node]]
            node = group[node]
        return node

    group_load = dict(load)
    groups = len(nodes)
    for a, b, weight in sorted(links, key=lambda link: -link[2]):
        ra, rb = root(a), root(b)
        if ra == rb or groups == machines:
            continue
        # this link stays crossing rather than overload one machine; but a link
        # heavier than a machine's share overloads its owner wherever its ends
        # are (the owner forwards it all), so crossing it would only add the underlay
        if group_load[ra] + group_load[rb] > share and share > 0 and weight < share:
            continue
        keep, gone = (ra, rb) if index[ra] <= index[rb] else (rb, ra)
        group[gone] = keep
        group_load[keep] += group_load.pop(gone)
        groups -= 1
    members: dict[str, list[str]] = {}
    for node in nodes:
        members.setdefault(root(node), []).append(node)
    # largest first (load, then size), each to the least loaded machine; a machine
    # still empty takes the next group first, so none is left without a node
    order = sorted(members.values(), key=lambda m: (-group_load[root(m[0])], -len(m), index[m[0]]))
    placed: list[list[str]] = [[] for _ in range(machines)]
    filled = [0.0] * machines
    for k, nodes_of_group in enumerate(order):
        empty = [m for m in range(machines) if not placed[m]]
        if empty and len(order) - k <= len(empty):
            target = empty[0]
        else:
            target = min(range(machines), key=lambda m: (filled[m], len(placed[m]), m))
        placed[target] += nodes_of_group
        filled[target] += group_load[root(nodes_of_group[0])]
    return Placement(tuple((labels[m], tuple(sorted(placed[m], key=index.__getitem__))) for m in range(machines)))


def check_placement(given: Mapping[str, Sequence[str]], nodes: Sequence[str]) -> list[str]:
    """What is wrong with an explicit placement (machine -> nodes), in plain words; [] when none."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for machine, placed in given.items():
        if not placed:
            problems.append(f"machine {machine} has no nodes")
        for node in placed:
            if node in seen:
                problems.append(f"node {node} is placed on {seen[node]} and on {machine}")
            seen.setdefault(node, machine)
    missing = [node for node in nodes if node not in seen]
    if missing:
        problems.append(f"node(s) {', '.join(missing)} placed on no machine")
    return problems
