"""netem's words (`delay 5ms 1ms 25% loss 1% rate 1gbit`) to `LinkParams`.

Shared by `caspian link set` and the `netem:` field of topology files, so both
speak the same language as `tc qdisc ... netem` where caspian models the same
thing, and reject (rather than silently ignore) what it does not model.

Omitted Gilbert–Elliott and 4-state parameters take iproute2's defaults, read
from iproute2's tc/q_netem.c (netem_parse_opt, "set defaults" blocks):
- `loss gemodel p [r [1-h [1-k]]]`: r = 1 - p, 1-h = 100 %, 1-k = 0 %.
  (q_netem.c stores h = 0 in the kernel, which means loss 1-h = 100 % in the
  bad state; and k1 = 0, i.e. no loss in the good state.)
- `loss state p13 [p31 [p32 [p23 [p14]]]]`: p31 = 1 - p13, p32 = 0,
  p23 = 100 %, p14 = 0.
Their meaning is the kernel's net/sched/sch_netem.c: loss_gilb_ell() moves
good->bad with p, bad->good with r, and then loses with 1-k in good and 1-h
in bad; loss_4state() has states 1 = transmitting in a gap, 2 = transmitting
in a burst, 3 = lost in a burst, 4 = isolated loss in a gap, with p13/p14
leaving state 1 (to a lost state), p23 from 2 to 3, p31/p32 from 3 back to 1
or 2; state 4 always returns to 1.
"""

from __future__ import annotations

import difflib
from typing import Callable

from emulator.errors import InputError
from emulator.model.limits import MAX_NUMBER_DIGITS, MAX_SEED
from emulator.model.linkparams import DISTRIBUTIONS, LinkParams, LossModel
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


def _probabilities(words: _Words, model: str, names: tuple[str, ...], defaults: Callable[[float], list[float]]) -> LossModel:
    """`loss MODEL first [more...]`: the first is required, the rest default as in iproute2."""
    first = parse_percent(words.take(f"loss {model}", f"loss {model} 1%"), field=f"loss {model} {names[0]}")
    values = [first, *defaults(first)]
    for index, name in enumerate(names[1:], start=1):
        if not words.next_is_number():
            break
        values[index] = parse_percent(words.take(f"loss {model}", ""), field=f"loss {model} {name}")
    return LossModel(model, tuple(values))


def _loss(words: _Words, changes: dict) -> None:
    kind = words.take("loss", "loss 1%")
    if kind == "gemodel":
        changes["loss"] = _probabilities(
            words, "gemodel", ("p", "r", "1-h", "1-k"), lambda p: [1.0 - p, 1.0, 0.0]
        )
        return
    if kind == "state":
        changes["loss"] = _probabilities(
            words, "state", ("p13", "p31", "p32", "p23", "p14"), lambda p13: [1.0 - p13, 0.0, 1.0, 0.0]
        )
        return
    if kind == "random":
        kind = words.take("loss random", "loss random 1%")
    probability = parse_percent(kind, field="loss")
    words.reject_correlation("loss")
    changes["loss"] = LossModel("random", (probability,)) if probability else LossModel()


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
