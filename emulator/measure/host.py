"""The host's CPU over a run: steal (a VM's vCPU not given to it) and run-queue pressure.

Both bend every timing a testbed measures without the testbed being at
fault, so the run records them beside its own figures. Read from /proc:
the aggregate `cpu` line of /proc/stat (steal is its 8th value, in ticks)
and /proc/pressure/cpu (PSI, the `some` line's `total`, µs in which at least
one runnable task waited for a CPU). Parsing is pure and tested on recorded
text; `HostSampler` samples in a thread so a spell of steal can be lined up
with the timeline.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

PROC_STAT = "/proc/stat"
PROC_PRESSURE_CPU = "/proc/pressure/cpu"
#: how often the sampler reads /proc (a spell shorter than this is averaged away)
SAMPLE_S = 0.5


@dataclass(frozen=True)
class CpuSample:
    """One reading: when, CPU ticks in all and stolen, PSI cpu `some` total (µs, None if absent)."""

    t_ns: int
    total_ticks: int
    steal_ticks: int
    pressure_us: int | None


def parse_cpu_line(text: str) -> tuple[int, int]:
    """(all ticks, steal ticks) from /proc/stat's aggregate `cpu` line.

    Fields: user nice system idle iowait irq softirq steal guest guest_nice;
    guest time is already counted in user/nice, so it is left out of the total.
    """
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            values += [0] * (10 - len(values))
            return sum(values[:8]), values[7]
    raise ValueError("no aggregate cpu line in /proc/stat")


def parse_pressure_some_us(text: str) -> int:
    """The `some` line's `total=` (µs) of a /proc/pressure file."""
    for line in text.splitlines():
        if line.startswith("some "):
            for part in line.split()[1:]:
                key, _, value = part.partition("=")
                if key == "total":
                    return int(value)
    raise ValueError("no 'some ... total=' line in the pressure file")


def read_sample() -> CpuSample:
    """Read /proc now."""
    with open(PROC_STAT) as fh:
        total, steal = parse_cpu_line(fh.read())
    pressure: int | None
    try:
        with open(PROC_PRESSURE_CPU) as fh:
            pressure = parse_pressure_some_us(fh.read())
    except (OSError, ValueError):
        pressure = None  # a kernel without PSI
    return CpuSample(time.time_ns(), total, steal, pressure)


def steal_pct(a: CpuSample, b: CpuSample) -> float:
    """Share of all CPU time stolen between two samples, in %."""
    ticks = b.total_ticks - a.total_ticks
    return 100.0 * (b.steal_ticks - a.steal_ticks) / ticks if ticks > 0 else 0.0


def pressure_pct(a: CpuSample, b: CpuSample) -> float | None:
    """Share of wall time in which some runnable task waited for a CPU, in %."""
    if a.pressure_us is None or b.pressure_us is None or b.t_ns <= a.t_ns:
        return None
    return 100.0 * (b.pressure_us - a.pressure_us) * 1000 / (b.t_ns - a.t_ns)


@dataclass
class HostLoad:
    """The host over a window: overall steal and pressure, and per sample interval."""

    steal_pct: float
    pressure_pct: float | None
    #: (start ns, end ns, steal %, pressure % or None) per sampling interval
    intervals: list[tuple[int, int, float, float | None]] = field(default_factory=list)

    def worst_steal_pct(self, start_ns: int, end_ns: int) -> float:
        """The largest interval steal overlapping [start_ns, end_ns) (the overall figure if none)."""
        inside = [s for a, b, s, _ in self.intervals if a < end_ns and b > start_ns]
        return max(inside) if inside else self.steal_pct

    def to_dict(self) -> dict[str, object]:
        return {"steal_pct": self.steal_pct, "pressure_pct": self.pressure_pct,
                "intervals": [list(i) for i in self.intervals]}


def summarize(samples: list[CpuSample]) -> HostLoad:
    """A HostLoad from samples in time order (at least two)."""
    if len(samples) < 2:
        return HostLoad(0.0, None)
    intervals = [(a.t_ns, b.t_ns, steal_pct(a, b), pressure_pct(a, b)) for a, b in zip(samples, samples[1:])]
    return HostLoad(steal_pct(samples[0], samples[-1]), pressure_pct(samples[0], samples[-1]), intervals)


class HostSampler:
    """Samples /proc every SAMPLE_S in a thread; `stop()` returns the HostLoad."""

    def __init__(self, interval_s: float = SAMPLE_S) -> None:
        self.interval_s = interval_s
        self._samples: list[CpuSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="caspian-host-sampler", daemon=True)

    def start(self) -> "HostSampler":
        self._samples.append(read_sample())
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples.append(read_sample())

    def stop(self) -> HostLoad:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._samples.append(read_sample())
        return summarize(self._samples)


def cpu_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))
