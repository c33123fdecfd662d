"""Which engine shard forwards which link. Pure functions.

A testbed's links are split between `shards` engine loops (one thread each,
on its own CPU). A link goes to one shard whole, so a direction never spans
shards and both directions of a cable share a loop. The split balances the
load each shard is expected to carry: a link's weight is its capacity (the
faster of its two directions), an unlimited link counts as the fastest one
present, since it can carry anything its ends send. Heavy links are placed
first, each on the lightest shard so far (longest-processing-time first, a
4/3-approximation of the best balance; Graham 1969), ties to the lower
shard number, so the split is deterministic and reproducible. The same
function places shards on hosts in a multi-host run.
"""

from __future__ import annotations

from typing import Sequence

from emulator.errors import InputError

#: weight of an unlimited link when no link has a rate (all alike then)
UNLIMITED_WEIGHT = 1.0


def link_weights(rates_bps: Sequence[tuple[int, int]]) -> list[float]:
    """A weight per link from its two directions' rates (0 = unlimited)."""
    fastest = max((max(a, b) for a, b in rates_bps), default=0)
    unlimited = float(fastest) if fastest > 0 else UNLIMITED_WEIGHT
    return [float(max(a, b)) if a > 0 and b > 0 else unlimited for a, b in rates_bps]


def partition(weights: Sequence[float], shards: int) -> list[int]:
    """The shard (0..shards-1) of each link, balancing the summed weights.

    Raises InputError for fewer than one shard or more shards than links
    (a shard without a link would be an idle loop on a CPU of its own).
    """
    if shards < 1:
        raise InputError(f"engine.shards is {shards}", fix="use 1 or more shards")
    if shards > max(1, len(weights)):
        raise InputError(
            f"engine.shards is {shards} but the topology has {len(weights)} link(s)",
            fix=f"use at most {max(1, len(weights))} shard(s): each shard forwards at least one link",
        )
    load = [0.0] * shards
    assignment = [0] * len(weights)
    # heaviest first; equal weights keep topology order
    for index in sorted(range(len(weights)), key=lambda k: (-weights[k], k)):
        shard = min(range(shards), key=lambda s: (load[s], s))
        assignment[index] = shard
        load[shard] += weights[index]
    return assignment


def default_shards(cpus: int) -> int:
    """Shards when the topology does not say: one per CPU beyond two, at most 4.

    On one or two CPUs a second loop would share a CPU with the nodes'
    stacks and traffic tools, which costs more than it forwards.
    """
    return 1 if cpus <= 2 else min(4, cpus - 1)
