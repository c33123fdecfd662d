"""Reading the engine's counters: the invariant and the release-lateness histogram."""

from __future__ import annotations

from typing import Any


def invariant_holds(direction: dict[str, Any]) -> bool:
    """rx + duplicated == tx + drops + in_flight (nothing vanishes uncounted)."""
    drops = sum(direction["drops"].values())
    return direction["rx_packets"] + direction["duplicated"] == direction["tx_packets"] + drops + direction["in_flight"]


def lateness_mean_bound_us(direction: dict[str, Any]) -> float | None:
    """The mean release lateness (µs): exact from the engine's running sum
    (`sum_ns`) where the counters have it, else an upper bound from the log2
    histogram, each release counted at its bin's upper edge (the open top bin
    at the exact maximum). None when nothing was released."""
    lateness = direction["release_lateness"]
    histogram = lateness["histogram"]
    total = sum(histogram.values())
    if total == 0:
        return None
    if lateness.get("sum_ns") is not None:
        return float(lateness["sum_ns"]) / total / 1e3
    top = lateness["max_ns"] / 1e3
    weighted = sum(count * (min(float(label[1:-2]), top) if label.startswith("<") else top)
                   for label, count in histogram.items())
    return weighted / total


def lateness_change_sum_us(direction: dict[str, Any]) -> float | None:
    """The sum of |L_i - L_(i-1)| over consecutive releases (µs), L each release's
    lateness: what lateness can have added to or taken from the delay variations
    of every stream crossing this direction together. None from counters that
    do not keep it."""
    total = direction["release_lateness"].get("change_sum_ns")
    return None if total is None else float(total) / 1e3


def lateness_bound_us(direction: dict[str, Any], quantile: float) -> float | None:
    """Upper bound (µs) below which `quantile` of releases left, from the log2 histogram.

    None when nothing was released. The bound is the bin's upper edge, so it
    overstates by at most 2x; `release_lateness.max_ns` is exact.
    """
    histogram = direction["release_lateness"]["histogram"]
    total = sum(histogram.values())
    if total == 0:
        return None
    seen = 0
    for label, count in histogram.items():
        seen += count
        if seen >= quantile * total:
            if label.startswith("<"):
                return float(label[1:-2])
            return float("inf")
    return float("inf")
