"""Mahimahi capacity traces: when the link may deliver a packet.

A trace file holds one integer per line: a time in milliseconds at which one
delivery opportunity of up to 1500 bytes occurs. Times never decrease; the
trace repeats with a period equal to its last time (so that time must be > 0).
Several opportunities may share a millisecond: that is how high rates are written.
"""

from __future__ import annotations

from pathlib import Path

from emulator.errors import InputError

#: bytes one delivery opportunity may carry (Mahimahi's MTU-sized packet)
OPPORTUNITY_BYTES = 1500


def parse_trace(text: str, *, source: str) -> tuple[int, ...]:
    """Parse Mahimahi trace `text`; errors name `source:line`.

    Blank lines are skipped (files often end with one); anything else that is
    not a non-negative integer is an error.
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
    return tuple(times)


def load_trace(path: str | Path) -> tuple[int, ...]:
    """Read and parse the Mahimahi trace file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InputError(f"capacity trace {str(path)!r} does not exist", fix="check the path") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"capacity trace {str(path)!r} is not a text file ({exc.reason} at byte {exc.start})",
            fix="a Mahimahi trace has one integer per line",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read capacity trace {str(path)!r}: {exc.strerror}") from None
    return parse_trace(text, source=str(path))


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
