"""Mahimahi capacity traces."""

from pathlib import Path

import pytest

from emulator.errors import InputError
from emulator.model.linkparams import LinkParams
from emulator.model.trace import load_trace, make_constant_trace, parse_trace, trace_mean_rate_bps


def test_parse_simple_trace() -> None:
    assert parse_trace("1\n1\n2\n5\n", source="t") == (1, 1, 2, 5)


def test_blank_lines_and_spaces_are_ignored() -> None:
    assert parse_trace("0\n\n 3 \n\n", source="t") == (0, 3)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("", "t:1", "empty"),
        ("\n\n", "t:1", "empty"),
        ("1\nx\n", "t:2", "'x' is not a time"),
        ("1\n2.5\n", "t:2", "not a time"),
        ("1\n-3\n", "t:2", "not a time"),
        ("1\n5\n4\n", "t:3", "earlier than the line before"),
        ("0\n0\n", "t:2", "last time is 0"),
        ("1\n²\n", "t:2", "not a time"),
    ],
)
def test_bad_traces_name_the_line(text: str, where: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_trace(text, source="t")
    assert info.value.where == where
    assert message in str(info.value)
    assert info.value.fix


def test_load_trace(tmp_path: Path) -> None:
    path = tmp_path / "link.trace"
    path.write_text("1\n2\nbad\n")
    with pytest.raises(InputError, match=rf"{path}:3"):
        load_trace(path)
    path.write_text("1\n2\n")
    assert load_trace(str(path)) == (1, 2)


def test_load_missing_or_binary_trace(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_trace(tmp_path / "nope.trace")
    binary = tmp_path / "bin.trace"
    binary.write_bytes(b"\xff\xfe1\n")
    with pytest.raises(InputError, match="not a text file"):
        load_trace(binary)


def test_mean_rate() -> None:
    # 1000 opportunities of 1500 B per 1000 ms = 12 Mbit/s
    assert trace_mean_rate_bps(tuple(range(1, 1001))) == pytest.approx(12e6)
    assert trace_mean_rate_bps((10,)) == pytest.approx(1500 * 8 / 0.01)


def test_mean_rate_rejects_empty() -> None:
    with pytest.raises(InputError):
        trace_mean_rate_bps(())


@pytest.mark.parametrize(("rate", "period"), [(12e6, 1000), (100e6, 1000), (1e9, 100), (24_000, 1000), (48e6, 7)])
def test_constant_trace(rate: float, period: int) -> None:
    trace = make_constant_trace(rate, period)
    assert trace[-1] == period
    assert list(trace) == sorted(trace) and trace[0] >= 0
    assert trace_mean_rate_bps(trace) == pytest.approx(rate, rel=0.01)
    # the engine accepts it
    assert LinkParams(trace_ms=trace).trace_ms == trace
    # evenly spread: no millisecond holds more than its share plus one
    counts = [trace.count(ms) for ms in set(trace)]
    assert max(counts) <= len(trace) / period + 1


def test_constant_trace_round_trips_through_text() -> None:
    trace = make_constant_trace(36e6, 100)
    assert parse_trace("\n".join(map(str, trace)) + "\n", source="t") == trace


@pytest.mark.parametrize(("rate", "period"), [(1.0, 1000), (12e6, 0)])
def test_constant_trace_rejects(rate: float, period: int) -> None:
    with pytest.raises(InputError):
        make_constant_trace(rate, period)


def test_the_run_queue_wait_is_read_from_schedstat() -> None:
    from emulator.routing.trace import runqueue_wait_ns

    first = runqueue_wait_ns()
    sum(range(200_000))           # run a little: the figure only grows
    assert isinstance(first, int) and 0 <= first <= runqueue_wait_ns()
