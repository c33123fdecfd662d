"""The loader's contract: every input gets a Scenario or ONE line
`FILE:LINE: field.path: problem (fix)`, in bounded time, and what it accepts
the engine can run. One case per class of input that once got a traceback, a
hang, a multi-line message, or was accepted and then failed at run time."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.errors import InputError, ScenarioError, one_line
from emulator.model import limits
from emulator.model.linkparams import LinkParams
from emulator.model.netem import parse_netem_words
from emulator.scenario.loader import load_scenario, load_topology, parse_scenario

# Lines 1..5; sections appended below start at line 6.
BASE = """\
nodes:
  a: {role: router}
  b: {role: router}
links:
  l: {ends: [a, b], delay: 1ms}
"""
EVENTS = BASE + "duration: 20s\ntimeline:\n"  # the first event is on line 8


def refused(text: str, where: str, *parts: str) -> str:
    """Parse `text` as s.yaml: a ScenarioError of one printable line starting with `where`."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="s.yaml")
    return checked(str(info.value), where, *parts)


def checked(message: str, where: str, *parts: str) -> str:
    assert message.isprintable(), f"not one printable line: {message!r}"
    assert message.startswith(where), f"{message!r} does not start with {where!r}"
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail in 5 s instead of hanging the suite if reading blocks (a FIFO)."""

    def expired(signum: int, frame: object) -> None:
        raise AssertionError("reading blocked: the loader opened something it should have refused")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(5)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- YAML features the loader does not read -------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [("h: &h {role: host}\nnodes:\n  a: {<<: *h}\n", 3), ("nodes:\n  x: &h {role: host}\n  a:\n    <<: *h\n", 4)],
    ids=["flow", "block"],
)
def test_merge_keys_are_refused(text: str, line: int) -> None:
    refused(text, f"s.yaml:{line}: nodes.a.<<: YAML merge keys (<<) are not supported (")


@pytest.mark.parametrize(
    ("text", "where", "tag"),
    [
        ("nodes: !foo {a: {}}\n", "s.yaml:1: nodes: ", "(!foo)"),
        (BASE + "seed: !!bool maybe\n", "s.yaml:6: seed: ", "(!!bool)"),
        (BASE + "name: !!binary aGVsbG8=\n", "s.yaml:6: name: ", "(!!binary)"),
        (BASE + "name: !!python/object:os.system x\n", "s.yaml:6: name: ", "(!!python/object:os.system)"),
        (BASE + "name: ! x\n", "s.yaml:6: name: ", "(!)"),
    ],
)
def test_tags_are_refused(text: str, where: str, tag: str) -> None:
    refused(text, where, "YAML tags are not supported", tag)


def test_one_document_per_file() -> None:
    refused(BASE + "---\n" + BASE, "s.yaml:6: a second YAML document")


# --- scalars: only the kinds the loader reads, numbers bounded before conversion --


def test_odd_integers_are_text_or_refused() -> None:
    refused(BASE + "seed: 0b_\n", "s.yaml:6: seed: expected a whole number, got '0b_'")
    refused(BASE + "seed: 010\n", "s.yaml:6: seed: 010 has a leading zero", "0o10")
    assert parse_scenario(BASE + "seed: 0x2a\n", source="s.yaml").seed == 42
    assert parse_scenario(BASE + "seed: 1_000\n", source="s.yaml").seed == 1000


def test_timestamps_and_sexagesimals_are_text() -> None:
    assert parse_scenario(BASE + "name: 2001-13-45\n", source="s.yaml").name == "2001-13-45"
    assert parse_scenario(BASE + "name: 2001-12-14\n", source="s.yaml").name == "2001-12-14"
    assert parse_scenario(BASE + "name: 1:30\n", source="s.yaml").name == "1:30"
    refused(BASE + "duration: 2001-12-14\n", "s.yaml:6: duration: duration '2001-12-14': is not a duration")


def test_huge_integers_are_refused_before_conversion() -> None:
    refused(BASE + "seed: " + "9" * 5000 + "\n", "s.yaml:6: seed: a 5000-digit number is beyond any value here")
    refused(BASE.replace("delay: 1ms", "limit: " + "1" * 5000), "s.yaml:5: links.l.limit: a 5000-digit number")
    refused(BASE.replace("delay: 1ms", 'netem: "limit ' + "1" * 5000 + '"'), "s.yaml:5: links.l.netem: limit is a 5000-digit")


@pytest.mark.parametrize("value", ["1e1000000s", "1e999990s", "-1e999999999ms"])
def test_huge_exponents_are_refused_at_once(value: str) -> None:
    start = time.process_time()
    refused(BASE.replace("1ms", value), "s.yaml:5: links.l.delay: delay ", "far beyond any duration")
    refused(BASE + f"duration: {value}\n", "s.yaml:6: duration: duration ", "far beyond any duration")
    assert time.process_time() - start < 1.0


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN", "1.0e+400"])
def test_infinity_and_nan_are_refused(value: str) -> None:
    refused(BASE.replace("delay: 1ms", f"length_km: {value}"), "s.yaml:5: links.l.length_km: ", value)
    refused(BASE + "duration: 1s\ntraffic: {p: {kind: probe, from: a, to: b}}\n"
            f"assertions:\n  - {{metric: p.loss_pct, at_most: {value}}}\n",
            "s.yaml:9: assertions[0].at_most: ", value)


# --- structure: depth and aliases bounded, nothing recursive ----------------------


@pytest.mark.parametrize(
    "text",
    ["nodes: " + "[" * 500 + "]" * 500 + "\n", "nodes:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 500))],
    ids=["flow", "block"],
)
def test_deep_nesting_is_refused_not_a_recursion_error(text: str) -> None:
    refused(text, "s.yaml:", f"nested more than {limits.MAX_YAML_DEPTH} levels deep")


def test_billion_laughs_is_refused() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    start = time.process_time()
    refused("\n".join(levels) + "\nnodes: *i\n", "s.yaml:", f"aliases expand to more than {limits.MAX_YAML_ALIAS_NODES} nodes")
    assert time.process_time() - start < 1.0


def test_aliases_within_bounds_still_work() -> None:
    text = BASE.replace("  l: {ends: [a, b], delay: 1ms}\n", "  l: {ends: [a, b], a_to_b: &slow {delay: 5ms}, b_to_a: *slow}\n")
    link = parse_scenario(text, source="s.yaml").topology.link("l")
    assert link.a_to_b.delay_ns == link.b_to_a.delay_ns == 5_000_000


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    refused("nodes: &n {a: *n}\n", "s.yaml:1: nodes.a: alias *n is inside the node it names")
    refused("nodes: {a: *nope}\n", "s.yaml:1: nodes.a: alias *nope has no anchor")


# --- messages: one line, escaped ---------------------------------------------------


def test_yaml_syntax_errors_are_one_line() -> None:
    refused("nodes:\n  a: {role: host\n  b: {}\n", "s.yaml:3: YAML syntax: ", "(check indentation")
    refused("nodes:\n  a: 'open\n", "s.yaml:", "YAML syntax: ")


def test_keys_with_control_characters_are_escaped() -> None:
    message = refused('nodes:\n  "a\\nb\\x1b[31m\\u2028": {}\n', "s.yaml:2: nodes.a\\nb\\x1b[31m\\u2028: node name")
    assert "\x1b" not in message and "\n" not in message


def test_control_characters_in_the_text_name_line_and_column() -> None:
    refused(BASE + "name: a\x00b\n", "s.yaml:6: character '\\x00' (U+0000) at column 8 is not allowed in YAML")
    refused(BASE + "name: a\x1b[2Jb\n", "s.yaml:6: character '\\x1b'")


def test_long_values_are_cut() -> None:
    message = refused("nodes:\n  a: {role: " + "x" * 100_000 + "}\n", "s.yaml:2: nodes.a.role: unknown role 'xxx")
    assert len(message) < 2000 and "more characters]" in message


def test_one_line_is_idempotent() -> None:
    text = one_line("a\nb" + "y" * 1000)
    assert one_line(text) == text and text.isprintable()


def test_a_printable_name_is_required() -> None:
    refused(BASE + 'name: "evil\\e[31m"\n', "s.yaml:6: name: name 'evil\\x1b[31m' has a control character")


# --- files: bounded reading -------------------------------------------------------


def test_a_fifo_is_refused_without_blocking(tmp_path: Path, alarm: None) -> None:
    fifo = tmp_path / "s.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ScenarioError) as info:
        load_scenario(fifo)
    checked(str(info.value), "scenario file", "is a FIFO (named pipe), not a regular file")
    (tmp_path / "t.yaml").write_text(BASE.replace("delay: 1ms", "trace: s.yaml"))
    with pytest.raises(ScenarioError) as info:
        load_topology(tmp_path / "t.yaml")
    checked(str(info.value), f"{tmp_path / 't.yaml'}:5: links.l.trace: capacity trace file", "is a FIFO")


def test_dev_zero_is_refused_as_scenario_and_as_trace(tmp_path: Path, alarm: None) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("/dev/zero")
    checked(str(info.value), "scenario file '/dev/zero' is a character device, not a regular file")
    (tmp_path / "t.yaml").write_text(BASE.replace("delay: 1ms", "trace: /dev/zero"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "t.yaml")
    checked(str(info.value), f"{tmp_path / 't.yaml'}:5: links.l.trace: capacity trace file '/dev/zero' is a character device")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path)
    checked(str(info.value), "scenario file", "is a directory")


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 * 10**6))
    with pytest.raises(ScenarioError) as info:
        load_scenario(big)
    checked(str(info.value), "scenario file", "is 2000000 bytes, over the limit of 1048576")
    trace = tmp_path / "big.trace"
    trace.write_bytes(b"1\n" * (limits.MAX_TRACE_OPPORTUNITIES + 1))
    (tmp_path / "t.yaml").write_text(BASE.replace("delay: 1ms", "trace: big.trace"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "t.yaml")
    checked(str(info.value), f"{tmp_path / 't.yaml'}:5: links.l.trace: ", "big.trace:", "delivery opportunities")


def test_a_nul_in_a_path_is_refused() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("s\0.yaml")
    checked(str(info.value), "scenario path 's\\x00.yaml' contains a NUL byte")
    refused(BASE.replace("delay: 1ms", 'trace: "a\\0b"'), "s.yaml:5: links.l.trace: capacity trace path '", "a\\x00b' contains a NUL byte")


def test_non_utf8_bytes_are_named_by_line_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(BASE.encode() + b"name: caf\xe9\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    checked(str(info.value), f"{path}:6: byte 0xe9 at offset {len(BASE) + 9} (column 10) is not UTF-8 (save the file as UTF-8)")


def test_a_trace_with_a_huge_number_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "t.trace").write_text("1\n" + "9" * 5000 + "\n")
    (tmp_path / "t.yaml").write_text(BASE.replace("delay: 1ms", "trace: t.trace"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "t.yaml")
    checked(str(info.value), f"{tmp_path / 't.yaml'}:5: links.l.trace: {tmp_path / 't.trace'}:2: time 9999", "an hour")


def test_the_cli_answers_with_one_line_and_exit_2(tmp_path: Path, alarm: None, capsys: pytest.CaptureFixture[str]) -> None:
    from emulator import cli  # here, not at the top: only this test depends on the CLI

    os.mkfifo(tmp_path / "f.yaml")
    assert cli.main(["validate", str(tmp_path / "f.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a FIFO" in err


# --- values: the engine's ranges (emulator.model.limits) --------------------------


def test_the_delay_bounds_leave_int64_margin() -> None:
    # an arrival stamp until 2116, plus the longest delay, plus the largest jitter sample
    assert 2**62 + limits.MAX_DELAY_NS + limits.JITTER_TAIL_MAX * limits.MAX_JITTER_NS < limits.ENGINE_CLOCK_NS_MAX


def test_netem_words_meet_the_engine_ranges() -> None:
    refused(BASE.replace("delay: 1ms", 'netem: "delay 9000000000s"'),
            "s.yaml:5: links.l.netem: delay 9000000000s is over the engine's maximum of 3600s")
    refused(EVENTS + '  - {at: 1s, set: l, netem: "jitter 2000000s"}\n',
            "s.yaml:8: timeline[0].netem: jitter 2000000s is over the engine's maximum of 3600s")
    with pytest.raises(InputError, match="over the engine's maximum"):
        parse_netem_words("delay 9000000000s", LinkParams())
    with pytest.raises(InputError, match="outside the engine's 1kbit..10tbit"):
        parse_netem_words("rate 1bit", LinkParams())


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("delay: 3601s", "links.l.delay: delay 3601s is over the engine's maximum of 3600s"),
        ("jitter: 1e5s", "links.l.jitter: jitter 100000s is over the engine's maximum"),
        ("rate: 999bit", "links.l.rate: rate 999bit is outside the engine's 1kbit..10tbit"),
        ("rate: 2tbps", "links.l.rate: rate 16tbit is outside"),
        ("limit_bytes: 4gb", "links.l.limit_bytes: limit_bytes 4294967296 is over the engine's maximum"),
        ("limit: 4294967296", "links.l.limit: 4294967296 is outside 0..4294967295"),
        ("overhead: 1001", "links.l.overhead: 1001 is outside 0..1000"),
        ("length_km: 1e12", "links.l.length_km: length '1e12' is not a distance"),  # YAML 1.1: a float needs a dot
        ("length_km: 1000000000000", "links.l.length_km: length 1000000000000 km gives a delay of"),
        ("duplicate: 100.5%", "links.l.duplicate: duplicate '100.5%': duplicate is over 100%"),
    ],
)
def test_link_values_beyond_the_engine_are_refused(field: str, message: str) -> None:
    refused(BASE.replace("delay: 1ms", field), "s.yaml:5: " + message)


def test_the_edges_of_the_ranges_are_accepted() -> None:
    text = BASE.replace("delay: 1ms", "delay: 3600s, jitter: 3600s, rate: 1kbit, duplicate: 100%, corrupt: 100%, reorder: 100%")
    params = parse_scenario(text, source="s.yaml").topology.link("l").a_to_b
    assert (params.delay_ns, params.rate_bps, params.duplicate, params.corrupt, params.reorder) == (3600 * 10**9, 1000, 1.0, 1.0, 1.0)
    assert parse_scenario(BASE.replace("delay: 1ms", "rate: 10tbit"), source="s.yaml").topology.link("l").a_to_b.rate_bps == 10**13


def test_duration_is_bounded_by_what_a_run_can_last() -> None:
    refused(BASE + "duration: 86401s\n", "s.yaml:6: duration: duration 86401s is over the 86400s a run may last")
    assert parse_scenario(BASE + "duration: 86400s\n", source="s.yaml").duration_ns == 86400 * 10**9


def test_probe_streams_are_bounded() -> None:
    refused(BASE + "duration: 86400s\ntraffic:\n  p: {kind: probe, from: a, to: b, rate_pps: 20kpps}\n",
            "s.yaml:8: traffic.p.rate_pps: the probe stream sends 1728000000 probes", "more than the 2000000")
    refused(BASE + "duration: 1s\ntraffic:\n  u: {kind: udp, from: a, to: b, rate_bps: 20tbit}\n",
            "s.yaml:8: traffic.u.rate_bps: udp rate 20tbit is over 10tbit")


# --- BFD: each daemon's own range ----------------------------------------------


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        ("{protocol: ospf, bfd: {interval: 1us}}", "routing.bfd.interval: BFD interval 1us is outside BIRD's 1ms..4294.967295s"),
        ("{protocol: ospf, bfd: {interval: 4295s}}", "routing.bfd.interval: BFD interval 4295s is outside BIRD's"),
        ("{protocol: ospf, daemon: frr, bfd: {interval: 5ms}}", "routing.bfd.interval: BFD interval 5ms is not whole milliseconds from 10 to 60000"),
        ("{protocol: ospf, daemon: frr, bfd: {interval: 100ms, multiplier: 1}}", "routing.bfd.multiplier: FRR's bfdd takes a BFD detect multiplier of 2..255, not 1"),
        ("{protocol: ospf, bfd: {multiplier: 256}}", "routing.bfd.multiplier: 256 is outside 1..255"),
    ],
)
def test_bfd_timers_are_the_daemons_own(routing: str, message: str) -> None:
    refused(f"routing: {routing}\n" + BASE, "s.yaml:1: " + message)


def test_bfd_edges_are_accepted() -> None:
    topology = parse_scenario("routing: {protocol: ospf, bfd: {interval: 1ms, multiplier: 1}}\n" + BASE, source="s.yaml").topology
    assert topology.routing is not None and topology.routing.bfd is not None and topology.routing.bfd.interval_ns == 10**6
    frr = parse_scenario("routing: {protocol: ospf, daemon: frr, bfd: {interval: 10ms, multiplier: 2}}\n" + BASE, source="s.yaml")
    assert frr.topology.routing is not None and frr.topology.routing.bfd is not None


# --- bounded work: the timeline ------------------------------------------------------


def test_a_flap_faster_than_the_floor_is_refused() -> None:
    refused(EVENTS + "  - {at: 1s, flap: l, period: 2ns, count: 1000000}\n",
            "s.yaml:8: timeline[0].period: period 2ns makes a flap's down and up halves 1ns, shorter than the 1ms a run can play")
    refused(EVENTS + "  - {at: 1s, flap: l, period: 10ms, count: 3, mode: carrier}\n",
            "s.yaml:8: timeline[0].period: period 10ms makes a carrier flap's down and up halves 5ms, shorter than the 10ms")
    assert parse_scenario(EVENTS + "  - {at: 1s, flap: l, period: 2ms, count: 3}\n", source="s.yaml").timeline[0].count == 3


def test_the_timeline_steps_are_capped() -> None:
    ok = EVENTS + "  - {at: 1s, flap: l, period: 2ms, count: 4999}\n  - {at: 19s, cut: l}\n  - {at: 19.5s, restore: l}\n"
    assert len(parse_scenario(ok, source="s.yaml").steps()) == limits.MAX_TIMELINE_STEPS
    refused(ok + "  - {at: 19.6s, cut: l}\n", "s.yaml:11: timeline[3]: the timeline reaches 10001 steps here",
            "more than the 10000 a run plays")


# --- what a run could not measure is refused at validate time ----------------------


def test_traffic_between_nodes_no_links_join_is_refused() -> None:
    # found by the run-time mutation sweep (tests/mutation_sweep.py): a link end
    # moved so that a stream's two hosts were no longer joined passed validate and
    # then ended the run with an internal error when its path was looked up
    text = BASE.replace("  b: {role: router}\n", "  b: {role: router}\n  c: {role: host}\n") + (
        "duration: 5s\ntraffic:\n  p: {kind: probe, from: a, to: c}\n")
    refused(text, "s.yaml:9: traffic.p.to:", "no links join 'a' and 'c'", "add links")
