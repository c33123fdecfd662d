"""Mahimahi capacity traces: when the link may deliver a packet.

A trace file holds one integer per line: a time in milliseconds at which one
delivery opportunity of up to 1500 bytes occurs. Times never decrease; the
trace repeats with a period equal to its last time (so that time must be > 0).
Several opportunities may share a millisecond: that is how high rates are written.

Reading is bounded (emulator.model.limits): the file is at most
MAX_TRACE_BYTES, holds at most MAX_TRACE_OPPORTUNITIES times, and its period
is at most MAX_TRACE_PERIOD_MS, so the engine's int64 nanoseconds hold it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from emulator.errors import InputError
from emulator.model.limits import MAX_TRACE_BYTES, MAX_TRACE_OPPORTUNITIES, MAX_TRACE_PERIOD_MS, read_bounded

#: bytes one delivery opportunity may carry (Mahimahi's MTU-sized packet)
OPPORTUNITY_BYTES = 1500
#: digits of the largest time a trace may hold (MAX_TRACE_PERIOD_MS)
_MAX_DIGITS = len(str(MAX_TRACE_PERIOD_MS))


class TraceTimes(tuple[int, ...]):
    """A trace's times (ms) known to be valid: non-decreasing, >= 0, within the limits.

    A plain tuple to everything that reads it; its type only records that the
    check was done once, so `LinkParams` (re-validated on every change) does
    not walk a 2-million-entry trace again for each `set` event.
    """

    __slots__ = ()


def check_trace(times: Iterable[int]) -> TraceTimes:
    """`times` as TraceTimes, or InputError if they are no valid trace (without line numbers)."""
    if isinstance(times, TraceTimes):
        return times
    values = tuple(times)
    if len(values) > MAX_TRACE_OPPORTUNITIES:
        raise InputError(f"capacity trace has {len(values)} times, more than the engine takes ({MAX_TRACE_OPPORTUNITIES})",
                         fix="use a shorter trace")
    previous = 0
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < previous:
            raise InputError("capacity trace times must be non-negative and non-decreasing",
                             fix="use a Mahimahi trace with times in ms")
        previous = value
    if not values:
        return TraceTimes()
    if values[-1] <= 0:
        raise InputError("capacity trace must end after 0 ms", fix="use a Mahimahi trace with times in ms")
    if values[-1] > MAX_TRACE_PERIOD_MS:
        raise InputError(f"capacity trace period {values[-1]} ms is over the engine's {MAX_TRACE_PERIOD_MS} ms, an hour",
                         fix="use a trace of at most an hour")
    return TraceTimes(values)


def parse_trace(text: str, *, source: str) -> TraceTimes:
    """Parse Mahimahi trace `text`; errors name `source:line`.

    Blank lines are skipped (files often end with one); anything else that is
    not a non-negative integer is an error, and so is a trace beyond the
    engine's limits (see the module docstring).
    """
    times: list[int] = []
    last_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not (line.isascii() and line.isdigit()):
            raise InputError(
                f"{line!r} is not a time in whole milliseconds",
                where=f"{source}:{number}",
                fix="a Mahimahi trace has one non-negative integer (ms) per line",
            )
        if len(line.lstrip("0")) > _MAX_DIGITS or int(line) > MAX_TRACE_PERIOD_MS:  # digits first: int() of 5000 digits is refused
            raise InputError(
                f"time {line[:20]}{'...' if len(line) > 20 else ''} ms is over the engine's {MAX_TRACE_PERIOD_MS} ms, an hour",
                where=f"{source}:{number}",
                fix="a trace's period is at most an hour",
            )
        if len(times) == MAX_TRACE_OPPORTUNITIES:
            raise InputError(
                f"more than {MAX_TRACE_OPPORTUNITIES} delivery opportunities",
                where=f"{source}:{number}",
                fix="use a shorter trace",
            )
        value = int(line)
        if times and value < times[-1]:
            raise InputError(
                f"time {value} ms is earlier than the line before ({times[-1]} ms)",
                where=f"{source}:{number}",
                fix="times in a Mahimahi trace must not decrease",
            )
        times.append(value)
        last_line = number
    if not times:
        raise InputError("capacity trace is empty", where=f"{source}:1", fix="give one time in ms per line")
    if times[-1] == 0:
        raise InputError(
            "the last time is 0 ms, so the trace has no period",
            where=f"{source}:{last_line}",
            fix="the trace repeats every (last time) ms; end it after 0 ms",
        )
    return TraceTimes(times)


def decode_trace(data: bytes, *, source: str) -> TraceTimes:
    """Parse a trace file's bytes: ASCII text, a non-ASCII byte named by line and offset."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not ASCII: not a text file",
            where=f"{source}:{line}",
            fix="a Mahimahi trace has one integer per line",
        ) from None
    return parse_trace(text, source=source)


def load_trace(path: str | Path) -> TraceTimes:
    """Read and parse the Mahimahi trace file at `path` (a regular file of at most MAX_TRACE_BYTES)."""
    data = read_bounded(path, max_bytes=MAX_TRACE_BYTES, what="capacity trace")
    return decode_trace(data, source=str(path))


def trace_period_ms(trace: tuple[int, ...]) -> int:
    """The period after which `trace` repeats, ms (its last time)."""
    return trace[-1]


def trace_mean_rate_bps(trace: tuple[int, ...]) -> float:
    """The mean capacity of `trace` in bit/s: opportunities x 1500 B over one period."""
    if not trace or trace[-1] <= 0:
        raise InputError("a capacity trace needs at least one time and a last time > 0")
    return len(trace) * OPPORTUNITY_BYTES * 8 / (trace[-1] / 1000)


def make_constant_trace(rate_bps: float, period_ms: int = 1000) -> tuple[int, ...]:
    """A trace of constant `rate_bps`: the right number of opportunities spread evenly.

    The count is rounded to whole opportunities per period, so pick a period
    long enough for the precision you need (1 s gives steps of 12 kbit/s).
    """
    if period_ms <= 0:
        raise InputError(f"trace period {period_ms} ms is not positive", fix="give a period >= 1 ms")
    count = round(rate_bps * period_ms / 1000 / (OPPORTUNITY_BYTES * 8))
    if count < 1:
        raise InputError(
            f"rate {rate_bps:g} bit/s gives no delivery opportunity in {period_ms} ms",
            fix="raise the rate or lengthen the period",
        )
    # Opportunity i falls at floor(i * period / count): evenly spread, the last one exactly
    # at the period, so the period (and hence the mean rate) is what was asked for.
    return tuple(i * period_ms // count for i in range(1, count + 1))
