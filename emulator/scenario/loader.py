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
a hang or unbounded work: the reading core (`emulator.scenario.reader`)
bounds the file, the YAML and every number; values are checked against the
engine's ranges (`emulator.model.limits`): LinkParams does it for every link
direction and netem words, the section readers for the rest (duration, flap
spacing, the timeline's steps, probe counts, BFD timers per daemon).

Validation is table-driven: `TOP_LEVEL` maps each top-level key to the
function that reads its section, one module per section over the one reading
core: `nodes`, `links` (with `addresses`), `routing_section`, `timeline`
(duration, events, engine), `placement_section`, `traffic`, `assertions`, `capture`. Each lists
what its mappings may hold (`NODE_FIELDS`, `LINK_FIELDS`, `DIRECTION_FIELDS`,
`TRAFFIC_FIELDS`, `EVENT_FIELDS`, `ASSERTION_FIELDS` ...). Adding a section is
one entry in `TOP_LEVEL` plus its reader, which stores what it read in the
`Builder`. docs/scenario.schema.json mirrors these tables;
tests/unit/test_scenario_loader.py keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from emulator.errors import ScenarioError
from emulator.model.limits import MAX_SCENARIO_BYTES, MAX_SEED
from emulator.model.presets import PRESETS
from emulator.scenario.assertions import read_assertions
from emulator.scenario.builder import Builder
from emulator.scenario.capture import read_capture
from emulator.scenario.links import read_links
from emulator.scenario.nodes import read_nodes
from emulator.scenario.placement_section import read_placement, read_underlay
from emulator.scenario.reader import Document, compose, is_null, read_file
from emulator.scenario.routing_section import read_routing
from emulator.scenario.scenario import Scenario
from emulator.scenario.timeline import read_duration, read_engine, read_timeline
from emulator.scenario.topology import Topology
from emulator.scenario.traffic import read_traffic

__all__ = ["PRESET_NAMES", "TOP_LEVEL", "Section", "load_scenario", "load_topology", "parse_scenario", "parse_topology"]


def _read_name(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`name: aktau-sumgait`: the testbed's name in reports."""
    name = doc.text(node, path, "aktau-sumgait")
    if not 1 <= len(name) <= 64:
        doc.fail(node, path, "name must be 1..64 characters", "e.g. name: aktau-sumgait")
    if not name.isprintable():  # it is printed in reports and on the terminal
        doc.fail(node, path, f"name {name!r} has a control character", "e.g. name: aktau-sumgait")
    out.name = name


def _read_seed(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`seed: 42`: the seed of every random draw in the run."""
    out.seed = doc.integer(node, path, 0, MAX_SEED, "42")


@dataclass(frozen=True)
class Section:
    """A top-level key: its reader, whether it must be present, and its read order.

    `needed_by`: the section must be present when any of these keys is.
    """

    read: Callable[[Document, yaml.Node, str, Builder], None]
    required: bool = False
    needed_by: tuple[str, ...] = ()


#: Top-level sections, in the order they are read (links need nodes and routing first,
#: traffic needs duration, assertions need traffic and links, whatever order
#: the file uses). To add a section, add it here.
TOP_LEVEL: dict[str, Section] = {
    "name": Section(_read_name),
    "seed": Section(_read_seed),
    "routing": Section(read_routing),
    "nodes": Section(read_nodes, required=True),
    "links": Section(read_links),
    "engine": Section(read_engine),
    "placement": Section(read_placement, needed_by=("underlay",)),
    "underlay": Section(read_underlay),
    "duration": Section(read_duration, needed_by=("traffic", "timeline", "assertions")),
    "traffic": Section(read_traffic),
    "timeline": Section(read_timeline),
    "assertions": Section(read_assertions),
    "capture": Section(read_capture),
}


def parse_scenario(text: str, *, source: str, base_dir: str | Path | None = None,
                   across_machines: bool = False) -> Scenario:
    """Parse and validate scenario YAML `text`; `source` names it in errors.

    A plain topology file is a valid scenario (no traffic, timeline or
    assertions; duration 10 s). Relative paths in the file (capacity traces)
    are resolved against `base_dir`, by default the current directory.

    A `placement:` (nodes on several machines) is read and checked, then
    refused unless `across_machines`: the run on one machine cannot run it
    as written (docs/multihost.md), and what this loader accepts, it runs.
    """
    doc = Document(source, Path(base_dir) if base_dir is not None else Path.cwd())
    if len(text) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"the text is {len(text)} characters, over the limit of {MAX_SCENARIO_BYTES}",
                            where=f"{source}:1", fix=f"keep scenario files under {MAX_SCENARIO_BYTES // 2**20} MiB")
    root = compose(text, source)
    if root is None or is_null(root):
        doc.fail(root, "", "the file is empty", "start with 'nodes:' and 'links:'")
    pairs = doc.mapping(root, "", tuple(TOP_LEVEL))
    given = {key: value_node for key, _, value_node in pairs}
    key_nodes = {key: key_node for key, key_node, _ in pairs}
    out = Builder()
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
    if out.placement is not None and out.underlay is None and not across_machines:
        doc.fail(given["placement"], "placement", "this version runs a placement's machines simulated "
                 "on this host only: runs across real machines are not built yet (docs/multihost.md)",
                 "add 'underlay: {delay: 250us}' to simulate two machines here, or remove 'placement'")
    topology = Topology(
        nodes=tuple(out.nodes.values()), links=tuple(out.links.values()), name=out.name, source=source, seed=out.seed,
        routing=out.routing, engine_shards=out.engine_shards, placement=out.placement,
        underlay=out.underlay,
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


def load_scenario(path: str | Path) -> Scenario:
    """Read, parse and validate the scenario file at `path`."""
    path = Path(path)
    return parse_scenario(read_file(path, "scenario"), source=str(path), base_dir=path.parent)


def load_topology(path: str | Path) -> Topology:
    """Read, parse and validate the topology file at `path` (a scenario file's topology)."""
    path = Path(path)
    return parse_topology(read_file(path, "topology"), source=str(path), base_dir=path.parent)


#: Preset names, re-exported for `caspian validate --help` and the docs.
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
