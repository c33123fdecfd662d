"""The `placement:` and `underlay:` sections: which machine runs which node (a
topology across machines), and the underlay of two machines simulated on this host.

Two forms (docs/multihost.md):

- `placement: {host1: [europe, sumgait], host2: [aktau, asia]}`: the split as
  written; every node on exactly one machine, every machine with a node.
- `placement: 2`: split over that many machines automatically when the run is
  planned (`emulator.model.placement.place_nodes`: heavy links kept inside
  one machine).

Read after `nodes` (it names them) and `links` (a split needs the links).
"""

from __future__ import annotations

import re

import yaml

from emulator.model.placement import Placement, check_placement
from emulator.model.underlay import SimulatedUnderlay
from emulator.scenario.builder import Builder, existing_node
from emulator.scenario.reader import Document, join_path

#: Machine names become parts of pod, namespace and file names: a DNS label
#: (RFC 1123) kept short, as node names are.
MACHINE_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
#: The most machines one run may span.
MAX_MACHINES = 64


def read_placement(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`placement: {MACHINE: [NODE, ...], ...}` or `placement: N` (machines, split automatically)."""
    if isinstance(node, yaml.ScalarNode):
        count = doc.integer(node, path, 2, MAX_MACHINES, "2")
        if count > len(out.nodes):
            doc.fail(node, path, f"{count} machines for {len(out.nodes)} node(s)",
                     f"use at most {len(out.nodes)}: every machine runs at least one node")
        out.placement = count
        return
    pairs = doc.mapping(node, path)
    if len(pairs) < 2:
        doc.fail(node, path, f"{len(pairs)} machine(s): a placement spreads the nodes over two or more",
                 "name two or more machines, or remove 'placement' to run on this one")
    if len(pairs) > MAX_MACHINES:
        doc.fail(node, path, f"{len(pairs)} machines, over the {MAX_MACHINES} a run may span", "use fewer machines")
    given: dict[str, list[str]] = {}
    where: dict[str, tuple[yaml.Node, str]] = {}
    for machine, key_node, value_node in pairs:
        here = join_path(path, machine)
        if not MACHINE_NAME.fullmatch(machine):
            doc.fail(key_node, here, f"machine name {machine!r} is not valid",
                     "use a-z, 0-9 and -, start with a letter, at most 31 characters")
        items = doc.sequence(value_node, here)
        if not items:
            doc.fail(value_node, here, f"machine {machine} has no nodes", f"list at least one node, or remove {machine}")
        given[machine] = []
        for i, item in enumerate(items):
            name = existing_node(doc, item, f"{here}[{i}]", out)
            if name in where:
                first_node, first_path = where[name]
                doc.fail(item, f"{here}[{i}]", f"node {name} is placed twice (first at {first_path}, "
                         f"line {first_node.start_mark.line + 1})", "place every node on one machine only")
            where[name] = (item, f"{here}[{i}]")
            given[machine].append(name)
    missing = [problem for problem in check_placement(given, list(out.nodes)) if "no machine" in problem]
    if missing:
        doc.fail(node, path, missing[0], "place every node on one of the machines")
    out.placement = Placement(tuple((machine, tuple(nodes)) for machine, nodes in given.items()))


#: the `underlay:` section's fields
UNDERLAY_FIELDS = ("delay", "jitter")
#: the longest simulated underlay: a continent's width in fibre, one way
MAX_UNDERLAY_NS = 100_000_000


def read_underlay(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`underlay: {delay: 250us, jitter: 0us}`: simulate the placement's two machines
    on this host, joined by an emulated underlay with this delay and jitter."""
    machines = (len(out.placement.machines) if isinstance(out.placement, Placement)
                else out.placement)
    if machines != 2:
        doc.fail(node, path, f"a simulated underlay joins two machines, the placement has {machines}",
                 "place the nodes on two machines ('placement: 2'), or remove 'underlay'")
    fields = {key: value for key, _key_node, value in doc.mapping(node, path, UNDERLAY_FIELDS)}
    if "delay" not in fields:
        doc.fail(node, path, "the underlay has no delay", "e.g. underlay: {delay: 250us}")
    values = {}
    for key, value in fields.items():
        here = join_path(path, key)
        values[key] = doc.time(value, here, key)
        if not 0 <= values[key] <= MAX_UNDERLAY_NS:
            doc.fail(value, here, f"{key} must be between 0 and 100ms", "e.g. underlay: {delay: 250us}")
    out.underlay = SimulatedUnderlay(delay_ns=values["delay"], jitter_ns=values.get("jitter", 0))
