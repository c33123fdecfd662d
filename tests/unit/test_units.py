"""Units: tc's spellings, exact decimal parsing, lossless formatting."""

import pytest

from emulator.errors import UnitError
from emulator.model.units import (
    format_percent,
    format_rate,
    format_time,
    parse_percent,
    parse_rate,
    parse_size,
    parse_time,
)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1.91ms", 1_910_000), ("50us", 50_000), ("50µs", 50_000), ("50usec", 50_000),
        ("7ns", 7), ("2msec", 2_000_000), ("1s", 10**9), ("1.5sec", 1_500_000_000),
        ("3secs", 3 * 10**9), ("0ms", 0), ("1MS", 1_000_000), (" 5 ms ", 5_000_000),
        (".5ms", 500_000), ("1e3us", 1_000_000),
    ],
)  # fmt: skip
def test_parse_time(text: str, ns: int) -> None:
    assert parse_time(text) == ns


@pytest.mark.parametrize(
    ("text", "message", "fix"),
    [
        ("5", "has no unit", "add a unit, e.g. 5ms"),
        ("-5ms", "negative delay", ">= 0"),
        ("5parsecs", "unknown unit 'parsecs'", "ms"),
        ("fast", "is not a duration", "5ms"),
        ("", "is not a duration", "5ms"),
        ("1.2.3ms", "is not a duration", "5ms"),
    ],
)
def test_parse_time_rejects_with_a_fix(text: str, message: str, fix: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_time(text, field="delay")
    assert message in str(info.value) and fix in info.value.fix
    assert "delay" in str(info.value) and repr(text) in str(info.value)


@pytest.mark.parametrize("value", [5, 0.5, True, None, [1]])
def test_parse_time_rejects_yaml_non_strings(value: object) -> None:
    with pytest.raises(UnitError):
        parse_time(value, field="jitter")


def test_field_name_is_in_message() -> None:
    with pytest.raises(UnitError, match="jitter '-1ms': negative jitter"):
        parse_time("-1ms", field="jitter")


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("1bit", 1), ("100kbit", 100_000), ("100mbit", 10**8), ("1gbit", 10**9), ("2tbit", 2 * 10**12),
        ("1kibit", 1024), ("1mibit", 2**20), ("1gibit", 2**30), ("1tibit", 2**40),
        ("1bps", 8), ("1kbps", 8000), ("10mbps", 8 * 10**7), ("1gbps", 8 * 10**9), ("1tbps", 8 * 10**12),
        ("1Gbit", 10**9), ("100MBIT", 10**8), ("1.5mbit", 1_500_000),
    ],
)  # fmt: skip
def test_parse_rate(text: str, bps: int) -> None:
    assert parse_rate(text) == bps


def test_parse_rate_unknown_unit_lists_units() -> None:
    with pytest.raises(UnitError) as info:
        parse_rate("10furlongs", field="rate")
    assert "unknown unit 'furlongs'" in str(info.value)
    assert "gbit" in info.value.fix and "kibit" in info.value.fix and "mbps" in info.value.fix


@pytest.mark.parametrize("text", ["100", "-1mbit", 100])
def test_parse_rate_rejects(text: object) -> None:
    with pytest.raises(UnitError):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1500", 1500), (1500, 1500), ("64b", 64), ("1k", 1024), ("1kb", 1024), ("1mb", 2**20), ("2m", 2**21),
     ("1g", 2**30), ("1GB", 2**30), ("0", 0)],
)  # fmt: skip
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["-1kb", "1tb", "lots", 1.5j])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(UnitError):
        parse_size(text, field="limit_bytes")


@pytest.mark.parametrize(
    ("text", "p"),
    [("0.5%", 0.005), ("0%", 0.0), ("100%", 1.0), ("1%", 0.01), ("0.001%", 1e-5), ("25 %", 0.25)],
)
def test_parse_percent(text: str, p: float) -> None:
    assert parse_percent(text) == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.5", "is not a percentage"),
        (0.5, "is not a percentage"),
        (1, "is not a percentage"),
        ("101%", "over 100%"),
        ("-1%", "negative"),
        ("5ms", "not %"),
    ],
)
def test_parse_percent_rejects(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_percent(value, field="loss")
    assert message in str(info.value)
    assert info.value.fix.startswith(("write it as a percentage, e.g. 0.5%", "give a percentage"))


def test_bare_number_percentage_fix() -> None:
    with pytest.raises(UnitError) as info:
        parse_percent(0.5, field="loss")
    assert info.value.fix == "write it as a percentage, e.g. 0.5%"


@pytest.mark.parametrize(
    ("ns", "text"),
    [(1_910_000, "1.91ms"), (50_000, "50us"), (0, "0ns"), (7, "7ns"), (10**9, "1s"), (1_500, "1.5us"),
     (1_911_787, "1.911787ms"), (90 * 10**9, "90s")],
)  # fmt: skip
def test_format_time(ns: int, text: str) -> None:
    assert format_time(ns) == text
    assert parse_time(text) == ns


@pytest.mark.parametrize(
    ("bps", "text"),
    [(10**9, "1gbit"), (10**8, "100mbit"), (1_500, "1.5kbit"), (1, "1bit"), (0, "0bit"), (4 * 10**14, "400tbit")],
)
def test_format_rate(bps: int, text: str) -> None:
    assert format_rate(bps) == text
    assert parse_rate(text) == bps


@pytest.mark.parametrize(("p", "text"), [(0.001, "0.1%"), (1e-5, "0.001%"), (0.0, "0%"), (1.0, "100%"), (0.25, "25%")])
def test_format_percent(p: float, text: str) -> None:
    assert format_percent(p) == text
    assert parse_percent(text) == pytest.approx(p)


@pytest.mark.parametrize("ns", [1, 999, 1_000, 123_456_789, 10**12 + 1])
def test_time_round_trip(ns: int) -> None:
    assert parse_time(format_time(ns)) == ns
