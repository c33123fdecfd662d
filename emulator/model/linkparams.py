"""The parameters of one direction of an emulated link.

`LinkParams` is the single typed form every layer shares: the scenario parser
produces it, `caspian link set` edits it, the engine receives it as a plain
dict (`to_engine()`). Units are in the field names (`delay_ns`, `rate_bps`).
The per-packet order in which the engine applies these is netem's and is
written down once, in `cext/direction.pxi`.

Every LinkParams is checked against the engine's ranges
(`emulator.model.limits`) when it is made, so parameters from YAML fields,
netem words or `caspian link set` that validate are parameters the engine runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from emulator.errors import InputError
from emulator.model.limits import (
    MAX_DELAY_NS,
    MAX_JITTER_NS,
    MAX_LIMIT_BYTES,
    MAX_LIMIT_PACKETS,
    MAX_OVERHEAD_BYTES,
    MAX_RATE_BPS,
    MAX_SEED,
    MIN_RATE_BPS,
)
from emulator.model.loss import LossModel  # also imported from here (LinkParams.loss)
from emulator.model.trace import TraceTimes, check_trace
from emulator.model.units import format_percent, format_rate, format_time

#: Jitter distributions the engine implements (netem's names).
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")

#: Ethernet preamble + start delimiter (8 B) + inter-frame gap (12 B): what a frame
#: costs on the wire beyond the bytes AF_PACKET hands us (FCS is added separately).
DEFAULT_OVERHEAD_BYTES = 24  # 20 B preamble+IFG + 4 B FCS (AF_PACKET frames carry no FCS)

#: netem's default queue limit, in packets.
DEFAULT_LIMIT_PACKETS = 1000


@dataclass(frozen=True)
class LinkParams:
    """One direction of a link, in integer SI base units and probabilities in [0, 1]."""

    delay_ns: int = 0
    jitter_ns: int = 0
    #: correlation of successive jitter samples, 0..1 (AR(1), variance kept)
    jitter_correlation: float = 0.0
    distribution: str = "uniform"
    loss: LossModel = field(default_factory=LossModel)
    duplicate: float = 0.0
    corrupt: float = 0.0
    #: probability that a packet skips the delay line (netem `reorder`);
    #: any value > 0 also lets jitter reorder packets
    reorder: float = 0.0
    #: serialization rate in bit/s at L2 incl. overhead; 0 = unlimited
    rate_bps: int = 0
    overhead_bytes: int = DEFAULT_OVERHEAD_BYTES
    #: queue limit: packets waiting for serialization (0 = none)
    limit_packets: int = DEFAULT_LIMIT_PACKETS
    limit_bytes: int = 0
    #: Mahimahi capacity trace: delivery opportunities (1500 B each) in ms,
    #: repeating; replaces `rate_bps` when non-empty (kept as TraceTimes: checked once)
    trace_ms: tuple[int, ...] = ()
    #: engine PRNG seed for this direction; None = derived from the run seed
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("delay_ns", "jitter_ns", "rate_bps", "overhead_bytes", "limit_packets", "limit_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"{name} must be an integer, got {value!r}")
            if value < 0:
                raise InputError(f"{name.rsplit('_', 1)[0]} is negative ({value})", fix="give a value >= 0")
        self._check_engine_ranges()
        for name in ("jitter_correlation", "duplicate", "corrupt", "reorder"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                shown = f"{value * 100:g}%" if isinstance(value, (int, float)) else repr(value)
                raise InputError(f"{name} {shown} is outside 0..100%", fix="give a percentage between 0% and 100%")
        if self.distribution not in DISTRIBUTIONS:
            raise InputError(
                f"unknown jitter distribution {self.distribution!r}", fix=f"use one of {', '.join(DISTRIBUTIONS)}"
            )
        if not isinstance(self.trace_ms, TraceTimes):
            # Checked once and kept as TraceTimes: replace() copies it unchecked.
            object.__setattr__(self, "trace_ms", check_trace(self.trace_ms))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise InputError(f"seed {self.seed!r} is not a whole number from 0 to 2**64-1", fix="e.g. seed 42")

    def _check_engine_ranges(self) -> None:
        """The engine's ranges (emulator.model.limits), with the reason in the fix."""
        for name, what, limit in (("delay_ns", "delay", MAX_DELAY_NS), ("jitter_ns", "jitter", MAX_JITTER_NS)):
            value = getattr(self, name)
            if value > limit:
                raise InputError(f"{what} {format_time(value)} is over the engine's maximum of {format_time(limit)}",
                                 fix=f"give at most {format_time(limit)}: the engine counts int64 nanoseconds")
        if self.rate_bps and not MIN_RATE_BPS <= self.rate_bps <= MAX_RATE_BPS:
            raise InputError(f"rate {format_rate(self.rate_bps)} is outside the engine's {format_rate(MIN_RATE_BPS)}"
                             f"..{format_rate(MAX_RATE_BPS)}",
                             fix=f"give {format_rate(MIN_RATE_BPS)} to {format_rate(MAX_RATE_BPS)}, or no rate for an unlimited link")
        for name, what, limit in (("overhead_bytes", "overhead", MAX_OVERHEAD_BYTES),
                                  ("limit_packets", "limit", MAX_LIMIT_PACKETS),
                                  ("limit_bytes", "limit_bytes", MAX_LIMIT_BYTES)):
            value = getattr(self, name)
            if value > limit:
                raise InputError(f"{what} {value} is over the engine's maximum of {limit}", fix=f"give 0..{limit}")

    def replace(self, **changes: Any) -> "LinkParams":
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (inverse of `from_dict`), used across processes."""
        data = dataclasses.asdict(self)
        data["loss"] = self.loss.to_dict()
        data["trace_ms"] = list(self.trace_ms)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LinkParams":
        """Rebuild LinkParams from `to_dict()` output (validated again)."""
        fields = dict(data)
        fields["loss"] = LossModel.from_dict(fields.pop("loss", None))
        fields["trace_ms"] = tuple(fields.get("trace_ms", ()))
        return cls(**fields)

    def to_engine(self) -> dict[str, Any]:
        """The plain dict the compiled engine takes (no Python objects beyond numbers)."""
        return {
            "delay_ns": self.delay_ns,
            "jitter_ns": self.jitter_ns,
            "jitter_correlation": self.jitter_correlation,
            "distribution": DISTRIBUTIONS.index(self.distribution),
            **self.loss.to_engine(),
            "duplicate": self.duplicate,
            "corrupt": self.corrupt,
            "reorder": self.reorder,
            "rate_bps": self.rate_bps,
            "overhead_bytes": self.overhead_bytes,
            "limit_packets": self.limit_packets,
            "limit_bytes": self.limit_bytes,
            "trace_ms": list(self.trace_ms),
        }

    def describe(self) -> str:
        """tc/netem-like words for this direction (`delay 1.91ms loss 0.001%`)."""

        words: list[str] = [f"delay {format_time(self.delay_ns)}"]
        if self.jitter_ns:
            words.append(f"jitter {format_time(self.jitter_ns)}")
            if self.jitter_correlation:
                words.append(f"correlation {format_percent(self.jitter_correlation)}")
            words.append(f"distribution {self.distribution}")
        if self.loss.words():
            words.append(self.loss.words())
        for name in ("duplicate", "corrupt", "reorder"):
            if getattr(self, name):
                words.append(f"{name} {format_percent(getattr(self, name))}")
        if self.trace_ms:
            words.append(f"trace {len(self.trace_ms)} opportunities/{self.trace_ms[-1]}ms")
        elif self.rate_bps:
            words.append(f"rate {format_rate(self.rate_bps)}")
        if self.limit_packets:
            words.append(f"limit {self.limit_packets}")
        if self.limit_bytes:
            words.append(f"limit_bytes {self.limit_bytes}")
        return " ".join(words)
