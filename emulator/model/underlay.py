"""A link carried between two machines: the underlay's own delay taken off the link's.

When a link's ends are on two machines (emulator.model.placement), its frames
cross the underlay between them (a tunnel over the machines' network) on top
of the delay the engine gives them. The run measures the underlay at set-up
(`from_rtts`: echo round trips between the machines' agents) and the owning
engine gives the link its configured delay less the underlay's one-way delay
(`carried`), so a frame still arrives when the file says.

That only works when the underlay is faster and steadier than the link asks:
an underlay slower than the link's whole delay cannot be taken off, and one
whose delay varies more than the link's own jitter plus the engine's timing
error would add delay variation the model never drew. Either is refused
(UnderlayTooSlow: the run stops with one line, before anything is made).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from emulator.errors import InputError
from emulator.model.linkparams import LinkParams
from emulator.model.units import format_time

#: The delay variation an underlay may add beyond the link's own jitter: the
#: engine's own p99 wake-up error on the VMs measured (cyclictest p99 ~51 µs,
#: DESIGN.md; the same figure as fidelity.STEAL_LIMIT_PCT's), which a run
#: on one machine has as well.
UNDERLAY_NOISE_NS = 50_000
#: Fewer echoes than this give no p99 worth the name.
MIN_ECHOES = 100


class UnderlayTooSlow(InputError):
    """The underlay between two machines is slower or noisier than a link across it asks."""


@dataclass(frozen=True)
class SimulatedUnderlay:
    """Two machines simulated on one host (the `underlay:` section): each a wire
    namespace and an engine of its own, joined by a veth pair that a third
    engine forwards with this delay and jitter, since the kernel here has no
    netem (docs/multihost.md). The run measures it like any underlay."""

    delay_ns: int
    jitter_ns: int = 0

    def to_dict(self) -> dict[str, float]:
        return {"delay_ms": self.delay_ns / 1e6, "jitter_ms": self.jitter_ns / 1e6}


@dataclass(frozen=True)
class Underlay:
    """One machine pair's underlay, one way: its median delay and its spread
    (p99 less median), from echo round trips halved (the two ways taken alike)."""

    delay_ns: int
    spread_ns: int
    echoes: int


def from_rtts(rtts_ns: Sequence[int]) -> Underlay:
    """The underlay from echo round trips (ns): half the median, half the p99 less the median."""
    if len(rtts_ns) < MIN_ECHOES:
        raise InputError(f"{len(rtts_ns)} echoes measured the underlay", fix=f"measure at least {MIN_ECHOES}")
    ordered = sorted(rtts_ns)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, -(-99 * len(ordered) // 100) - 1)]   # nearest rank
    return Underlay(delay_ns=round(median / 2), spread_ns=round((p99 - median) / 2), echoes=len(ordered))


def allowed_spread_ns(params: LinkParams) -> int:
    """How much delay variation the underlay may add to a link direction: its own jitter plus UNDERLAY_NOISE_NS."""
    return params.jitter_ns + UNDERLAY_NOISE_NS


def carried(link: str, direction: str, params: LinkParams, underlay: Underlay, *,
            check_spread: bool = True) -> LinkParams:
    """The parameters the owning engine gives a direction carried over `underlay`:
    the configured delay less the underlay's (UnderlayTooSlow when it cannot be).

    `check_spread` False: the underlay's spread is not judged here. A simulated
    underlay is forwarded by an engine of the run's own, so its spread is the
    engine's release lateness, which the run's fidelity accounts for as it does
    every link's (docs/multihost.md), not a property of a network to refuse."""
    where = f"link {link} {direction}"
    if underlay.delay_ns > params.delay_ns:
        raise UnderlayTooSlow(
            f"{where}: the underlay between its machines takes {format_time(underlay.delay_ns)} one way, "
            f"more than the link's whole delay of {format_time(params.delay_ns)}",
            fix="place both ends on one machine, or use a faster underlay between the machines")
    if check_spread and underlay.spread_ns > allowed_spread_ns(params):
        raise UnderlayTooSlow(
            f"{where}: the underlay's delay varies by {format_time(underlay.spread_ns)} (p99 less median), "
            f"more than the {format_time(allowed_spread_ns(params))} the link allows "
            f"(its jitter plus the engine's {format_time(UNDERLAY_NOISE_NS)})",
            fix="place both ends on one machine, or quiet the underlay")
    return params.replace(delay_ns=params.delay_ns - underlay.delay_ns)
