"""The split of a testbed's links between engine shards (emulator.engine.shards): pure."""

from __future__ import annotations

import pytest

from emulator.engine.shards import default_shards, link_weights, partition
from emulator.errors import InputError

G = 1_000_000_000


def test_one_shard_takes_every_link() -> None:
    assert partition([1.0, 5.0, 2.0], 1) == [0, 0, 0]


def test_heavy_links_are_spread_and_loads_balance() -> None:
    # heaviest first, each to the lighter shard: 10 -> s0, 8 -> s1, 5 -> s1 (8 < 10),
    # 4 -> s0 (10 < 13), 1 -> s1 (13 < 14)
    weights = [5.0, 10.0, 1.0, 8.0, 4.0]
    shards = partition(weights, 2)
    assert shards == [1, 0, 1, 1, 0]
    loads = [sum(w for w, s in zip(weights, shards) if s == k) for k in (0, 1)]
    assert loads == [14.0, 14.0]


def test_equal_links_alternate_in_topology_order() -> None:
    assert partition([1.0] * 5, 2) == [0, 1, 0, 1, 0]
    assert partition([1.0] * 3, 3) == [0, 1, 2]


def test_partition_is_deterministic_and_every_shard_gets_a_link() -> None:
    weights = [float((k * 7919) % 13 + 1) for k in range(40)]
    first = partition(weights, 4)
    assert first == partition(weights, 4)
    assert set(first) == {0, 1, 2, 3}
    loads = [sum(w for w, s in zip(weights, first) if s == k) for k in range(4)]
    # LPT's bound: the fullest shard carries at most 4/3 of the best possible maximum
    # (Graham 1969); the best possible is at least the mean
    assert max(loads) <= 4 / 3 * max(sum(weights) / 4, max(weights))


def test_weights_from_rates_unlimited_counts_as_the_fastest() -> None:
    assert link_weights([(G, G), (0, 0), (100_000_000, 10 * G)]) == [G, 10 * G, 10 * G]
    assert link_weights([(0, 0), (0, 0)]) == [1.0, 1.0]


@pytest.mark.parametrize("shards, where", [(0, "use 1 or more"), (4, "at most 3")])
def test_bad_shard_counts(shards: int, where: str) -> None:
    with pytest.raises(InputError) as info:
        partition([1.0, 1.0, 1.0], shards)
    assert where in str(info.value)


def test_default_is_one_shard_on_two_cpus() -> None:
    assert [default_shards(n) for n in (1, 2, 3, 4, 8, 64)] == [1, 1, 2, 3, 4, 4]


def test_a_testbed_takes_the_shards_of_its_engine_options() -> None:
    """`shards=` wins, then EngineOptions.shards, then the file, then the default (no root needed: nothing is built)."""
    from emulator.engine.fastpath import EngineOptions
    from emulator.scenario.loader import parse_topology
    from emulator.testbed import Testbed

    topology = parse_topology("nodes: {a: {}, b: {}, c: {}}\nlinks:\n  a-b: {ends: [a, b]}\n  b-c: {ends: [b, c]}\n"
                              "engine: {shards: 1}\n", source="t.yaml")
    assert Testbed(topology, engine_options=EngineOptions(shards=2)).engine_options.shards == 2
    assert Testbed(topology, engine_options=EngineOptions(shards=2), shards=1).engine_options.shards == 1
    assert Testbed(topology, engine_options=EngineOptions()).engine_options.shards == 1
    with pytest.raises(InputError, match="has 2 link"):
        Testbed(topology, engine_options=EngineOptions(shards=3))
