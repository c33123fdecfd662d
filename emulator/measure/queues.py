"""Queue occupancy over time per link direction, from the engine's time bins. Pure.

The engine keeps, per link direction and 100 ms bin, the most packets that
waited for the serializer (a rate-limited link's queue) at any arrival in
that bin (FastPath.fidelity()["queue_bins"]). A direction that never queued
has no series.
"""

from __future__ import annotations

from typing import Any

Point = tuple[float, float]


def queue_series(engine: dict[str, Any], t0_ns: int, ends: dict[str, tuple[str, str]]) -> dict[str, list[Point]]:
    """"link sender>receiver" -> [(seconds from t0, packets)] for each direction that
    queued; `ends` names each link's (a, b) nodes. Bins before t0 are left out."""
    shards = engine.get("shards", [])
    if not shards or not shards[0].get("bin_ns"):
        return {}
    epoch, bin_ns = shards[0]["bin_epoch_ns"], shards[0]["bin_ns"]
    out: dict[str, list[Point]] = {}
    for link, directions in sorted(engine.get("queue_bins", {}).items()):
        a, b = ends.get(link, ("a", "b"))
        for direction, bins in directions.items():
            if not any(bins):
                continue
            sender, receiver = (a, b) if direction == "a_to_b" else (b, a)
            points = [((epoch + k * bin_ns - t0_ns) / 1e9, float(v)) for k, v in enumerate(bins)]
            out[f"{link} {sender}>{receiver}"] = [(t, v) for t, v in points if t >= -1e-9]
    return out
