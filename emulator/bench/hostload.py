"""How much of the machine a benchmark figure actually had: CPU steal and run-queue pressure.

On a shared VM the hypervisor can take a vCPU away (steal) in the middle of
a timing measurement; DESIGN.md saw 9 % during a delay benchmark. Every
timing figure of the benchmark is printed beside the host's steal and CPU
pressure over the same window (read by emulator.measure.host, which the
scenario runs' fidelity uses too), so a bad figure can be told apart from a
bad machine.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

from emulator.measure.host import pressure_pct, read_sample, steal_pct

T = TypeVar("T")


@dataclass
class HostLoad:
    """The host's load over one measurement window (filled in when the window closes)."""

    seconds: float = 0.0
    steal_pct: float = 0.0
    #: share of the window some task waited for a CPU (PSI `some`), %; None without PSI
    pressure_pct: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        """JSON fields: `window_s`, `steal_pct`, `cpu_pressure_some_pct`."""
        return {
            "window_s": round(self.seconds, 3),
            "steal_pct": round(self.steal_pct, 2),
            "cpu_pressure_some_pct": None if self.pressure_pct is None else round(self.pressure_pct, 2),
        }


def describe(load: dict[str, float | None] | None) -> str:
    """`steal 0.4 %, cpu pressure 1.2 %`: the host's load beside a figure."""
    if not load:
        return "steal n/a"
    text = f"steal {load['steal_pct']:.1f} %"
    if load.get("cpu_pressure_some_pct") is not None:
        text += f", cpu pressure {load['cpu_pressure_some_pct']:.1f} %"
    return text


@contextmanager
def host_load() -> Iterator[HostLoad]:
    """Measure steal and CPU pressure over the `with` block; the HostLoad is filled on exit."""
    load = HostLoad()
    before = read_sample()
    try:
        yield load
    finally:
        after = read_sample()
        load.seconds = (after.t_ns - before.t_ns) / 1e9
        load.steal_pct = steal_pct(before, after)
        pressure = pressure_pct(before, after)
        load.pressure_pct = None if pressure is None else min(100.0, pressure)


def steal_during(fn: Callable[[], T]) -> tuple[T, dict[str, float | None]]:
    """Call `fn`; its result and the host's load over the call (`HostLoad.to_dict()`)."""
    with host_load() as load:
        result = fn()
    return result, load.to_dict()
