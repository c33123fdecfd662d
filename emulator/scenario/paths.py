"""Paths through a topology and the delay they should show (pure functions)."""

from __future__ import annotations

import heapq

from emulator.scenario.topology import Topology

#: per-hop cost that breaks ties by hop count (same rule as the static routes)
HOP_COST_NS = 1000


def shortest_path(topology: Topology, source: str, target: str) -> list[str]:
    """Node names from `source` to `target` along the least-delay path."""
    topology.node(source)
    topology.node(target)
    best: dict[str, int] = {source: 0}
    previous: dict[str, str] = {}
    queue = [(0, source)]
    while queue:
        cost, node = heapq.heappop(queue)
        if node == target:
            break
        if cost > best[node]:
            continue
        for link in topology.links_of(node):
            peer = link.b.node if link.a.node == node else link.a.node
            step = link.direction(node).delay_ns + HOP_COST_NS
            if cost + step < best.get(peer, 1 << 62):
                best[peer] = cost + step
                previous[peer] = node
                heapq.heappush(queue, (cost + step, peer))
    if target not in best:
        raise KeyError(f"no path from {source} to {target}")
    path = [target]
    while path[-1] != source:
        path.append(previous[path[-1]])
    return path[::-1]


def path_hops(topology: Topology, path: list[str]) -> list[tuple[str, str]]:
    """The link directions (link name, "a_to_b" | "b_to_a") a packet crosses along
    the node list `path`; between two nodes with several links, the least-delay one
    (as the static routes pick it)."""
    hops = []
    for here, there in zip(path, path[1:]):
        candidates = [l for l in topology.links_of(here) if there in l.nodes]
        if not candidates:
            raise KeyError(f"no link between {here} and {there}")
        link = min(candidates, key=lambda l: l.direction(here).delay_ns)
        hops.append((link.name, "a_to_b" if link.a.node == here else "b_to_a"))
    return hops


def path_delay_ns(topology: Topology, path: list[str]) -> int:
    """Configured one-way delay along `path` (propagation, no queueing)."""
    return sum(getattr(topology.link(name), direction).delay_ns for name, direction in path_hops(topology, path))


def rtt_ns(topology: Topology, source: str, target: str) -> int:
    """Configured round-trip delay between two nodes along the least-delay paths."""
    forward = path_delay_ns(topology, shortest_path(topology, source, target))
    backward = path_delay_ns(topology, shortest_path(topology, target, source))
    return forward + backward


def path_floor_ns(topology: Topology, hops: list[tuple[str, str]], changing: frozenset[str] = frozenset()) -> int:
    """The least one-way delay the link model can give a packet along `hops`: each
    hop's delay less its jitter when the jitter is uniform (netem's delay ± jitter),
    nothing for a hop whose jitter is unbounded below (normal, pareto: the engine
    clips at the departure), that reorders (a reordered packet skips the delay),
    or whose parameters the timeline changes (`changing`: link names)."""
    total = 0
    for name, direction in hops:
        params = getattr(topology.link(name), direction)
        if name in changing or params.reorder > 0:
            continue
        if params.jitter_ns == 0:
            total += params.delay_ns
        elif params.distribution == "uniform":
            total += max(0, params.delay_ns - params.jitter_ns)
    return total
