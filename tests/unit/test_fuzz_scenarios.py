"""Fuzzing the scenario loader: whatever the input, a Scenario or one ScenarioError line.

Hypothesis mutates every shipped scenario (scenarios/*.yaml, emulator/data/*.yaml)
as text, as bytes in a file, and as a parsed tree re-dumped to YAML, and
generates YAML from the loader's own key tables. For every input the loader
must either return a Scenario the engine can run (its values inside
`emulator.model.limits`) or raise an InputError whose message is one printable
line naming FILE:LINE; any other exception is a bug, and so is a load that
takes more than LOAD_CPU_S of CPU (or hangs: a wall-clock alarm stops it).

Seeded (derandomize: the same examples every run) and short in the normal suite;
`make fuzz` (CASPIAN_FUZZ_EXAMPLES=10000) runs each property that many times and
prints how many inputs were accepted and refused.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.errors import InputError
from emulator.model import limits
from emulator.model.linkparams import LinkParams
from emulator.scenario import loader
from emulator.scenario.assertions import ASSERTION_FIELDS
from emulator.scenario.links import LINK_FIELDS
from emulator.scenario.loader import load_scenario, parse_scenario
from emulator.scenario.nodes import NODE_FIELDS
from emulator.scenario.routing_section import BFD_FIELDS, ROUTING_FIELDS
from emulator.scenario.timeline import EVENT_FIELDS
from emulator.scenario.traffic import TRAFFIC_FIELDS
from emulator.scenario.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml")) + sorted((ROOT / "emulator" / "data").glob("*.yaml"))
TEXTS = {path.name: path.read_text(encoding="utf-8") for path in SHIPPED}
SOURCE = "fuzz.yaml"
#: CPU seconds one load may take (the largest shipped file takes ~10 ms).
LOAD_CPU_S = 2.0
#: Wall seconds after which a load counts as a hang (generous: the suite shares 2 cores).
HANG_S = 20
#: Examples per property: CASPIAN_FUZZ_EXAMPLES (make fuzz), else each test's own small number.
FUZZ_EXAMPLES = int(os.environ.get("CASPIAN_FUZZ_EXAMPLES", "0") or 0)
#: A refusal names the file and line first (`fuzz.yaml:12: ...`), or, for a file
#: that could not be read at all, the file in its first words.
LOCATED = re.compile(rf"^{re.escape(SOURCE)}:\d+(: |$)")

COUNTS: Counter[str] = Counter()


def fuzz_settings(normal: int) -> settings:
    """Seeded, bounded settings: `normal` examples in the unit suite, FUZZ_EXAMPLES under make fuzz."""
    return settings(
        max_examples=FUZZ_EXAMPLES or normal,
        deadline=None,  # timed by check() itself, on CPU time, so a busy machine is no failure
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


class Hang(Exception):
    """The load ran longer than HANG_S of wall time."""


def _expired(signum: int, frame: object) -> None:
    raise Hang(f"a load took more than {HANG_S} s")


def check(load: Any, located: re.Pattern[str] = LOCATED, kind: str = "text") -> None:
    """Run `load()`: a runnable Scenario or a located one-line InputError, in bounded time."""
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(HANG_S)
    cpu = time.process_time()
    try:
        scenario = load()
    except InputError as exc:
        message = str(exc)
        assert message.isprintable(), f"not one printable line: {message!r}"
        assert located.match(message), f"no FILE:LINE: {message!r}"
        COUNTS[f"{kind} refused"] += 1
    else:
        assert isinstance(scenario, Scenario)
        assert_runnable(scenario)
        COUNTS[f"{kind} accepted"] += 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    spent = time.process_time() - cpu
    assert spent < LOAD_CPU_S, f"a load took {spent:.2f} s of CPU"


def assert_params_runnable(params: LinkParams) -> None:
    """What the engine's C types and `limits` allow, checked apart from the loader's own code."""
    engine = params.to_engine()
    for name in ("delay_ns", "jitter_ns", "rate_bps", "overhead_bytes", "limit_packets", "limit_bytes"):
        assert 0 <= engine[name] < 2**63, (name, engine[name])
    assert engine["delay_ns"] <= limits.MAX_DELAY_NS and engine["jitter_ns"] <= limits.MAX_JITTER_NS
    assert engine["rate_bps"] == 0 or limits.MIN_RATE_BPS <= engine["rate_bps"] <= limits.MAX_RATE_BPS
    for p in [engine["jitter_correlation"], engine["duplicate"], engine["corrupt"], engine["reorder"], *engine["loss_p"]]:
        assert 0.0 <= p <= 1.0, p
    trace = engine["trace_ms"]
    assert len(trace) <= limits.MAX_TRACE_OPPORTUNITIES and (not trace or 0 < trace[-1] <= limits.MAX_TRACE_PERIOD_MS)


def assert_runnable(scenario: Scenario) -> None:
    """An accepted scenario is inside the engine's and the run's bounds."""
    assert 0 < scenario.duration_ns <= limits.MAX_DURATION_NS
    assert 0 <= scenario.seed <= limits.MAX_SEED
    for link in scenario.topology.links:
        assert_params_runnable(link.a_to_b)
        assert_params_runnable(link.b_to_a)
    steps = scenario.steps()
    assert len(steps) <= limits.MAX_TIMELINE_STEPS
    for event in scenario.timeline:
        assert 0 <= event.at_ns <= scenario.duration_ns and event.end_ns <= scenario.duration_ns
        for params in (event.params, event.params_b_to_a):
            if params is not None:
                assert_params_runnable(params)
        if event.kind == "flap":
            floor = limits.MIN_CARRIER_FLAP_HALF_NS if event.mode == "carrier" else limits.MIN_FLAP_HALF_NS
            assert event.period_ns // 2 >= floor
    for spec in scenario.traffic:
        stop = spec.stop_ns if spec.stop_ns is not None else scenario.duration_ns
        if spec.kind == "probe":
            assert spec.rate_pps * (stop - spec.start_ns) / 1e9 <= limits.MAX_PROBE_PACKETS
        else:
            assert spec.rate_bps <= limits.MAX_RATE_BPS
    routing = scenario.topology.routing
    if routing is not None and routing.bfd is not None:
        low, high = limits.BFD_INTERVAL_NS[routing.daemon]
        assert low <= routing.bfd.interval_ns <= high
        low, high = limits.BFD_MULTIPLIER[routing.daemon]
        assert low <= routing.bfd.multiplier <= high


def parse(text: str) -> Scenario:
    return parse_scenario(text, source=SOURCE, base_dir=ROOT / "scenarios")


# ---------------------------------------------------------------------------
# What to put in: the inputs that broke the loader once, and their relatives

TOKENS = [
    "<<: *a", "&a ", "*a", "*nope", "!foo ", "!!binary ", "!!bool maybe", "!!python/object:os.system ", "! ",
    "\x00", "\x1b[31m", "\x07", "\n", "\t", "\r", "\ufeff", "\u2028", "\x85", "\udcff", "\U0010ffff",
    "1e1000000s", "1e999990s", "-1e999999999ms", ".inf", "-.inf", ".nan", "1.0e+400", "0b_", "0x", "0x2a", "010", "0o8",
    "2001-13-45", "2001-12-14 21:59:43.10 -5", "1:30", "9" * 5000, "9" * 41, "[" * 300, "]" * 3, "{" * 40, "}",
    ":", ": ", "- ", "? ", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "|\n", ">-\n",
    "~", "null", "yes", "no", "on", "0", "-1", "1ms", "0s", "2ns", "3600s", "3601s", "86401s", "1000000", "100%",
    "100.5%", "1e-9999ms", '"delay 9000000000s"', "delay 9000000000s", "1us", "4295s", "carrier", "both",
    "1kbit", "999bit", "20tbit", "20kpps", "4294967296", "=", "<<", "&b [*a, *a, *a, *a]", "/dev/zero", '"a\\0b"',
]  # fmt: skip
#: Values for the parsed-tree mutations: the loader's own vocabulary and the edges of its ranges.
WORDS = [
    "1ms", "0ns", "2ns", "1ms", "2ms", "10ms", "3600s", "3601s", "86400s", "86401s", "1e21s", "1e1000000s", "-5ms",
    "1kbit", "999bit", "10tbit", "11tbit", "0bit", "100%", "100.5%", "-1%", "0.5", "1000pps", "20kpps", "30kpps",
    "delay 9000000000s", "delay 5ms 1ms 25%", "loss gemodel 1% 2%", "rate 1bit", "limit 99999999999", "seed 1",
    "carrier", "silent", "both", "a_to_b", "bird", "frr", "ospf", "bgp", "static", "probe", "tcp", "udp", "1us",
    "4295s", "/dev/zero", "traces/caspian_40_8mbit.trace", "a\x00b", "a\nb\x1b[2J", "2001-12-14", "<<", ".inf", "",
]  # fmt: skip
KEYS = sorted({*loader.TOP_LEVEL, *LINK_FIELDS, *NODE_FIELDS, *TRAFFIC_FIELDS,
               *EVENT_FIELDS, *ASSERTION_FIELDS, *ROUTING_FIELDS, *BFD_FIELDS,
               "count", "period", "<<"})

token = st.one_of(st.sampled_from(TOKENS), st.text(max_size=12))
scalar = st.one_of(
    st.sampled_from(WORDS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=16),
)
tree = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=25,
)


def mutate_text(text: str, edits: list[tuple[int, int, int, str]]) -> str:
    """Apply (op, where, length, token) edits: insert, replace a span, delete a span, or replace a value."""
    for op, where, length, piece in edits:
        at = where % (len(text) + 1)
        if op == 0:
            text = text[:at] + piece + text[at:]
        elif op == 1:
            text = text[:at] + piece + text[at + length:]
        elif op == 2:
            text = text[:at] + text[at + length:]
        else:  # the value after the colon on the line at `at`
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            colon = text.find(": ", start, end)
            if colon >= 0:
                text = text[:colon + 2] + piece + text[end:]
    return text


edits = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 10**5), st.integers(0, 60), token), min_size=1, max_size=5
)


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    """Under make fuzz: how many inputs were read, accepted and refused (printed with -s)."""
    yield
    if FUZZ_EXAMPLES:
        total = sum(COUNTS.values())
        print(f"\nfuzzed {len(SHIPPED)} shipped files, {total} inputs: "
              + ", ".join(f"{key} {value}" for key, value in sorted(COUNTS.items())))


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A directory for byte-level inputs (module scope: hypothesis runs many examples per test)."""
    with tempfile.TemporaryDirectory(prefix="caspian-fuzz-") as name:
        (Path(name) / "traces").symlink_to(ROOT / "scenarios" / "traces")  # capacity_trace.yaml's trace
        yield Path(name)


# ---------------------------------------------------------------------------
# The properties


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_every_shipped_scenario_is_accepted_and_runnable(path: Path) -> None:
    assert_runnable(parse_scenario(TEXTS[path.name], source=SOURCE, base_dir=path.parent))


@fuzz_settings(150)
@given(name=st.sampled_from(sorted(TEXTS)), changes=edits)
def test_text_mutations_of_shipped_scenarios(name: str, changes: list[tuple[int, int, int, str]]) -> None:
    check(lambda: parse(mutate_text(TEXTS[name], changes)), kind="text")


def _walk(data: st.DataObject, node: Any, depth: int = 0) -> None:
    """Change one place of a parsed scenario: replace, delete or add a value (or go deeper)."""
    if isinstance(node, dict) and node:
        key = data.draw(st.sampled_from(list(node)))
        choice = data.draw(st.integers(0, 4))
        if choice == 0 or depth > 6:
            node[key] = data.draw(tree)
        elif choice == 1:
            del node[key]
        elif choice == 2:
            node[data.draw(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)))] = data.draw(tree)
        else:
            if isinstance(node[key], (dict, list)):
                _walk(data, node[key], depth + 1)
            else:
                node[key] = data.draw(scalar)
    elif isinstance(node, list) and node:
        index = data.draw(st.integers(0, len(node) - 1))
        if isinstance(node[index], (dict, list)) and data.draw(st.booleans()):
            _walk(data, node[index], depth + 1)
        elif data.draw(st.booleans()):
            node[index] = data.draw(tree)
        else:
            node.append(data.draw(tree))


@fuzz_settings(150)
@given(name=st.sampled_from(sorted(TEXTS)), data=st.data(), rounds=st.integers(1, 4))
def test_tree_mutations_of_shipped_scenarios(name: str, data: st.DataObject, rounds: int) -> None:
    document = yaml.safe_load(TEXTS[name])
    for _ in range(rounds):
        _walk(data, document)
    text = yaml.safe_dump(document, allow_unicode=data.draw(st.booleans()), sort_keys=False, width=10**6)
    check(lambda: parse(text), kind="tree")


TIMES = ["0s", "1ms", "2ms", "1s", "5s", "9.5s", "10s", "11s", "1e21s", "2ns", "-1s", "86400s"]
#: the shaping fields: (values the engine runs, values at or past the edges of its ranges)
SHAPING: dict[str, tuple[list[Any], list[Any]]] = {
    "delay": (["0ns", "1ms", "3600s"], ["3601s", "1e1000000s", 5]), "jitter": (["1ms", "3600s"], ["3601s"]),
    "correlation": (["25%", "100%"], ["101%"]), "distribution": (["normal", "pareto"], ["cauchy"]),
    "loss": (["1%", "100%", "gemodel 1% 2%", "state 1%", "random 0.5%"], [0.5, "1% 25%"]),
    "duplicate": (["100%", "1%"], ["100.5%"]), "corrupt": (["100%", "0%"], ["-1%"]), "reorder": (["100%"], ["1e999s"]),
    "rate": (["1kbit", "10tbit", "0bit", "100mbit"], ["999bit", "11tbit"]), "overhead": ([0, 1000], [1001, -1]),
    "limit": ([0, 4294967295], [4294967296]), "limit_bytes": (["1mb", "0"], ["4gb"]),
    "length_km": ([370, 0.5], [1e12, 10**13, ".inf"]), "preset": (["aktau-sumgait"], ["nope"]),
    "netem": (["delay 5ms 1ms 25% loss 1%", "rate 1kbit limit 0"], ["delay 9000000000s", "rate 1bit", "limit 99999999999"]),
    "trace": (["traces/caspian_40_8mbit.trace"], ["/dev/zero", "missing.trace"]),
}  # fmt: skip


def _value(valid: list[Any], edges: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value that runs, sometimes one at an edge, now and then anything."""
    return st.integers(0, 9).flatmap(
        lambda n: st.sampled_from(valid) if n < 6 else st.sampled_from(edges) if n < 9 else scalar)


def _fields(choices: dict[str, tuple[list[Any], list[Any]]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(st.sampled_from(sorted(choices)), max_size=3, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: _value(*choices[key]) for key in keys}))


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A mostly valid scenario (three nodes, two links) with fields drawn near their edges."""
    document: dict[str, Any] = {
        "nodes": {name: {"role": draw(st.sampled_from(["router", "router", "host"]))} for name in ("a", "b", "c")},
        "links": {"ab": {"ends": ["a", "b"], **draw(_fields(SHAPING))},
                  "bc": {"ends": ["b", "c"], "a_to_b": draw(_fields(SHAPING))}},
        "duration": draw(_value(["10s", "1s", "86400s"], ["86401s", "1e999990s", "0s"])),
    }
    routing = draw(st.sampled_from(["static", "static", "ospf", "bgp"]))
    if routing != "static":
        document["routing"] = {"protocol": routing}
        if routing == "ospf" and draw(st.booleans()):
            document["routing"]["daemon"] = "frr"
        if draw(st.booleans()):
            document["routing"]["bfd"] = {"interval": draw(_value(["10ms", "100ms", "60s"], ["1us", "1ms", "5ms", "4295s"])),
                                          "multiplier": draw(_value([2, 3, 255], [0, 1, 256]))}
    if draw(st.booleans()):
        document["traffic"] = {"p": {"kind": draw(st.sampled_from(["probe", "udp", "tcp"])), "from": "a", "to": "c"}}
        kind = document["traffic"]["p"]["kind"]
        rate_key = "rate_pps" if kind == "probe" else "rate_bps"
        document["traffic"]["p"][rate_key] = draw(_value(["1000pps", "20kpps"] if kind == "probe" else ["64kbit", "1mbit"],
                                                         ["20tbit", "1e30pps", "0bit"]))
    events = []
    for kind in draw(st.lists(st.sampled_from(["cut", "restore", "set", "flap"]), max_size=4)):
        event: dict[str, Any] = {"at": draw(_value(["0s", "1s", "5s"], TIMES)), kind: draw(st.sampled_from(["ab", "bc"]))}
        if kind == "flap":
            event["period"] = draw(_value(["2ms", "20ms", "1s"], ["2ns", "1ms", "19ms"]))
            event["count"] = draw(_value([1, 2, 100], [4999, 5000, 10**6, 0]))
            if draw(st.booleans()):
                event["mode"] = draw(st.sampled_from(["silent", "carrier"]))
        if kind == "set":
            event["netem"] = draw(_value(*SHAPING["netem"]))
        events.append(event)
    if events:
        document["timeline"] = events
    return document


@fuzz_settings(100)
@given(document=st.one_of(scenarios(), st.dictionaries(st.sampled_from(sorted(loader.TOP_LEVEL)), tree, max_size=6)),
       flow=st.booleans())
def test_generated_yaml(document: dict[str, Any], flow: bool) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow, sort_keys=False, width=10**6)
    check(lambda: parse(text), kind="generated")


@fuzz_settings(60)
@given(name=st.sampled_from(sorted(TEXTS)),
       changes=st.lists(st.tuples(st.integers(0, 10**5), st.binary(min_size=1, max_size=6)), min_size=1, max_size=4))
def test_byte_mutations_read_from_a_file(workdir: Path, name: str, changes: list[tuple[int, bytes]]) -> None:
    data = TEXTS[name].encode("utf-8")
    for where, piece in changes:
        at = where % (len(data) + 1)
        data = data[:at] + piece + data[at:]
    path = workdir / SOURCE
    path.write_bytes(data)
    check(lambda: load_scenario(path), re.compile(rf"^{re.escape(str(path))}:\d+(: |$)"), kind="bytes")
