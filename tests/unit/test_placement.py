"""Placement of nodes on machines: the automatic split and the `placement:` section's checks (no root)."""

from __future__ import annotations

import pytest

from emulator.errors import InputError, ScenarioError
from emulator.model.placement import Placement, check_placement, place_nodes
from emulator.scenario.loader import parse_scenario

CORRIDOR = """\
name: corridor
nodes:
  europe: {role: host}
  sumgait: {role: router}
  aktau: {role: router}
  asia: {role: host}
links:
  europe-sumgait: {ends: [europe, sumgait], delay: 50us, rate: 10Gbit}
  aktau-sumgait: {ends: [aktau, sumgait], delay: 1.8ms, rate: 100Mbit}
  aktau-asia: {ends: [aktau, asia], delay: 50us, rate: 10Gbit}
"""


def _parse(placement: str, **kwargs: bool) -> Placement | int | None:
    return parse_scenario(CORRIDOR + placement, source="c.yaml", **kwargs).topology.placement


def test_the_split_keeps_the_heavy_links_inside_a_machine() -> None:
    # two 10G access links and a 100M cable between them: the cable is the one to cross
    nodes = ["europe", "sumgait", "aktau", "asia"]
    links = [("europe", "sumgait", 10e9), ("aktau", "sumgait", 100e6), ("aktau", "asia", 10e9)]
    placed = place_nodes(nodes, links, 2)
    assert placed.to_dict() == {"host1": ["europe", "sumgait"], "host2": ["aktau", "asia"]}
    assert placed.crossing([("europe-sumgait", "europe", "sumgait"), ("aktau-sumgait", "aktau", "sumgait"),
                            ("aktau-asia", "aktau", "asia")]) == ["aktau-sumgait"]
    # the cable is impaired once, by the machine of its a end
    assert placed.owner("aktau") == "host2" and placed.machine_of("europe") == "host1"


def test_a_link_heavier_than_a_share_is_kept_inside_a_machine() -> None:
    # one 10G link and one 100M over two machines: the 10G link loads its owner over
    # an even share wherever its ends are, so only the 100M link may cross
    placed = place_nodes(["a", "b", "c"], [("a", "b", 10e9), ("b", "c", 100e6)], 2)
    assert placed.to_dict() == {"host1": ["a", "b"], "host2": ["c"]}


def test_every_machine_gets_a_node_and_every_node_one_machine() -> None:
    ring = [f"r{k}" for k in range(7)]
    links = [(ring[k], ring[(k + 1) % 7], 1.0) for k in range(7)]
    for machines in range(1, 8):
        placed = place_nodes(ring, links, machines)
        assert len(placed.machines) == machines
        assert all(nodes for _, nodes in placed.machines)
        assert sorted(placed.by_node()) == sorted(ring)
        assert check_placement(placed.to_dict(), ring) == []
    # seven equal links over two machines: the loads differ by at most one link
    halves = [len(nodes) for _, nodes in place_nodes(ring, links, 2).machines]
    assert sorted(halves) == [3, 4]
    # a node without links is placed too
    assert "lone" in place_nodes(ring + ["lone"], links, 3).by_node()
    with pytest.raises(InputError, match="at most 7"):
        place_nodes(ring, links, 8)
    with pytest.raises(InputError, match="0 machines"):
        place_nodes(ring, links, 0)


def test_the_split_is_stable() -> None:
    nodes = [f"n{k}" for k in range(20)]
    links = [(nodes[k], nodes[k + 1], float(k % 3 + 1)) for k in range(19)]
    assert place_nodes(nodes, links, 4) == place_nodes(nodes, links, 4)


def test_check_placement_names_each_problem() -> None:
    assert check_placement({"a": ["x"], "b": ["x", "y"], "c": []}, ["x", "y", "z"]) == [
        "node x is placed on a and on b", "machine c has no nodes", "node(s) z placed on no machine"]


def test_the_section_is_read_in_full_and_refused_by_a_one_machine_run() -> None:
    text = "placement: {host1: [europe, sumgait], host2: [aktau, asia]}\n"
    placed = _parse(text, across_machines=True)
    assert isinstance(placed, Placement) and placed.to_dict() == {"host1": ["europe", "sumgait"], "host2": ["aktau", "asia"]}
    assert _parse("placement: 2\n", across_machines=True) == 2
    with pytest.raises(ScenarioError) as refused:
        _parse(text)
    assert str(refused.value).startswith("c.yaml:11: placement:") and "remove 'placement'" in str(refused.value)


@pytest.mark.parametrize("text, expected", [
    ("placement: {host1: [europe, sumgait, aktau], host2: [aktau, asia]}\n",
     "c.yaml:11: placement.host2[0]: node aktau is placed twice (first at placement.host1[2], line 11)"),
    ("placement: {host1: [europe, sumgait, aktau, asia], host2: []}\n", "c.yaml:11: placement.host2: machine host2 has no nodes"),
    ("placement: {host1: [europe, sumgait], host2: [aktau]}\n", "c.yaml:11: placement: node(s) asia placed on no machine"),
    ("placement: {host1: [europe, sumgait], host2: [aktau, asai]}\n", "c.yaml:11: placement.host2[1]: no node called 'asai'"),
    ("placement: {host1: [europe, sumgait, aktau, asia]}\n", "c.yaml:11: placement: 1 machine(s)"),
    ("placement: {Host1: [europe, sumgait], host2: [aktau, asia]}\n", "c.yaml:11: placement.Host1: machine name 'Host1' is not valid"),
    ("placement: 5\n", "c.yaml:11: placement: 5 machines for 4 node(s)"),
    ("placement: 1\n", "c.yaml:11: placement: 1 is outside 2..64"),
    ("placement: [europe]\n", "c.yaml:11: placement: expected a mapping"),
])
def test_a_bad_placement_is_one_line_naming_the_field(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as bad:
        _parse(text, across_machines=True)
    message = str(bad.value)
    assert message.startswith(expected), message
    assert "\n" not in message and "(" in message   # one line, with a fix
