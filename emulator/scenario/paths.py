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


def path_delay_ns(topology: Topology, path: list[str]) -> int:
    """Configured one-way delay along `path` (propagation, no queueing)."""
    total = 0
    for here, there in zip(path, path[1:]):
        link = next(l for l in topology.links_of(here) if there in l.nodes)
        total += link.direction(here).delay_ns
    return total


def rtt_ns(topology: Topology, source: str, target: str) -> int:
    """Configured round-trip delay between two nodes along the least-delay paths."""
    forward = path_delay_ns(topology, shortest_path(topology, source, target))
    backward = path_delay_ns(topology, shortest_path(topology, target, source))
    return forward + backward
