"""`caspian bench`: the fast path against the Linux bridge on the same veths.

One run builds two hosts (`src`, `dst`) joined by one link and alternates, in
rounds, ways of forwarding that link's frames in the wire namespace
(`rig.Bench.forwarders`):

- `bridge`: a kernel bridge enslaving the two wire ends (the limit here);
- `engine`: caspian's engine with no impairment;
- `engine_preset`: the engine with the aktau-sumgait preset;
- and the bridge without receive steering, the engine at 1 Gbit/s with and
  without a capture.

Each is measured for single-flow TCP (iperf3) and 64-byte frames per second
(a compiled sender flooding broadcast frames, a compiled counter). Ratios are
taken to the bridge of the same round; medians over the rounds are reported
because these 2-vCPU machines vary ±25 % run to run. Then: delay accuracy
(one-way delay of timestamped probes vs configured, against the bridge's
base), rate accuracy (L2 rate at 100 Mbit/s and 1 Gbit/s) and the engine's
resident memory with 10 idle links. `scale` (`emulator.bench.scale`): grid
bring-up and teardown against the kernel floor, RTT beside 180 idle links and
engine memory against the link count. Every timing figure is printed beside
the host's CPU steal and pressure over its window (`emulator.bench.hostload`).

The parts: `rig` (the network and its forwarders), `measure` (what is
measured on it), `report` (medians, ratios, printing); `run_bench` here
runs the parts asked for in order.
"""

from __future__ import annotations

import shutil
from typing import Any

from emulator.errors import EnvironmentProblem
from emulator.network.state import DEFAULT_ROOT

PARTS = ("throughput", "delay", "rate", "memory", "scale")
#: the parts that use the `src`/`dst` bench link (and iperf3)
_BENCH_LINK_PARTS = ("throughput", "delay", "rate")


def run_bench(*, as_json: bool, runs: int = 3, duration_s: float = 5.0, state_root: str = DEFAULT_ROOT,
              only: tuple[str, ...] = PARTS) -> int:
    """Run the benchmark; print a table (or one JSON object). Exit code 0."""
    # imported here, so importing the pure parts (grid, scale's batch text) loads no engine or netlink
    from emulator.bench import measure, report
    from emulator.bench.rig import Bench, log
    from emulator.bench.scale import scale

    if "throughput" in only and shutil.which("iperf3") is None:
        raise EnvironmentProblem("iperf3 is missing (apt-get install iperf3, or run `make bench`)")
    result: dict[str, Any] = {"duration_s": duration_s}
    bench = Bench(duration_s, state_root) if any(part in only for part in _BENCH_LINK_PARTS) else None
    if bench is not None:
        result["rx_cpus"] = bench.rx_cpus
    try:
        if bench is not None:
            rounds = [measure.throughput_round(bench, f"round {r + 1}/{runs}")
                      for r in range(runs if "throughput" in only else 0)]
            if rounds:
                result.update(report.summarize(rounds))
                result["rounds"] = rounds
            if "delay" in only:
                log("delay accuracy")
                result["delay_accuracy"] = measure.delay_accuracy(bench)
            if "rate" in only:
                log("rate accuracy")
                result["rate_accuracy"] = measure.rate_accuracy(bench)
    finally:
        if bench is not None:
            bench.close()
    if "memory" in only:
        log("memory with 10 idle links")
        result["memory"] = measure.engine_memory(state_root)
    if "scale" in only:
        log("scale: grid bring-up, RTT beside idle links, memory by link count")
        result["scale"] = scale(state_root, runs)
    if as_json:
        report.print_json(result)
    else:
        report.print_report(result)
    return 0
