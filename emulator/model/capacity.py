"""A cable's capacity as it is built: fiber pairs x waves x wave rate, and how much is lit.

Pure functions and frozen data, no I/O. A link may declare its design
capacity (`Capacity`: fiber pairs, waves each pair can carry, the rate of one
wave), the part of it that is lit (`Lit`: pairs in service and waves lit on
each) and a scale factor that makes the link a scaled replica small enough
for this machine to forward (`scale`, or `fit`: the factor chosen from a
stated per-core budget). Failures take lit capacity away in the units a cable
loses it: a fiber pair (a cut fiber, a failed amplifier chain) or a number of
waves (transponders); `Outage` counts what is out of service.

The replica model is SHRiNK (R. Pan, B. Prabhakar, K. Psounis, D. Wischik,
"SHRiNK: a method for scaleable performance prediction and estimation in
networks", IEEE INFOCOM 2003): capacities, byte buffers and the traffic
offered are multiplied by the factor, delays are left alone, and the
queueing-delay and drop statistics of TCP-like traffic carry over; the limits
are in docs/capacity.md. Every rate here is in bit/s per direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from emulator.errors import InputError
from emulator.model.limits import MIN_RATE_BPS

#: What a 2-vCPU machine emulates faithfully with one engine loop beside the
#: nodes' stacks and TCP flows filling the link: 300 Mbit/s (scenarios/aktau_sumgait.yaml:
#: at 1 Gbit/s the machine, not the link, was the bottleneck and releases ran
#: 0.5-2 ms late at p99; at 300 Mbit/s p99 lateness was 128-256 µs). `fit: true`
#: chooses the factor that brings the lit capacity to at most this.
FIT_BUDGET_BPS = 300_000_000
#: `fit` rounds the factor down to 1, 2 or 5 times a power of ten, so reports show a readable factor
_FIT_STEPS = (5.0, 2.0, 1.0)
#: The smallest frame the engine forwards whole, bytes: a scaled byte queue limit below
#: one full frame (1500 B MTU + 14 B Ethernet header) could not hold a single segment
MIN_SCALED_LIMIT_BYTES = 1514


class CapacityError(InputError):
    """A capacity, lit share, scale or failure that cannot be (names the field and the fix)."""


@dataclass(frozen=True)
class Capacity:
    """The design capacity of a cable, one direction: `fiber_pairs` x `waves_per_pair` x `wave_rate_bps`."""

    fiber_pairs: int
    waves_per_pair: int
    wave_rate_bps: int

    def __post_init__(self) -> None:
        for name in ("fiber_pairs", "waves_per_pair"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CapacityError(f"capacity.{name} {value!r} is not a whole number >= 1",
                                    fix=f"give e.g. capacity: {{{name}: 8}}")
        if self.wave_rate_bps <= 0:
            raise CapacityError(f"capacity.wave_rate {self.wave_rate_bps} bit/s is not a rate",
                                fix="give e.g. wave_rate: 400gbit")

    @property
    def design_bps(self) -> int:
        """Every pair with every wave lit."""
        return self.fiber_pairs * self.waves_per_pair * self.wave_rate_bps


@dataclass(frozen=True)
class Lit:
    """The lit part of a cable: `fiber_pairs` in service, each carrying `waves` waves."""

    fiber_pairs: int
    waves: int

    def check(self, capacity: Capacity) -> None:
        """Refuse a lit share above the design (more pairs or waves than the cable has)."""
        for name, lit, most in (("fiber_pairs", self.fiber_pairs, capacity.fiber_pairs),
                                ("waves", self.waves, capacity.waves_per_pair)):
            if isinstance(lit, bool) or not isinstance(lit, int) or lit < 1:
                raise CapacityError(f"lit.{name} {lit!r} is not a whole number >= 1",
                                    fix=f"give 1..{most}, or use a cut event for a dark cable")
            if lit > most:
                what = "fiber pairs" if name == "fiber_pairs" else "waves per pair"
                raise CapacityError(f"lit.{name} {lit} is above the capacity's {most} {what}",
                                    fix=f"light at most {name}: {most}, or raise capacity.{'waves_per_pair' if name == 'waves' else name}")

    @property
    def total_waves(self) -> int:
        return self.fiber_pairs * self.waves


@dataclass(frozen=True)
class Outage:
    """What is out of service: whole fiber pairs, and waves on the pairs still in service."""

    fiber_pairs: int = 0
    waves: int = 0


@dataclass(frozen=True)
class LinkCapacity:
    """A link's capacity model: design, lit share and the replica's scale factor."""

    capacity: Capacity
    lit: Lit
    #: the replica's factor, 0 < scale <= 1 (1: the link at its real size)
    scale: float = 1.0
    #: the factor was chosen by `fit_scale` (for reports: it depends on the budget, not the file)
    fitted: bool = False

    def __post_init__(self) -> None:
        self.lit.check(self.capacity)
        check_scale(self.scale)

    @property
    def design_bps(self) -> int:
        return self.capacity.design_bps

    def lit_bps(self, outage: Outage = Outage()) -> int:
        """The real capacity in service, after `outage` (the design's units, not scaled)."""
        waves = (self.lit.fiber_pairs - outage.fiber_pairs) * self.lit.waves - outage.waves
        return max(0, waves) * self.capacity.wave_rate_bps

    def share(self, outage: Outage = Outage()) -> float:
        """The fraction of the lit capacity still in service."""
        return self.lit_bps(outage) / self.lit_bps()

    def emulated_bps(self, outage: Outage = Outage()) -> int:
        """The rate the engine runs: lit capacity after `outage`, times the factor."""
        return scaled_rate_bps(self.lit_bps(outage), self.scale)

    def after(self, outage: Outage, fiber_pairs: int = 0, waves: int = 0, repair: bool = False) -> Outage:
        """The outage after failing (or repairing) `fiber_pairs` and `waves` more.

        A pair takes its waves with it, so waves fail on the pairs still in
        service. Refused: failing more than is in service, failing everything
        (that is a cut), repairing more than has failed."""
        sign = -1 if repair else 1
        pairs = outage.fiber_pairs + sign * fiber_pairs
        lost_waves = outage.waves + sign * waves
        if repair:
            if pairs < 0:
                raise CapacityError(f"repair of {fiber_pairs} fiber pair(s) when {outage.fiber_pairs} have failed",
                                    fix=f"repair at most fiber_pairs: {outage.fiber_pairs}")
            if lost_waves < 0:
                raise CapacityError(f"repair of {waves} wave(s) when {outage.waves} have failed",
                                    fix=f"repair at most waves: {outage.waves}")
            return Outage(pairs, lost_waves)
        in_service = self.lit.fiber_pairs - outage.fiber_pairs
        if pairs > self.lit.fiber_pairs or (fiber_pairs and pairs == self.lit.fiber_pairs):
            raise CapacityError(f"failure of {fiber_pairs} fiber pair(s) when {in_service} of the "
                                f"{self.lit.fiber_pairs} lit are in service",
                                fix=f"fail at most fiber_pairs: {max(0, in_service - 1)}; "
                                    "a cable losing every pair is a cut event")
        waves_left = (self.lit.fiber_pairs - pairs) * self.lit.waves - outage.waves
        if waves_left - waves < 1:
            raise CapacityError(f"failure of {waves} wave(s) when {waves_left} are lit on the pairs in service",
                                fix=f"fail at most waves: {max(0, waves_left - 1)}; a cable losing every wave is a cut event")
        return Outage(pairs, lost_waves)


def check_scale(scale: float) -> None:
    """Refuse a factor that is not in (0, 1]: a replica is smaller than the cable, never larger."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise CapacityError(f"scale {scale!r} is not a number", fix="give a factor 0 < scale <= 1, e.g. scale: 1.0e-6")
    if not 0 < scale <= 1:
        raise CapacityError(f"scale {scale:g} is not in (0, 1]",
                            fix="give a factor 0 < scale <= 1 (1.0e-6 makes 400 Tbit/s 400 Mbit/s), or fit: true")


def scaled_rate_bps(rate_bps: float, scale: float) -> int:
    """A real rate on the replica: `rate_bps` x `scale`, whole bit/s (at least the engine's 1 kbit/s floor)."""
    check_scale(scale)
    scaled = round(rate_bps * scale)
    if 0 < rate_bps and scaled < MIN_RATE_BPS:
        raise CapacityError(f"{rate_bps:g} bit/s x scale {scale:g} is {scaled} bit/s, below the engine's "
                            f"{MIN_RATE_BPS} bit/s", fix="give a larger scale")
    return scaled


def scaled_limit_bytes(limit_bytes: int, scale: float) -> int:
    """A byte queue limit on the replica (0 stays 0: no limit). Refused below one full frame."""
    if limit_bytes == 0:
        return 0
    scaled = round(limit_bytes * scale)
    if scaled < MIN_SCALED_LIMIT_BYTES:
        raise CapacityError(f"limit_bytes {limit_bytes} x scale {scale:g} is {scaled} B, less than one "
                            f"{MIN_SCALED_LIMIT_BYTES} B frame", fix=f"give limit_bytes of at least "
                            f"{math.ceil(MIN_SCALED_LIMIT_BYTES / scale)} B, or a larger scale")
    return scaled


def fit_scale(lit_bps: int, budget_bps: int = FIT_BUDGET_BPS) -> float:
    """The largest factor of the form 1, 2 or 5 x 10^k that brings `lit_bps` to at most `budget_bps` (1 if it fits)."""
    if lit_bps <= budget_bps:
        return 1.0
    exact = budget_bps / lit_bps
    exponent = math.floor(math.log10(exact))
    for step in _FIT_STEPS:
        factor = step * 10.0 ** exponent
        if factor <= exact * (1 + 1e-12):
            return float(f"{factor:.3g}")
    return float(f"{10.0 ** exponent:.3g}")   # unreachable: step 1 is <= exact by the floor


def scale_back(value: float | None, scale: float) -> float | None:
    """A throughput measured on the replica as it would be on the real link (value / scale)."""
    return None if value is None else value / scale


def format_bps(rate_bps: float) -> str:
    """A capacity for people: `409.6 Tbit/s`, `204.8 Mbit/s`."""
    for unit, size in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if abs(rate_bps) >= size:
            return f"{rate_bps / size:.4g} {unit}"
    return f"{rate_bps:.4g} bit/s"
