"""Packet-loss models: the table of kinds, `LossModel`, and netem's `loss` words.

Every loss model is one `LossKind` row in `LOSS_KINDS`: its netem name, the
names of its probabilities, the defaults iproute2 gives the ones left out,
and when it cannot drop. The rest follows from the table: `LossModel`
checks a model against it, `read_loss` reads `loss KIND p [q ...]` (for
`caspian link set`, the `loss:` and `netem:` fields), `LossModel.words()`
writes it back, and `LossModel.to_engine()` numbers it for the compiled
engine. The engine's half of a model, its per-packet decision, is the
case of the same number in `cext/loss.pxi`.

Adding a loss model: a row here, a case in `cext/loss.pxi`.

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

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from emulator.errors import InputError
from emulator.model.units import format_percent, parse_percent


@dataclass(frozen=True)
class LossKind:
    """One loss model: netem's name and the meaning of its probabilities."""

    name: str
    #: the probabilities' names, in netem's order (`loss NAME p1 p2 ...`)
    parameters: tuple[str, ...]
    #: the parameters after the first when left out, from the first (iproute2's defaults)
    defaults: Callable[[float], tuple[float, ...]] = lambda first: ()
    #: True when these probabilities can never drop a packet
    lossless: Callable[[tuple[float, ...]], bool] = lambda probabilities: False
    doc: str = ""


#: The loss models, in the engine's numbering (LOSS_* in cext/loss.pxi).
LOSS_KINDS: tuple[LossKind, ...] = (
    LossKind("none", (), lossless=lambda probabilities: True, doc="no loss"),
    LossKind("random", ("p",), lossless=lambda probabilities: probabilities[0] == 0.0,
             doc="independent (Bernoulli) loss with probability p"),
    LossKind("gemodel", ("p", "r", "1-h", "1-k"), lambda p: (1.0 - p, 1.0, 0.0),
             doc="Gilbert–Elliott: p = P(good→bad), r = P(bad→good), 1-h = loss in bad, 1-k = loss in good"),
    LossKind("state", ("p13", "p31", "p32", "p23", "p14"), lambda p13: (1.0 - p13, 0.0, 1.0, 0.0),
             doc="netem's 4-state Markov model"),
)

#: kind -> the number of probabilities it takes
LOSS_MODELS: dict[str, int] = {kind.name: len(kind.parameters) for kind in LOSS_KINDS}
#: the engine's loss_p holds this many probabilities (LOSS_PARAMS in cext/loss.pxi)
LOSS_PARAMS = max(LOSS_MODELS.values())
_BY_NAME = {kind.name: kind for kind in LOSS_KINDS}


@dataclass(frozen=True)
class LossModel:
    """A packet-loss model: its kind (a `LOSS_KINDS` name) and its probabilities, each in [0, 1]."""

    kind: str = "none"
    probabilities: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _BY_NAME:
            raise InputError(f"unknown loss model {self.kind!r}", fix=f"use one of {', '.join(LOSS_MODELS)}")
        want = LOSS_MODELS[self.kind]
        if len(self.probabilities) != want:
            raise InputError(f"loss model {self.kind} takes {want} probabilities, got {len(self.probabilities)}")
        for p in self.probabilities:
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                shown = f"{p * 100:g}%" if isinstance(p, (int, float)) else repr(p)
                raise InputError(f"loss probability {shown} is outside 0..100%",
                                 fix="give a percentage between 0% and 100%")

    @property
    def is_lossless(self) -> bool:
        """True when this model can never drop a packet."""
        return _BY_NAME[self.kind].lossless(self.probabilities)

    def words(self) -> str:
        """netem's words for this model (`loss 0.1%`, `loss gemodel 1% 25% 100% 0%`), "" when lossless."""
        if self.is_lossless:
            return ""
        if self.kind == "random":
            return f"loss {format_percent(self.probabilities[0])}"   # netem's short form
        return f"loss {self.kind} " + " ".join(format_percent(p) for p in self.probabilities)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "probabilities": list(self.probabilities)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "LossModel":
        data = data or {}
        return cls(data.get("kind", "none"), tuple(data.get("probabilities", ())))

    def to_engine(self) -> dict[str, Any]:
        """The engine's `loss_kind` (its number) and `loss_p` (LOSS_PARAMS values, zero-padded)."""
        return {"loss_kind": list(LOSS_MODELS).index(self.kind),
                "loss_p": list(self.probabilities) + [0.0] * (LOSS_PARAMS - len(self.probabilities))}


class Words(Protocol):
    """The netem word cursor (emulator.model.netem) as `read_loss` uses it."""

    def take(self, keyword: str, example: str) -> str: ...
    def next_is_number(self) -> bool: ...
    def reject_correlation(self, keyword: str) -> None: ...


def read_loss(words: Words) -> LossModel:
    """The words after `loss`: `P`, `random P`, or `KIND first [more...]` for a kind
    with several probabilities, the ones left out taking the kind's defaults."""
    word = words.take("loss", "loss 1%")
    kind = _BY_NAME.get(word)
    if kind is not None and len(kind.parameters) > 1:
        first = parse_percent(words.take(f"loss {word}", f"loss {word} 1%"), field=f"loss {word} {kind.parameters[0]}")
        values = [first, *kind.defaults(first)]
        for index, name in enumerate(kind.parameters[1:], start=1):
            if not words.next_is_number():
                break
            values[index] = parse_percent(words.take(f"loss {word}", ""), field=f"loss {word} {name}")
        return LossModel(word, tuple(values))
    if word == "random":
        word = words.take("loss random", "loss random 1%")
    probability = parse_percent(word, field="loss")
    words.reject_correlation("loss")
    return LossModel("random", (probability,)) if probability else LossModel()
