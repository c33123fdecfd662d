"""Scenario files: traffic, timeline and assertions parse into typed objects;
every bad input gives one line `FILE:LINE: field.path: what (fix)`; the JSON
schema in docs/ accepts the shipped files and stays in step with the loader."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from emulator.errors import ScenarioError
from emulator.model.linkparams import DISTRIBUTIONS, LossModel
from emulator.model.netem import parse_netem_words
from emulator.model.presets import PRESETS
from emulator.scenario import loader
from emulator.scenario.assertions import ASSERTION_FIELDS
from emulator.scenario.capture import CAPTURE_FIELDS
from emulator.scenario.links import DIRECTION_FIELDS, LINK_FIELDS
from emulator.scenario.loader import load_scenario, load_topology, parse_scenario, parse_topology
from emulator.scenario.nodes import NODE_FIELDS
from emulator.scenario.timeline import ENGINE_FIELDS, EVENT_FIELDS
from emulator.scenario.traffic import TRAFFIC_FIELDS
from emulator.scenario.scenario import (
    EVENT_METRICS,
    ROUTING_METRICS,
    LINK_METRICS,
    TRAFFIC_KINDS,
    TRAFFIC_METRICS,
    Assertion,
    Event,
    Scenario,
    TrafficSpec,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "docs" / "scenario.schema.json"
S = 10**9
MS = 10**6

# Lines 1..10; scenario sections appended below start at line 11.
BASE = """\
nodes:
  europe: {role: host}
  sumgait: {role: router}
  aktau: {role: router}
  asia: {}
links:
  europe-sumgait: {ends: [europe, sumgait], delay: 50us}
  aktau-sumgait: {ends: [aktau, sumgait], preset: aktau-sumgait, b_to_a: {delay: 3ms}}
  aktau-asia: {ends: [aktau, asia], delay: 50us}
duration: 20s
"""
TRAFFIC = """\
traffic:
  probe: {kind: probe, from: europe, to: asia, rate_pps: 1000pps, size: 64}
  bulk: {kind: tcp, from: asia, to: europe}
"""  # lines 11..13

FULL = (
    BASE
    + """\
seed: 42
traffic:
  probe:
    kind: probe
    from: europe
    to: asia
    rate_pps: 10kpps
    size: 16
    start: 500ms
    stop: 19s
    ipv6: true
  bulk: {kind: tcp, from: asia, to: europe, rate_bps: 500mbit}
  voip: {kind: udp, from: europe, to: asia, rate_bps: 64kbit, size: 160}
  slow: {kind: probe, from: asia, to: europe}
timeline:
  - {at: 10s, cut: aktau-sumgait}
  - {at: 15s, restore: aktau-sumgait, direction: aktau}
  - {at: 5s, set: aktau-sumgait, netem: "delay 5ms loss 1%", direction: both}
  - {at: 6s, set: aktau-sumgait, netem: "rate 10mbit", direction: sumgait}
  - {at: 2s, flap: europe-sumgait, period: 1s, count: 3}
assertions:
  - {metric: probe.owd_median_ms, between: [1.9, 2.3]}
  - {metric: probe.loss_pct, at_most: 1}
  - {metric: bulk.throughput_mbps, at_least: 500}
  - {metric: link.aktau-sumgait.a_to_b.drops_outage, at_least: 1}
  - {metric: events.cut_total_ms, equals: 5000}
  - {metric: voip.jitter_ms, at_most: 0.5}
"""
)


def parse(text: str) -> Scenario:
    return parse_scenario(textwrap.dedent(text), source="s.yaml")


def error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_full_scenario() -> None:
    scenario = parse(FULL)
    assert scenario.duration_ns == 20 * S and scenario.seed == 42 and scenario.source == "s.yaml"
    assert scenario.text == FULL and scenario.name == "testbed"
    assert scenario.topology.link("aktau-sumgait").nodes == ("aktau", "sumgait")

    probe, bulk, voip, slow = scenario.traffic
    assert probe == TrafficSpec("probe", "probe", "europe", "asia", 500 * MS, 19 * S, rate_pps=10_000.0, size=16, ipv6=True)
    assert bulk == TrafficSpec("bulk", "tcp", "asia", "europe", 0, 20 * S, rate_bps=500e6, size=64, ipv6=False)
    assert voip == TrafficSpec("voip", "udp", "europe", "asia", 0, 20 * S, rate_bps=64e3, size=160, ipv6=False)
    assert (slow.rate_pps, slow.rate_bps, slow.size, slow.stop_ns) == (1000.0, 0.0, 64, 20 * S)  # defaults

    cut, restore, set_both, set_one, flap = scenario.timeline
    assert cut == Event(10 * S, "cut", "aktau-sumgait", "both")
    assert restore == Event(15 * S, "restore", "aktau-sumgait", "a_to_b")  # aktau is end a
    link = scenario.topology.link("aktau-sumgait")
    assert set_both.kind == "set" and set_both.direction == "both" and set_both.words == "delay 5ms loss 1%"
    assert set_both.params == link.a_to_b.replace(delay_ns=5 * MS, loss=LossModel("random", (0.01,)))
    assert set_both.params_b_to_a == parse_netem_words("delay 5ms loss 1%", link.b_to_a)
    assert set_both.params_b_to_a is not None and set_both.params_b_to_a.delay_ns == 5 * MS
    # one direction (sumgait is end b): only `params`, from b_to_a's configured values
    assert set_one.direction == "b_to_a" and set_one.params_b_to_a is None
    assert set_one.params == link.b_to_a.replace(rate_bps=10**7) and set_one.params.delay_ns == 3 * MS
    assert flap == Event(2 * S, "flap", "europe-sumgait", "both", period_ns=1 * S, count=3)
    assert flap.end_ns == 5 * S

    steps = [(e.at_ns, e.kind, e.link) for e in scenario.steps()]
    assert steps == [
        (2 * S, "cut", "europe-sumgait"), (2_500 * MS, "restore", "europe-sumgait"),
        (3 * S, "cut", "europe-sumgait"), (3_500 * MS, "restore", "europe-sumgait"),
        (4 * S, "cut", "europe-sumgait"), (4_500 * MS, "restore", "europe-sumgait"),
        (5 * S, "set", "aktau-sumgait"), (6 * S, "set", "aktau-sumgait"),
        (10 * S, "cut", "aktau-sumgait"), (15 * S, "restore", "aktau-sumgait"),
    ]  # fmt: skip

    first_line = FULL.splitlines().index("assertions:") + 2
    assert scenario.assertions == (
        Assertion("probe.owd_median_ms", 1.9, 2.3, "between [1.9, 2.3]", first_line),
        Assertion("probe.loss_pct", None, 1.0, "at most 1", first_line + 1),
        Assertion("bulk.throughput_mbps", 500.0, None, "at least 500", first_line + 2),
        Assertion("link.aktau-sumgait.a_to_b.drops_outage", 1.0, None, "at least 1", first_line + 3),
        Assertion("events.cut_total_ms", 5000.0, 5000.0, "equals 5000", first_line + 4),
        Assertion("voip.jitter_ms", None, 0.5, "at most 0.5", first_line + 5),
    )
    assert scenario.assertions[4].holds(5000) and not scenario.assertions[4].holds(5000.5)


def test_topology_file_is_a_scenario_and_topology_reads_scenarios(tmp_path: Path) -> None:
    plain = parse(BASE.replace("duration: 20s\n", ""))
    assert plain.duration_ns == 10 * S and plain.seed == 1
    assert (plain.traffic, plain.timeline, plain.assertions) == ((), (), ())
    assert parse(BASE + "seed: 0\n").seed == 0  # 0 is a seed, not "unset"
    path = tmp_path / "s.yaml"
    path.write_text(FULL)
    topology = load_topology(path)
    assert topology == load_scenario(path).topology == parse_topology(FULL, source=str(path))
    assert load_scenario(str(path)).traffic[0].name == "probe"
    # empty sections are allowed
    assert parse(BASE + "traffic:\ntimeline:\nassertions:\n").traffic == ()


def test_load_missing_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="scenario file .* does not exist"):
        load_scenario(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")) + sorted((ROOT / "emulator" / "data").glob("*.yaml")), ids=str)
def test_shipped_files_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.text == path.read_text(encoding="utf-8")


EV = BASE + "timeline:\n"  # the first event is on line 12
AS = BASE + TRAFFIC + "assertions:\n"  # the first assertion is on line 15


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # duration
        (BASE.replace("duration: 20s\n", "") + TRAFFIC, ["s.yaml:10: duration: missing 'duration', which 'traffic' needs (add 'duration: 20s' at the top level)"]),
        (BASE.replace("duration: 20s\n", "") + "assertions: []\n", ["s.yaml:10: duration: missing 'duration', which 'assertions' needs"]),
        (BASE.replace("20s", "20"), ["s.yaml:10: duration: duration 20: has no unit (add a unit, e.g. 5ms)"]),
        (BASE.replace("20s", "0s"), ["s.yaml:10: duration: duration must be longer than 0"]),
        (BASE + "trafic: {}\n", ["s.yaml:11: trafic: unknown key 'trafic' (did you mean 'traffic'?"]),
        # traffic
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asai}\n", ["s.yaml:12: traffic.p.to: no node called 'asai' (did you mean 'asia'? nodes: europe, sumgait, aktau, asia)"]),
        (BASE + "traffic:\n  p: {kind: probe, from: eurpoe, to: asia}\n", ["s.yaml:12: traffic.p.from: no node called 'eurpoe' (did you mean 'europe'?"]),
        (BASE + "traffic:\n  p: {kind: probe, from: asia, to: asia}\n", ["s.yaml:12: traffic.p.to: traffic from 'asia' to itself"]),
        (BASE + "traffic:\n  p: {kind: prob, from: europe, to: asia}\n", ["s.yaml:12: traffic.p.kind: unknown traffic kind 'prob' (did you mean 'probe'? kinds: probe, tcp, udp)"]),
        (BASE + "traffic:\n  p: {from: europe, to: asia}\n", ["s.yaml:12: traffic.p: traffic needs 'kind'"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, rate_pp: 1pps}\n", ["s.yaml:12: traffic.p.rate_pp: unknown key 'rate_pp' (did you mean 'rate_pps'?"]),
        # the old `rate` key, and the other kind's rate key, name the key to write
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, rate: 1000pps}\n", ["s.yaml:12: traffic.p.rate: unknown key 'rate' (did you mean 'rate_pps'? a probe rate is packets per second, e.g. rate_pps: 1000pps)"]),
        (BASE + "traffic:\n  u: {kind: udp, from: europe, to: asia, rate: 20Mbit}\n", ["s.yaml:12: traffic.u.rate: unknown key 'rate' (did you mean 'rate_bps'? a udp rate is a bit rate, e.g. rate_bps: 20Mbit)"]),
        (BASE + "traffic:\n  t: {kind: tcp, from: europe, to: asia, rate: 100mbit}\n", ["s.yaml:12: traffic.t.rate: unknown key 'rate' (did you mean 'rate_bps'?"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, rate_bps: 1mbit}\n", ["s.yaml:12: traffic.p.rate_bps: 'rate_bps' does not apply to probe traffic (did you mean 'rate_pps'?"]),
        (BASE + "traffic:\n  u: {kind: udp, from: europe, to: asia, rate_pps: 100pps}\n", ["s.yaml:12: traffic.u.rate_pps: 'rate_pps' does not apply to udp traffic (did you mean 'rate_bps'?"]),
        (BASE + "traffic:\n  P_1: {kind: probe, from: europe, to: asia}\n", ["s.yaml:12: traffic.P_1: traffic name 'P_1' is not valid"]),
        (BASE + "traffic:\n  link: {kind: probe, from: europe, to: asia}\n", ["s.yaml:12: traffic.link: traffic name 'link' is reserved"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, rate_pps: 30kpps}\n", ["s.yaml:12: traffic.p.rate_pps: probe rate 30kpps is outside 1..20000 packets/s"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, rate_pps: 1mbit}\n", ["s.yaml:12: traffic.p.rate_pps: probe rate '1mbit' is not in packets per second (e.g. 1000pps or 10kpps)"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, rate_pps: 1000}\n", ["s.yaml:12: traffic.p.rate_pps: probe rate 1000 is not in packets per second"]),
        (BASE + "traffic:\n  u: {kind: udp, from: europe, to: asia, rate_bps: 100pps}\n", ["s.yaml:12: traffic.u.rate_bps: rate '100pps': has an unknown unit 'pps' (udp rate is a bit rate, e.g. 64kbit or 100mbit)"]),
        (BASE + "traffic:\n  u: {kind: udp, from: europe, to: asia, rate_bps: 0bit}\n", ["s.yaml:12: traffic.u.rate_bps: udp rate must be above 0"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, size: 8}\n", ["s.yaml:12: traffic.p.size: 8 is outside 16..1400"]),
        (BASE + "traffic:\n  u: {kind: udp, from: europe, to: asia, size: 9000}\n", ["s.yaml:12: traffic.u.size: 9000 is outside 1..1400"]),
        (BASE + "traffic:\n  t: {kind: tcp, from: europe, to: asia, size: 100}\n", ["s.yaml:12: traffic.t.size: size applies to probe and udp traffic only"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, start: 5s, stop: 5s}\n", ["s.yaml:12: traffic.p.stop: stop 5s is not after start 5s"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, stop: 21s}\n", ["s.yaml:12: traffic.p.stop: stop 21s is after the scenario's end (duration 20s)"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, start: 20s}\n", ["s.yaml:12: traffic.p.start: start 20s is not before the scenario's end (duration 20s)"]),
        (BASE + "traffic:\n  p: {kind: probe, from: europe, to: asia, ipv6: yes please}\n", ["s.yaml:12: traffic.p.ipv6: expected true or false"]),
        # timeline
        (EV + "  - {at: 21s, cut: aktau-sumgait}\n", ["s.yaml:12: timeline[0].at: at 21s is after the scenario's end (duration 20s) (move the event earlier or lengthen duration)"]),
        (EV + "  - {at: 18s, flap: aktau-sumgait, period: 1s, count: 3}\n", ["s.yaml:12: timeline[0].at: the flap ends at 21s (18s + 3 x 1s), after the scenario's end (duration 20s)"]),
        (EV + "  - {at: 1s, cut: aktau-sumgiat}\n", ["s.yaml:12: timeline[0].cut: no link called 'aktau-sumgiat' (did you mean 'aktau-sumgait'? links: europe-sumgait, aktau-sumgait, aktau-asia)"]),
        (EV + "  - {at: 1s}\n", ["s.yaml:12: timeline[0]: no event in one item (give exactly one of cut, restore, set, flap"]),
        (EV + "  - {at: 1s, cut: aktau-sumgait, restore: aktau-sumgait}\n", ["s.yaml:12: timeline[0]: 2 events (cut, restore) in one item"]),
        (EV + "  - {cut: aktau-sumgait}\n", ["s.yaml:12: timeline[0]: the cut event has no time (add at:"]),
        (EV + "  - {at: 1s, cut: aktau-sumgait, direction: asia}\n", ["s.yaml:12: timeline[0].direction: unknown direction 'asia' for link 'aktau-sumgait'", "both, a_to_b, b_to_a, aktau, sumgait"]),
        (EV + "  - {at: 1s, cut: aktau-sumgait, netem: delay 1ms}\n", ["s.yaml:12: timeline[0].netem: 'netem' does not apply to a cut event (remove it; it is for set)"]),
        (EV + "  - {at: 1s, cut: aktau-sumgait, perod: 1s}\n", ["s.yaml:12: timeline[0].perod: unknown key 'perod' (did you mean 'period'?"]),
        (EV + "  - {at: 1s, set: aktau-sumgait}\n", ["s.yaml:12: timeline[0]: a set event needs netem words"]),
        (EV + "  - {at: 1s, set: aktau-sumgait, netem: dealy 5ms}\n", ["s.yaml:12: timeline[0].netem: unknown netem word 'dealy' (did you mean 'delay'?"]),
        (EV + "  - {at: 1s, set: aktau-sumgait, netem: loss 120%}\n", ["s.yaml:12: timeline[0].netem: ", "over 100%"]),
        (EV + "  - {at: 1s, flap: aktau-sumgait, period: 0s, count: 3}\n", ["s.yaml:12: timeline[0].period: period must be longer than 0"]),
        (EV + "  - {at: 1s, flap: aktau-sumgait, period: 1s, count: 0}\n", ["s.yaml:12: timeline[0].count: 0 is outside 1..1000000"]),
        (EV + "  - {at: 1s, flap: aktau-sumgait, period: 1s}\n", ["s.yaml:12: timeline[0]: a flap event needs 'count'"]),
        (EV + "  - {at: 1s, cut: aktau-sumgait}\n  - {at: 2, restore: aktau-sumgait}\n", ["s.yaml:13: timeline[1].at: at 2: has no unit"]),
        (BASE + "timeline: {at: 1s}\n", ["s.yaml:11: timeline: expected a list"]),
        # assertions
        (AS + "  - {metric: probe.owd_median, between: [1, 2]}\n", ["s.yaml:15: assertions[0].metric: unknown probe metric 'owd_median' in 'probe.owd_median' (did you mean 'owd_median_ms'? probe metrics: sent, received"]),
        (AS + "  - {metric: bulk.loss_pct, at_most: 1}\n", ["s.yaml:15: assertions[0].metric: unknown tcp metric 'loss_pct' in 'bulk.loss_pct'", "tcp metrics: throughput_mbps, retransmits, bytes"]),
        (AS + "  - {metric: prob.loss_pct, at_most: 1}\n", ["s.yaml:15: assertions[0].metric: 'prob' in 'prob.loss_pct' is no traffic name, 'link', 'events' or 'routing' (did you mean 'probe'? use: probe, bulk, link, events, routing)"]),
        (AS + "  - {metric: link.aktau-sumgiat.a_to_b.drops_outage, at_least: 1}\n", ["s.yaml:15: assertions[0].metric: no link called 'aktau-sumgiat' in", "did you mean 'aktau-sumgait'?"]),
        (AS + "  - {metric: link.aktau-sumgait.both.drops_outage, at_least: 1}\n", ["s.yaml:15: assertions[0].metric: unknown direction 'both' in", "use: a_to_b, b_to_a"]),
        (AS + "  - {metric: link.aktau-sumgait.a_to_b.drops, at_least: 1}\n", ["s.yaml:15: assertions[0].metric: unknown link metric 'drops' in", "link metrics: rx_packets"]),
        (AS + "  - {metric: link.aktau-sumgait.drops_outage, at_least: 1}\n", ["s.yaml:15: assertions[0].metric: link metric 'link.aktau-sumgait.drops_outage' is not link.<link>.<direction>.<metric>"]),
        (AS + "  - {metric: events.cut_ms, at_least: 1}\n", ["s.yaml:15: assertions[0].metric: unknown events metric 'cut_ms' in 'events.cut_ms' (did you mean 'cut_total_ms'?"]),
        (AS + "  - {metric: probe.loss_pct}\n", ["s.yaml:15: assertions[0]: no bound for probe.loss_pct (give exactly one of between: [low, high], at_most, at_least, equals)"]),
        (AS + "  - {metric: probe.loss_pct, at_most: 1, at_least: 0}\n", ["s.yaml:15: assertions[0]: 2 bounds (at_most, at_least) for probe.loss_pct"]),
        (AS + "  - {metric: probe.loss_pct, between: [2, 1]}\n", ["s.yaml:15: assertions[0].between: low 2 is above high 1 (write between: [1, 2])"]),
        (AS + "  - {metric: probe.loss_pct, between: [1]}\n", ["s.yaml:15: assertions[0].between: between needs two numbers, got 1"]),
        (AS + "  - {metric: probe.loss_pct, at_most: 1%}\n", ["s.yaml:15: assertions[0].at_most: expected a number, got '1%'"]),
        (AS + "  - {metric: probe.loss_pct, at_mots: 1}\n", ["s.yaml:15: assertions[0].at_mots: unknown key 'at_mots' (did you mean 'at_most'?"]),
        (AS + "  - {between: [1, 2]}\n", ["s.yaml:15: assertions[0]: an assertion needs a metric"]),
        (AS + "  - {metric: probe.owd_median_ms, at_most: 2.25, tolerance: 50}\n", ["s.yaml:15: assertions[0].tolerance: tolerance 50: has no unit (add a unit, e.g. 5ms)"]),
        (AS + "  - {metric: probe.loss_pct, at_most: 1, tolerance: 50us}\n", ["s.yaml:15: assertions[0].tolerance: a tolerance applies to timing metrics, and probe.loss_pct is not one (drop tolerance, or use it on a metric ending in _ms, _us or _s)"]),
        (AS + "  - {metric: probe.owd_median_ms, at_most: 2.25, tolerance: -1ms}\n", ["s.yaml:15: assertions[0].tolerance: tolerance"]),
    ],
)
def test_bad_scenarios(text: str, expected: list[str]) -> None:
    message = error(text)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_a_tolerance_is_kept_in_ns() -> None:
    scenario = parse(AS + "  - {metric: probe.owd_median_ms, at_most: 2.25, tolerance: 50us}\n"
                     "  - {metric: probe.owd_p99_ms, at_most: 3}\n")
    assert [a.tolerance_ns for a in scenario.assertions] == [50_000, None]


def test_capture_lists_links_and_directions() -> None:
    scenario = parse(BASE + "capture:\n  - aktau-sumgait\n  - {link: europe-sumgait, direction: europe}\n")
    assert [(c.link, c.direction) for c in scenario.capture] == [("aktau-sumgait", "both"), ("europe-sumgait", "a_to_b")]
    assert "s.yaml:12: capture[0]: no link called 'aktau-sumgiat' (did you mean 'aktau-sumgait'?" in error(
        BASE + "capture:\n  - aktau-sumgiat\n")
    assert "capture[1]: link 'aktau-sumgait' is captured twice" in error(BASE + "capture: [aktau-sumgait, aktau-sumgait]\n")
    assert "capture[0].direction: unknown direction 'asia'" in error(BASE + "capture:\n  - {link: aktau-sumgait, direction: asia}\n")
    assert "capture[0]: a capture item needs a link" in error(BASE + "capture:\n  - {direction: aktau}\n")


def test_flap_may_end_exactly_at_the_end() -> None:
    scenario = parse(EV + "  - {at: 17s, flap: aktau-sumgait, period: 1s, count: 3}\n  - {at: 20s, restore: aktau-sumgait}\n")
    assert scenario.timeline[0].end_ns == 20 * S and scenario.timeline[1].at_ns == 20 * S


# ---------------------------------------------------------------------------
# docs/scenario.schema.json


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_schema_mirrors_the_loader_tables() -> None:
    """Every key the loader accepts is in the schema, and nothing else."""
    doc = schema()
    defs = doc["$defs"]
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["additionalProperties"] is False
    assert set(doc["properties"]) == set(loader.TOP_LEVEL)
    assert doc["required"] == [key for key, section in loader.TOP_LEVEL.items() if section.required]
    node_object = next(branch for branch in defs["node"]["oneOf"] if branch.get("type") == "object")
    assert set(node_object["properties"]) == set(NODE_FIELDS)
    assert set(defs["link"]["properties"]) == set(LINK_FIELDS)
    assert set(defs["direction_params"]["properties"]) == set(DIRECTION_FIELDS)
    assert set(defs["traffic"]["properties"]) == set(TRAFFIC_FIELDS)
    assert set(defs["event"]["properties"]) == set(EVENT_FIELDS)
    assert set(defs["assertion"]["properties"]) == set(ASSERTION_FIELDS)
    assert set(doc["properties"]["engine"]["properties"]) == set(ENGINE_FIELDS)
    capture_item = next(b for b in doc["properties"]["capture"]["items"]["oneOf"] if b["type"] == "object")
    assert set(capture_item["properties"]) == set(CAPTURE_FIELDS)
    assert defs["traffic"]["properties"]["kind"]["enum"] == list(TRAFFIC_KINDS)
    assert defs["link"]["properties"]["preset"]["enum"] == list(PRESETS)
    assert defs["direction_params"]["properties"]["distribution"]["enum"] == list(DISTRIBUTIONS)
    described = defs["assertion"]["properties"]["metric"]["description"]
    for name in {*LINK_METRICS, *EVENT_METRICS, *ROUTING_METRICS, *(m for ms in TRAFFIC_METRICS.values() for m in ms)}:
        assert re.search(rf"\b{name}\b", described), f"metric {name} is not in the schema's description"
    # every schema object describes itself for editors
    for name, definition in defs.items():
        assert definition.get("description"), name


def test_docs_name_every_field_and_metric() -> None:
    text = (ROOT / "docs" / "scenario.md").read_text(encoding="utf-8")
    for name in (*loader.TOP_LEVEL, *TRAFFIC_FIELDS, *EVENT_FIELDS, *ASSERTION_FIELDS, *LINK_METRICS, *EVENT_METRICS,
                 *ROUTING_METRICS):
        assert re.search(rf"`{name}[`:]", text), name
    for metrics in TRAFFIC_METRICS.values():
        for name in metrics:
            assert re.search(rf"`{name}[`:]", text), name


def validate(document: Any) -> list[str]:
    """What the JSON Schema (draft 2020-12, by the `jsonschema` library) finds wrong in `document`."""
    return [error.message for error in jsonschema.Draft202012Validator(schema()).iter_errors(document)]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml")) + sorted((ROOT / "emulator" / "data").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_files_validate_against_the_schema(path: Path) -> None:
    assert validate(yaml.safe_load(path.read_text(encoding="utf-8"))) == []


def test_schema_accepts_the_full_example_and_refuses_mistakes() -> None:
    full = yaml.safe_load(FULL)
    assert validate(full) == []
    bad = [
        {**full, "trafic": {}},
        {**full, "duration": "20"},
        {**full, "duration": 20},
        {**full, "traffic": {"p": {"kind": "probe", "from": "a", "to": "b", "rate_pps": "1000pp"}}},
        {**full, "traffic": {"p": {"kind": "probe", "from": "a", "to": "b", "rate": "1000pps"}}},
        {**full, "traffic": {"p": {"kind": "probe", "from": "a", "to": "b", "rate_bps": "1mbit"}}},
        {**full, "traffic": {"u": {"kind": "udp", "from": "a", "to": "b", "rate_pps": "100pps"}}},
        {**full, "traffic": {"u": {"kind": "udp", "from": "a", "to": "b", "rate_bps": "100pps"}}},
        {**full, "timeline": [{"at": "1s", "cut": "l", "restore": "l"}]},
        {**full, "timeline": [{"at": "1s"}]},
        {**full, "assertions": [{"metric": "probe.loss_pct", "at_most": 1, "at_least": 0}]},
        {**full, "assertions": [{"metric": "probe.loss_pct", "between": [1]}]},
        {**full, "links": {"l": {"ends": ["a", "b"], "dealy": "5ms"}}},
        {**full, "links": {"l": {"ends": ["a", "b"], "delay": "5 parsecs"}}},
        {**full, "nodes": {"Bad": {}}},
    ]
    for document in bad:
        assert validate(document), document


# ---------------------------------------------------------------------------
# engine: {shards: N}


def test_engine_shards_are_read() -> None:
    assert parse(BASE + "engine: {shards: 2}\n").topology.engine_shards == 2
    assert parse(BASE).topology.engine_shards is None


@pytest.mark.parametrize(
    "section, expected",
    [
        ("engine: {shards: 0}", "s.yaml:11: engine.shards: 0 is outside 1..64"),
        ("engine: {shards: 4}", "s.yaml:11: engine.shards: 4 shards for 3 link(s) (use at most 3"),
        ("engine: {shards: two}", "s.yaml:11: engine.shards: expected a whole number"),
        ("engine: {shard: 2}", "s.yaml:11: engine"),
    ],
)
def test_engine_shards_bad_input(section: str, expected: str) -> None:
    assert error(BASE + section + "\n").startswith(expected)
