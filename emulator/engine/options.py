"""`EngineOptions`: how the engine's loops run (batch, spin, naps, CPUs, shards, priority).

Plain data with the CPU arithmetic that follows from it: no compiled engine is
needed to read it. emulator.engine.fastpath, which builds the engines from it,
re-exports it for the modules that import it from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
class EngineOptions:
    """Tuning of the loop; the defaults are the measured ones (DESIGN.md)."""

    slots_per_direction: int = 4096
    batch: int = 64
    #: busy-poll this long before a deadline: a VM's timer wake-up is ~100 µs late
    spin_ns: int = 300_000
    #: sleep at least `doze_ns` in every `max_spin_ns` (7 %): a SCHED_FIFO
    #: thread that never sleeps is throttled by the kernel for tens of ms.
    #: Short naps delay few releases by little (bench: p99 lateness < 64 µs
    #: at 50 kpps, against < 256 µs with 70 µs naps per ms)
    max_spin_ns: int = 280_000
    doze_ns: int = 20_000
    #: CPU to pin the (first) loop thread to; None = the last CPU when there
    #: are several, -1 = no pinning. Shard k takes the k-th CPU below it.
    cpu: int | None = None
    #: engine loops (threads), each forwarding its own share of the links;
    #: None = not chosen (1 here; a Testbed picks the file's or the machine's default)
    shards: int | None = None
    #: SCHED_FIFO priority for the loop thread (0 = normal scheduling)
    realtime_priority: int = 10

    #: steer node-side receive processing (RPS) off the engine's CPU
    steer_receive: bool = True
    #: hold a PM QoS request for zero CPU wake-up latency (/dev/cpu_dma_latency)
    #: while the engine runs, so idle vCPUs poll instead of halting: a frame that
    #: arrives at an idle engine is read ~50 µs sooner on these VMs (ping RTT on the
    #: default chain 4.25-4.40 ms without, 4.14-4.17 ms with; 4.024 ms configured).
    #: Costs idle CPU time; released when the engine process exits.
    cpu_latency_qos: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineOptions":
        return cls(**data)

    @property
    def shard_count(self) -> int:
        """Engine loops to run (1 when not chosen)."""
        return self.shards if self.shards is not None else 1

    def shard_cpus(self) -> list[int]:
        """The CPU each shard's loop is pinned to (-1: not pinned), from the top down."""
        cpus = sorted(os.sched_getaffinity(0))
        count = self.shard_count
        if self.cpu is not None:
            if self.cpu < 0:
                return [-1] * count
            below = [c for c in cpus if c <= self.cpu][::-1] or [self.cpu]
            return [below[k % len(below)] for k in range(count)]
        if len(cpus) < 2:
            return [-1] * count
        return [cpus[-1 - (k % len(cpus))] for k in range(count)]

    def engine_cpu(self) -> int:
        """The CPU the first loop thread will be pinned to, or -1 for none."""
        return self.shard_cpus()[0]

    def other_cpus(self) -> set[int]:
        """CPUs left for everything but the engine (node processes, receive stacks);
        all of them when the shards take every CPU."""
        cpus = set(os.sched_getaffinity(0))
        rest = cpus - {c for c in self.shard_cpus() if c >= 0}
        return rest or cpus

    def receive_cpu_mask(self) -> str | None:
        """Hex CPU mask for node-side receive processing: every CPU no shard has."""
        cpus = set(os.sched_getaffinity(0))
        engines = {c for c in self.shard_cpus() if c >= 0}
        others = cpus - engines
        if not self.steer_receive or not engines or not others:
            return None
        return format(sum(1 << cpu for cpu in others), "x")
