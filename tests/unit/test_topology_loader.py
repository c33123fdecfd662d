"""Topology files: good files load; every bad input gives FILE:LINE: path: what (fix)."""

import textwrap
from pathlib import Path

import pytest

from emulator.errors import ScenarioError
from emulator.model.linkparams import LossModel
from emulator.model.presets import get_preset
from emulator.model.propagation import propagation_delay_ns
from emulator.scenario.default import DEFAULT_TOPOLOGY_PATH, default_topology
from emulator.scenario.loader import load_topology, parse_topology

NODES = """\
nodes:
  europe: {role: host}
  sumgait: {role: router}
  aktau: {role: router}
  asia: {}
"""


def parse(text: str, base_dir: Path | None = None):  # type: ignore[no-untyped-def]
    return parse_topology(textwrap.dedent(text), source="t.yaml", base_dir=base_dir)


def error(text: str, base_dir: Path | None = None) -> str:
    with pytest.raises(ScenarioError) as info:
        parse(text, base_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_full_example(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "foo.trace").write_text("1\n2\n")
    topology = parse(
        NODES
        + """\
links:
  aktau-sumgait:
    ends: [sumgait, aktau]
    preset: aktau-sumgait
    jitter: 50us
    correlation: 25%
    distribution: normal
    loss: 0.1%
    duplicate: 0%
    corrupt: 0%
    reorder: 0%
    rate: 1gbit
    overhead: 24
    limit: 1000
    limit_bytes: 1mb
    trace: traces/foo.trace
    mtu: 1500
    addresses: {sumgait: 198.18.0.1/30, aktau: [198.18.0.2/30, "2001:2::2/64"]}
    a_to_b: {loss: 1%}
    b_to_a: {delay: 2ms}
name: demo
seed: 42
""",
        tmp_path,
    )
    assert topology.name == "demo" and topology.seed == 42 and topology.source == "t.yaml"
    assert [node.name for node in topology.nodes] == ["europe", "sumgait", "aktau", "asia"]
    assert topology.node("asia").role == "host"
    link = topology.link("aktau-sumgait")
    assert link.nodes == ("sumgait", "aktau") and link.preset == "aktau-sumgait" and link.length_km == 370
    assert link.a.address == "198.18.0.1/30" and link.b.address6 == "2001:2::2/64"
    ab, ba = link.a_to_b, link.b_to_a
    assert ab.delay_ns == get_preset("aktau-sumgait").delay_ns
    assert ab.loss == LossModel("random", (0.01,)) and ba.loss == LossModel("random", (0.001,))
    assert ba.delay_ns == 2_000_000
    assert (ab.jitter_ns, ab.jitter_correlation, ab.distribution) == (50_000, 0.25, "normal")
    assert (ab.rate_bps, ab.overhead_bytes, ab.limit_packets, ab.limit_bytes) == (10**9, 24, 1000, 2**20)
    assert ab.trace_ms == (1, 2) == ba.trace_ms


def test_length_km_sets_propagation_and_delay_wins() -> None:
    topology = parse(
        NODES
        + """\
links:
  a: {ends: [europe, sumgait], length_km: 370}
  b: {ends: [aktau, asia], length_km: 100, delay: 1ms}
"""
    )
    assert topology.link("a").a_to_b.delay_ns == propagation_delay_ns(370)
    assert topology.link("a").length_km == 370
    assert topology.link("b").a_to_b.delay_ns == 1_000_000


def test_netem_words_apply_after_fields_and_loss_models() -> None:
    link = parse(
        NODES
        + """\
links:
  l:
    ends: [europe, sumgait]
    delay: 1ms
    loss: gemodel 1% 30% 100% 0%
    netem: "delay 5ms rate 10mbit"
    a_to_b: {loss: state 2%}
"""
    ).link("l")
    assert link.b_to_a.delay_ns == 5_000_000 and link.b_to_a.rate_bps == 10**7
    assert link.b_to_a.loss.probabilities == pytest.approx((0.01, 0.3, 1.0, 0.0))
    assert link.a_to_b.loss.kind == "state" and link.a_to_b.delay_ns == 5_000_000


def test_node_addresses_and_empty_links() -> None:
    topology = parse(
        """\
nodes:
  r1: {role: router, address: 198.18.255.1, address6: "2001:2:0:ff::1/128"}
links:
"""
    )
    assert topology.node("r1").address == "198.18.255.1/32"
    assert topology.node("r1").address6 == "2001:2:0:ff::1/128"
    assert topology.links == ()


def test_default_topology() -> None:
    topology = default_topology()
    assert DEFAULT_TOPOLOGY_PATH.is_file()
    assert {n.name: n.role for n in topology.nodes} == {
        "europe": "host", "sumgait": "router", "aktau": "router", "asia": "host"
    }  # fmt: skip
    cable = topology.link("aktau-sumgait")
    assert cable.nodes == ("aktau", "sumgait") and cable.preset == "aktau-sumgait"
    assert cable.a_to_b.delay_ns / 1e6 == pytest.approx(1.91, abs=0.005)
    # the testbed lights 300 Mbit/s of the cable; the preset itself has no rate
    assert cable.a_to_b.rate_bps == 300_000_000 and cable.a_to_b.jitter_ns == 0
    assert topology.link("europe-sumgait").nodes == ("europe", "sumgait")
    assert topology.link("aktau-asia").nodes == ("aktau", "asia")


def test_scenarios_symlink_points_at_the_packaged_file() -> None:
    link = Path(__file__).resolve().parents[2] / "scenarios" / "aktau_sumgait.yaml"
    assert link.is_symlink() and link.resolve() == DEFAULT_TOPOLOGY_PATH.resolve()
    assert load_topology(link).links == default_topology().links


def test_load_topology_resolves_traces_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "x.trace").write_text("5\n")
    path = tmp_path / "topo.yaml"
    path.write_text(NODES + "links:\n  l: {ends: [europe, asia], trace: x.trace}\n")
    assert load_topology(path).link("l").a_to_b.trace_ms == (5,)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="does not exist"):
        load_topology(tmp_path / "nope.yaml")


LINK = NODES + "links:\n  l:\n    ends: [europe, sumgait]\n"  # link fields go on line 9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown key, with suggestion and the allowed list
        (LINK + "    dealy: 5ms\n", ["t.yaml:9: links.l.dealy: unknown key 'dealy'", "did you mean 'delay'?", "allowed: ends, preset"]),
        (LINK + "    a_to_b: {jiter: 1ms}\n", ["t.yaml:9: links.l.a_to_b.jiter: unknown key", "did you mean 'jitter'?"]),
        (LINK + "    a_to_b: {mtu: 9000}\n", ["t.yaml:9: links.l.a_to_b.mtu: unknown key 'mtu'"]),
        (NODES + "traffik: {}\n", ["t.yaml:6: traffik: unknown key 'traffik'", "did you mean 'traffic'?"]),
        (NODES.replace("role: host", "rol: host"), ["t.yaml:2: nodes.europe.rol: unknown key", "did you mean 'role'?"]),
        # missing node, same node twice, wrong count
        (NODES + "links:\n  l: {ends: [europe, asai]}\n", ["t.yaml:7: links.l.ends: no node called 'asai'", "did you mean 'asia'?"]),
        (NODES + "links:\n  l: {ends: [europe, europe]}\n", ["t.yaml:7: links.l.ends: both ends are 'europe'", "two different nodes"]),
        (NODES + "links:\n  l: {ends: [europe]}\n", ["t.yaml:7: links.l.ends: a link has exactly two ends, got 1"]),
        (NODES + "links:\n  l: {delay: 1ms}\n", ["t.yaml:7: links.l: a link needs ends"]),
        # duplicates that PyYAML would silently merge
        (NODES + "  europe: {}\n", ["t.yaml:6: nodes.europe: duplicate key 'europe' (first at line 2)"]),
        (NODES + "links:\n  l: {ends: [europe, asia]}\n  l: {ends: [aktau, asia]}\n", ["t.yaml:8: links.l: duplicate key 'l' (first at line 7)"]),
        (LINK + "    delay: 1ms\n    delay: 2ms\n", ["t.yaml:10: links.l.delay: duplicate key 'delay'"]),
        # values
        (LINK + "    delay: -5ms\n", ["t.yaml:9: links.l.delay: ", "negative delay", "(give a duration >= 0"]),
        (LINK + "    delay: 5\n", ["t.yaml:9: links.l.delay: ", "has no unit", "(add a unit, e.g. 5ms)"]),
        (LINK + "    loss: 120%\n", ["t.yaml:9: links.l.loss: ", "over 100%"]),
        (LINK + "    loss: 0.5\n", ["t.yaml:9: links.l.loss: ", "(write it as a percentage, e.g. 0.5%)"]),
        (LINK + "    rate: 10furlongs\n", ["t.yaml:9: links.l.rate: ", "unknown unit 'furlongs'", "gbit"]),
        (LINK + "    b_to_a: {correlation: 150%}\n", ["t.yaml:9: links.l.b_to_a.correlation: "]),
        (LINK + "    distribution: cauchy\n", ["t.yaml:9: links.l.distribution: unknown jitter distribution"]),
        (LINK + "    netem: dealy 5ms\n", ["t.yaml:9: links.l.netem: unknown netem word 'dealy'", "did you mean 'delay'?"]),
        (LINK + "    preset: aktau-sumgiat\n", ["t.yaml:9: links.l.preset: unknown preset", "did you mean 'aktau-sumgait'?"]),
        (LINK + "    length_km: -3\n", ["t.yaml:9: links.l.length_km: length -3 is not a distance"]),
        (LINK + "    mtu: 100\n", ["t.yaml:9: links.l.mtu: 100 is outside 1280..65535"]),
        (LINK + "    limit: lots\n", ["t.yaml:9: links.l.limit: expected a whole number"]),
        (LINK + "    trace: missing.trace\n", ["t.yaml:9: links.l.trace: ", "does not exist"]),
        (LINK + "    delay: [1ms]\n", ["t.yaml:9: links.l.delay: expected a single value, got a list"]),
        # names
        (NODES + "  Bad_Name: {}\n", ["t.yaml:6: nodes.Bad_Name: node name 'Bad_Name' is not valid", "at most 15"]),
        (NODES + "  averyveryverylongname: {}\n", ["t.yaml:6: nodes.averyveryverylongname: node name"]),
        (NODES + "links:\n  Link_1: {ends: [europe, asia]}\n", ["t.yaml:7: links.Link_1: link name 'Link_1' is not valid"]),
        (NODES.replace("{role: router}", "{role: switch}", 1), ["t.yaml:3: nodes.sumgait.role: unknown role 'switch'", "host, router"]),
        # addresses
        (NODES + "  r: {address: 10.0.0.1}\n", ["t.yaml:6: nodes.r.address: 10.0.0.1 is outside 198.18.0.0/15", "RFC 2544/5180"]),
        (NODES + "  r: {address6: '2001:db8::1'}\n", ["t.yaml:6: nodes.r.address6: 2001:db8::1 is outside 2001:2::/48"]),
        (NODES + "  r: {address: '2001:2::1'}\n", ["t.yaml:6: nodes.r.address: 2001:2::1 is not an IPv4 address"]),
        (NODES + "  r: {address: 198.18.0.0/24}\n", ["t.yaml:6: nodes.r.address: ", "is a network, not one address"]),
        (NODES + "  r: {address: nope}\n", ["t.yaml:6: nodes.r.address: 'nope' is not an IP address"]),
        (LINK + "    addresses: {europe: 192.168.0.1/30}\n", ["t.yaml:9: links.l.addresses.europe: 192.168.0.1 is outside 198.18.0.0/15"]),
        (LINK + "    addresses: {asia: 198.18.0.1/30}\n", ["t.yaml:9: links.l.addresses.asia: unknown key 'asia'", "allowed: europe, sumgait"]),
        (LINK + "    addresses: {europe: 198.18.0.1/30, sumgait: 198.18.0.5/30}\n", ["links.l.addresses.sumgait: 198.18.0.5/30 is not in 198.18.0.0/30"]),
        (LINK + "    addresses: {europe: 198.18.0.1/30, sumgait: 198.18.0.1/30}\n", ["links.l.addresses.sumgait: address 198.18.0.1 is already used by links.l.addresses.europe"]),
        (LINK + "    addresses: {europe: 198.18.0.0/30}\n", ["network or broadcast address"]),
        (LINK + "    addresses: {europe: 198.18.0.1}\n", ["has no prefix length"]),
        # top level
        ("", ["t.yaml:1: the file is empty"]),
        ("- a\n- b\n", ["t.yaml:1: expected a mapping"]),
        ("name: x\n", ["t.yaml:1: nodes: missing section 'nodes'"]),
        ("nodes: {}\n", ["t.yaml:1: nodes: no nodes"]),
        (NODES + "seed: -1\n", ["t.yaml:6: seed: -1 is outside 0..18446744073709551615"]),
        (NODES + "seed: yes\n", ["t.yaml:6: seed: expected a whole number"]),
        # broken YAML
        ("nodes:\n  a: {role: host\n  b: {}\n", ["t.yaml:3: YAML syntax: ", "(check indentation"]),
        ("nodes:\n  a: 1\n b: 2\n", ["t.yaml:3: YAML syntax"]),
    ],
)
def test_bad_files(text: str, expected: list[str]) -> None:
    message = error(text)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_errors_are_scenario_errors_with_a_fix() -> None:
    with pytest.raises(ScenarioError) as info:
        parse(LINK + "    delay: -5ms\n")
    assert info.value.where == "t.yaml:9: links.l.delay"
    assert info.value.fix
