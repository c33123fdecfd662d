"""What one machine of a run needs: CPUs and memory, from its nodes, links and streams.

The figures are caspian's own, measured on the 2-vCPU VMs of docs/benchmark.md
(docs/scale.md has the measurements and the commands):

- The engine's resident memory grows with the links it serves: 33.8 MiB at
  10 idle links, 59.3 MiB at 181 (docs/benchmark.md, "Engine memory against
  links"), so ENGINE_BASE_MIB + ENGINE_PER_LINK_MIB x links.
- A node is a network namespace and its veth ends: NODE_MIB of kernel
  memory, charged to the pod's memory cgroup.
- A router runs its routing daemon (DAEMON_MIB, by suite), and each end of
  a traffic stream a process in its node (STREAM_END_MIB, by kind: a probe's
  is Python with scapy, an iperf3's is small).
- The engine's loop wants a CPU of its own per shard (DESIGN.md: it is pinned,
  and a loop that shares its core is late); the nodes' stacks, daemons and
  streams get one more. CPU is requested in whole CPUs equal to the limit,
  the Guaranteed QoS class, so a kubelet with the static CPU manager policy
  gives the pod exclusive cores (Kubernetes docs, "Control CPU Management
  Policies on the Node"): a CFS quota that throttles the engine mid-period
  would show as release lateness in every figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: the engine's resident memory without links, and per link it serves (docs/benchmark.md: (59.3 - 33.8) / 171)
ENGINE_BASE_MIB = 32.3
ENGINE_PER_LINK_MIB = 0.15
#: a node's namespace and veth pair: 176 KiB charged to the memory cgroup per node over 50 (docs/scale.md)
NODE_MIB = 0.25
#: a router's daemons, resident (docs/scale.md): BIRD 4.8-5.3 MiB; FRR's zebra 14.0 + ospfd 10.3 + bfdd 8.0 MiB
DAEMON_MIB = {"bird": 8.0, "frr": 40.0}
#: one end of a stream, resident: a probe's Python with scapy 73.3 MiB, iperf3 3.5 MiB (docs/scale.md)
STREAM_END_MIB = {"probe": 80.0, "tcp": 8.0, "udp": 8.0}
#: an idle `caspian agent` (the channel, the echoes): 24.3 MiB resident, rounded up
AGENT_MIB = 32.0
#: room over the sum: the Python runner around the engine, reports, the kernel's socket buffers
HEADROOM = 1.5


@dataclass(frozen=True)
class MachineSize:
    """One machine's share: what it runs, and what it needs for that."""

    nodes: int
    engine_links: int
    shards: int
    #: resident memory of its routers' daemons and its streams' processes, MiB
    process_mib: float

    @property
    def cpus(self) -> int:
        """Whole CPUs: one per engine shard, one for the nodes."""
        return self.shards + 1

    @property
    def memory_mib(self) -> int:
        """MiB, the sum of the parts times HEADROOM, rounded up to 64 MiB."""
        parts = (AGENT_MIB + ENGINE_BASE_MIB + ENGINE_PER_LINK_MIB * self.engine_links
                 + NODE_MIB * self.nodes + self.process_mib)
        return 64 * math.ceil(parts * HEADROOM / 64)


def size_machine(nodes: int, engine_links: int, *, routers: int = 0, daemon: str = "bird",
                 stream_ends: dict[str, int] | None = None, shards: int = 1) -> MachineSize:
    """The size of a machine running `nodes` nodes, `routers` of them with `daemon`, `stream_ends`
    (kind -> ends of streams on its nodes), its engine serving `engine_links` in `shards` loops."""
    process = DAEMON_MIB.get(daemon, max(DAEMON_MIB.values())) * routers
    process += sum(STREAM_END_MIB.get(kind, max(STREAM_END_MIB.values())) * n for kind, n in (stream_ends or {}).items())
    return MachineSize(nodes=nodes, engine_links=engine_links, shards=max(1, shards), process_mib=process)
