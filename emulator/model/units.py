"""Quantities with units, as tc and netem write them: `1.91ms`, `100mbit`, `0.5%`.

Parsing is exact: numbers go through `Decimal`, so `1.91ms` is 1 910 000 ns and
not 1 909 999. Every parser rejects a bare number, because a forgotten unit is
the commonest mistake in link configuration (is `delay: 5` seconds or ms?).
Formatting is lossless: `parse_time(format_time(ns)) == ns` and likewise for
rates, so `LinkParams.describe()` can be pasted back into `caspian link set`.

Parsing is bounded: the text's length and the number's magnitude are checked
before any arithmetic, so `1e1000000s` is refused at once instead of building
a million-digit integer (or overflowing Decimal). The ranges each quantity may
take (a delay's one hour, a rate's 10 Tbit/s) are `emulator.model.limits`'s,
checked by whoever knows what the quantity is for (`LinkParams`, the loader).
"""

from __future__ import annotations

import math
import re
from decimal import Context, Decimal, InvalidOperation

from emulator.errors import UnitError
from emulator.model.limits import MAX_QUANTITY_CHARS

#: time units in nanoseconds (tc's spellings plus `µs`).
TIME_UNITS: dict[str, int] = {
    "ns": 1, "nsec": 1, "nsecs": 1,
    "us": 1_000, "µs": 1_000, "usec": 1_000, "usecs": 1_000,
    "ms": 1_000_000, "msec": 1_000_000, "msecs": 1_000_000,
    "s": 1_000_000_000, "sec": 1_000_000_000, "secs": 1_000_000_000,
}  # fmt: skip

#: rate units in bit/s. As in tc, `*bit` are bits (SI or IEC prefixes) and
#: `*bps` are BYTES per second: `1mbps` is 8 000 000 bit/s.
RATE_UNITS: dict[str, int] = {
    "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
    "kibit": 2**10, "mibit": 2**20, "gibit": 2**30, "tibit": 2**40,
    "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9, "tbps": 8 * 10**12,
}  # fmt: skip

#: size units in bytes (tc's `limit`/`burst` convention: k = 1024).
SIZE_UNITS: dict[str, int] = {
    "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30,
}  # fmt: skip

_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([^\d\s.+-].*)?$")

#: Numbers at or above 10**(this + 1) in their own unit are refused before any
#: arithmetic: the largest quantity anything takes is 10 Tbit/s = 1e13 bit/s.
MAX_MAGNITUDE_EXPONENT = 20
#: Numbers below 10**this (in their unit) are 0: far below a nanosecond or a bit.
MIN_MAGNITUDE_EXPONENT = -40
#: Exact arithmetic for any number that passes the checks above (at most
#: MAX_QUANTITY_CHARS digits times a multiplier of at most 13 digits).
_EXACT = Context(prec=MAX_QUANTITY_CHARS + 40)


def _fail(field: str, text: object, problem: str, fix: str) -> UnitError:
    """A UnitError naming the field (if known) and the offending text."""
    what = f"{field} {text!r}" if field else repr(text)
    return UnitError(f"{what}: {problem}", where="", fix=fix)


def _split(text: object, field: str, kind: str, example: str) -> tuple[Decimal, str]:
    """Split `text` into (number, lower-case unit); the unit may be ''."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise _fail(field, text, f"is not a {kind}", f"write a {kind} such as {example}")
    if isinstance(text, float) and not math.isfinite(text):
        raise _fail(field, text, "is not finite", f"e.g. {example}")
    if isinstance(text, int) and abs(text) >= 10 ** (MAX_MAGNITUDE_EXPONENT + 1):
        digits = int(text.bit_length() * 0.30103) + 1  # str() of a huge int is itself refused
        what = f"{field} a {digits}-digit number" if field else f"a {digits}-digit number"
        raise UnitError(f"{what}: is far beyond any {kind} caspian takes", fix=f"e.g. {example}")
    if not isinstance(text, str):
        # A YAML number arrives here without the unit the user meant to write.
        return Decimal(repr(text)), ""
    if len(text) > MAX_QUANTITY_CHARS:
        raise _fail(field, text, f"is too long for a {kind} ({len(text)} characters)",
                    f"write a number and a unit, e.g. {example}")
    match = _QUANTITY.match(text.strip())
    if not match:
        raise _fail(field, text, f"is not a {kind}", f"write a number and a unit, e.g. {example}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid numbers
        raise _fail(field, text, f"is not a {kind}", f"e.g. {example}") from None
    if not number.is_finite():  # pragma: no cover - the regex admits no inf/nan
        raise _fail(field, text, "is not finite", f"e.g. {example}")
    # Bound the magnitude before anything multiplies it: Decimal("1e1000000") is
    # instant, but scaling it overflows, and its integer has a million digits.
    if number and number.adjusted() > MAX_MAGNITUDE_EXPONENT:
        raise _fail(field, text, f"is far beyond any {kind} caspian takes", f"e.g. {example}")
    if number and number.adjusted() < MIN_MAGNITUDE_EXPONENT:
        number = Decimal(0)
    return number, (match.group(2) or "").strip().lower()


def _scaled(
    text: object, field: str, kind: str, example: str, units: dict[str, int], bare: int | None
) -> int:
    """Parse `text` with `units` into an integer count of the base unit.

    `bare` is the multiplier of a unit-less number, or None to reject it.
    """
    number, unit = _split(text, field, kind, example)
    if not unit:
        if bare is None:
            raise _fail(field, text, "has no unit", f"add a unit, e.g. {example}")
        multiplier = bare
    elif unit in units:
        multiplier = units[unit]
    else:
        raise _fail(field, text, f"has an unknown unit {unit!r}", f"use one of {', '.join(units)}")
    if number < 0:
        raise _fail(field, text, f"negative {field or kind}", f"give a {kind} >= 0, e.g. {example}")
    # Round to the nearest base unit: sub-nanosecond or sub-bit precision means nothing here.
    return int(_EXACT.multiply(number, multiplier).to_integral_value(context=_EXACT))


def parse_time(text: object, *, field: str = "") -> int:
    """Parse a duration such as `1.91ms`, `50us`, `2s` into nanoseconds.

    A bare number is rejected (add a unit); so is a negative value.
    """
    return _scaled(text, field or "delay", "duration", "5ms", TIME_UNITS, None)


def parse_rate(text: object, *, field: str = "") -> int:
    """Parse a tc rate such as `100mbit`, `1gbit`, `10mbps` (bytes/s) into bit/s.

    Units are case-insensitive; `*bit` count bits, `*bps` count bytes as in tc.
    """
    return _scaled(text, field or "rate", "rate", "100mbit", RATE_UNITS, None)


def parse_size(text: object, *, field: str = "") -> int:
    """Parse a size such as `1500`, `64kb`, `1mb` into bytes (k = 1024; bare = bytes)."""
    return _scaled(text, field or "size", "size", "64kb", SIZE_UNITS, 1)


def parse_percent(text: object, *, field: str = "") -> float:
    """Parse a percentage such as `0.5%` into a probability in [0, 1].

    A bare number (`0.5`, also a YAML float) is rejected: `0.5` could mean 50 %
    or 0.5 %, and guessing wrong changes a loss rate a hundredfold.
    """
    label = field or "percentage"
    number, unit = _split(text, field, "percentage", "0.5%")
    if unit != "%":
        if not unit:
            raise _fail(field, text, "is not a percentage", "write it as a percentage, e.g. 0.5%")
        raise _fail(field, text, f"has unit {unit!r}, not %", "write it as a percentage, e.g. 0.5%")
    if number < 0:
        raise _fail(field, text, f"negative {label}", "give a percentage between 0% and 100%")
    if number > 100:
        raise _fail(field, text, f"{label} is over 100%", "give a percentage between 0% and 100%")
    return float(_EXACT.divide(number, 100))


def _plain(value: Decimal) -> str:
    """`value` in positional notation without trailing zeros (`1.91`, `100`)."""
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _format_scaled(value: int, units: tuple[tuple[str, int], ...]) -> str:
    """`value` in the largest unit of `units` it reaches (exact, no rounding)."""
    for name, size in units:
        if abs(value) >= size:
            return _plain(Decimal(value) / Decimal(size)) + name
    name, size = units[-1]
    return _plain(Decimal(value) / Decimal(size)) + name


def format_time(ns: int) -> str:
    """A duration in tc's words: `1.91ms`, `50us`, `0ns` (exact)."""
    return _format_scaled(ns, (("s", 10**9), ("ms", 10**6), ("us", 10**3), ("ns", 1)))


def format_rate(bps: int) -> str:
    """A rate in tc's words: `1gbit`, `100mbit`, `1.5kbit` (exact, SI prefixes)."""
    return _format_scaled(
        bps, (("tbit", 10**12), ("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3), ("bit", 1))
    )


def format_percent(p: float) -> str:
    """A probability as a percentage: 0.001 -> `0.1%`, 1e-5 -> `0.001%`."""
    # repr() is the shortest string that round-trips the float, so 0.001 stays 0.1 %.
    return _plain(Decimal(repr(float(p))) * 100) + "%"
