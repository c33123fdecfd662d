"""netem's words (`delay 5ms 1ms 25% loss 1% rate 1gbit`) to `LinkParams`.

Shared by `caspian link set` and the `netem:` field of topology files, so both
speak the same language as `tc qdisc ... netem` where caspian models the same
thing, and reject (rather than silently ignore) what it does not model.

The loss models and their omitted parameters' defaults are emulator.model.loss's.
"""

from __future__ import annotations

import difflib
from typing import Callable

from emulator.errors import InputError
from emulator.model.limits import MAX_NUMBER_DIGITS, MAX_SEED
from emulator.model.linkparams import DISTRIBUTIONS, LinkParams
from emulator.model.loss import read_loss
from emulator.model.units import parse_percent, parse_rate, parse_size, parse_time


class _Words:
    """A cursor over the words, with the checks every keyword needs."""

    def __init__(self, words: list[str]) -> None:
        self._words = words
        self._at = 0

    def __bool__(self) -> bool:
        return self._at < len(self._words)

    def take(self, keyword: str, example: str) -> str:
        """The next word, which `keyword` needs as its value."""
        if not self:
            raise InputError(f"{keyword} needs a value", fix=f"e.g. {example}")
        word = self._words[self._at]
        self._at += 1
        return word

    def next_is_number(self) -> bool:
        """True if the next word starts like a number (iproute2's NEXT_IS_NUMBER)."""
        return bool(self) and self._words[self._at][:1] in "0123456789."

    def reject_correlation(self, keyword: str) -> None:
        """netem lets `loss|duplicate|corrupt|reorder P` take a correlation; we do not model it."""
        if self.next_is_number():
            extra = self._words[self._at]
            raise InputError(
                f"{keyword} correlation {extra!r} is not modelled",
                fix="drop the second percentage; for bursty loss use 'loss gemodel p r 1-h 1-k'"
                if keyword == "loss"
                else "drop the second percentage",
            )


def _integer(text: str, what: str, example: str) -> int:
    """A non-negative decimal integer (its range is LinkParams' to check, from emulator.model.limits)."""
    if not (text.isascii() and text.isdigit()):
        raise InputError(f"{what} {text!r} is not a whole number", fix=f"e.g. {example}")
    if len(text.lstrip("0")) > MAX_NUMBER_DIGITS:  # before int(): 5000 digits would take int() itself to refuse
        raise InputError(f"{what} is a {len(text)}-digit number, beyond any {what} the engine takes", fix=f"e.g. {example}")
    return int(text)


def _delay(words: _Words, changes: dict) -> None:
    changes["delay_ns"] = parse_time(words.take("delay", "delay 5ms"), field="delay")
    if words.next_is_number():
        changes["jitter_ns"] = parse_time(words.take("delay", ""), field="jitter")
        if words.next_is_number():
            changes["jitter_correlation"] = parse_percent(words.take("delay", ""), field="correlation")


def _jitter(words: _Words, changes: dict) -> None:
    changes["jitter_ns"] = parse_time(words.take("jitter", "jitter 1ms"), field="jitter")


def _correlation(words: _Words, changes: dict) -> None:
    changes["jitter_correlation"] = parse_percent(
        words.take("correlation", "correlation 25%"), field="correlation"
    )


def _distribution(words: _Words, changes: dict) -> None:
    name = words.take("distribution", "distribution normal")
    if name not in DISTRIBUTIONS:
        close = difflib.get_close_matches(name, DISTRIBUTIONS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(f"unknown jitter distribution {name!r}", fix=f"{hint}use one of {', '.join(DISTRIBUTIONS)}")
    changes["distribution"] = name


def _loss(words: _Words, changes: dict) -> None:
    changes["loss"] = read_loss(words)   # the loss kinds' table (emulator.model.loss)


def _percent_field(keyword: str) -> Callable[[_Words, dict], None]:
    def handler(words: _Words, changes: dict) -> None:
        changes[keyword] = parse_percent(words.take(keyword, f"{keyword} 1%"), field=keyword)
        words.reject_correlation(keyword)

    return handler


def _rate(words: _Words, changes: dict) -> None:
    changes["rate_bps"] = parse_rate(words.take("rate", "rate 100mbit"), field="rate")
    if words.next_is_number():  # tc: rate RATE [PACKETOVERHEAD ...]
        changes["overhead_bytes"] = _integer(words.take("rate", ""), "overhead", "rate 1gbit 24")


def _overhead(words: _Words, changes: dict) -> None:
    changes["overhead_bytes"] = _integer(words.take("overhead", "overhead 24"), "overhead", "overhead 24")


def _limit(words: _Words, changes: dict) -> None:
    changes["limit_packets"] = _integer(words.take("limit", "limit 1000"), "limit", "limit 1000")


def _limit_bytes(words: _Words, changes: dict) -> None:
    changes["limit_bytes"] = parse_size(words.take("limit_bytes", "limit_bytes 1mb"), field="limit_bytes")


def _seed(words: _Words, changes: dict) -> None:
    seed = _integer(words.take("seed", "seed 42"), "seed", "seed 42")
    if seed > MAX_SEED:
        raise InputError(f"seed {seed} does not fit in 64 bits", fix="give a seed below 2**64")
    changes["seed"] = seed


#: Every word, in the order `caspian link set --help` lists them.
_HANDLERS: dict[str, Callable[[_Words, dict], None]] = {
    "delay": _delay,
    "jitter": _jitter,
    "correlation": _correlation,
    "distribution": _distribution,
    "loss": _loss,
    "duplicate": _percent_field("duplicate"),
    "corrupt": _percent_field("corrupt"),
    "reorder": _percent_field("reorder"),
    "rate": _rate,
    "overhead": _overhead,
    "limit": _limit,
    "limit_bytes": _limit_bytes,
    "seed": _seed,
}

#: The words `parse_netem_words` understands.
NETEM_WORDS: tuple[str, ...] = tuple(_HANDLERS)


def parse_netem_words(words: list[str] | str, base: LinkParams) -> LinkParams:
    """Apply netem-like `words` to `base` and return the new parameters.

    Words not given keep `base`'s values; a word given twice takes the last
    value, as tc does. Unknown words raise InputError with a suggestion, and so
    do values beyond the engine's ranges (LinkParams checks them against
    emulator.model.limits, as it does for the YAML fields).
    """
    tokens = words.split() if isinstance(words, str) else [str(word) for word in words]
    cursor = _Words(tokens)
    changes: dict = {}
    while cursor:
        word = cursor.take("", "")
        handler = _HANDLERS.get(word)
        if handler is None:
            close = difflib.get_close_matches(word, NETEM_WORDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise InputError(f"unknown netem word {word!r}", fix=f"{hint}words: {', '.join(NETEM_WORDS)}")
        handler(cursor, changes)
    return base.replace(**changes)
