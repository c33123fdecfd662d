"""The benchmark's report: medians over rounds, ratios to the bridge, and the printed table.

`summarize` turns the throughput rounds into medians and ratios (to the
bridge of the same round, then the median of those, because these 2-vCPU
machines vary ±25 % run to run); `print_report` writes what `run_bench`
collected for a person. `--json` prints the collected result as it is.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from emulator.bench.hostload import describe
from emulator.bench.scale import print_scale


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds, and ratios to the bridge of the same round (then medians)."""
    out: dict[str, Any] = {}
    for name in rounds[0]:
        entry = {key: statistics.median(r[name][key] for r in rounds) for key in ("tcp_gbps", "pps", "offered_pps")}
        if name.startswith("engine"):
            for key in ("tcp_gbps", "pps"):
                ratios = [r[name][key] / r["bridge"][key] for r in rounds if r["bridge"][key] > 0]
                entry[f"{key}_ratio"] = statistics.median(ratios) if ratios else None
                # against whichever bridge variant did better in that round
                best = [r[name][key] / max(r["bridge"][key], r["bridge_no_rps"][key]) for r in rounds
                        if max(r["bridge"][key], r["bridge_no_rps"][key]) > 0]
                entry[f"{key}_ratio_best_bridge"] = statistics.median(best) if best else None
        steals = [r[name]["host"]["steal_pct"] for r in rounds if "host" in r[name]]
        entry["steal_pct_max"] = max(steals) if steals else None
        out[name] = entry
    return out


def print_report(result: dict[str, Any]) -> None:
    """Human-readable benchmark summary."""
    if "rounds" in result:
        print_throughput(result)
    if "delay_accuracy" in result:
        print_delay(result["delay_accuracy"])
    for name, c in result.get("rate_accuracy", {}).items():
        print(f"rate {name:<8} measured {c['measured_l2_bps'] / 1e6:.2f} Mbit/s at L2 ({c['error_pct']:+.2f} %)")
    if "memory" in result:
        print(f"engine RSS with {result['memory']['links']} idle links: {result['memory']['rss_mib']:.1f} MiB")
    if "scale" in result:
        print_scale(result["scale"])


def print_throughput(result: dict[str, Any]) -> None:
    """The throughput table: each forwarder's medians and ratios, then capture on against off."""
    print(f"caspian bench: medians of {len(result['rounds'])} alternating rounds, {result['duration_s']:g} s each")
    mask = result.get("rx_cpus")
    cpus = ",".join(str(c) for c in range(64) if mask and int(mask, 16) >> c & 1) or "off"
    print(f"node-side receive steering (RPS) to CPU {cpus}; ratios to `bridge` "
          "(same veths), and in brackets to the better bridge of each round")
    print(f"{'forwarder':<15} {'TCP Gbit/s':>11} {'ratio':>13} {'64B kpps':>9} {'ratio':>13} {'offered kpps':>13} "
          f"{'max steal %':>11}")
    for name in ("bridge", "bridge_no_rps", "engine", "engine_preset", "engine_1g", "engine_1g_capture",
                 "engine_1g_capture128"):
        if name not in result:
            continue
        e = result[name]
        if name.startswith("engine"):
            tr = f"{e['tcp_gbps_ratio']:.2f} [{e['tcp_gbps_ratio_best_bridge']:.2f}]"
            pr = f"{e['pps_ratio']:.2f} [{e['pps_ratio_best_bridge']:.2f}]"
        else:
            tr = pr = "-"
        steal = "-" if e.get("steal_pct_max") is None else f"{e['steal_pct_max']:.1f}"
        print(f"{name:<15} {e['tcp_gbps']:>11.2f} {tr:>13} {e['pps'] / 1e3:>9.0f} {pr:>13} {e['offered_pps'] / 1e3:>13.0f} "
              f"{steal:>11}")

    for name, what in (("engine_1g_capture", "whole frames"), ("engine_1g_capture128", "first 128 bytes, the default")):
        if name not in result or not result["engine_1g"]["tcp_gbps"]:
            continue
        on, off = result[name], result["engine_1g"]
        captured = [r[name]["capture"] for r in result["rounds"] if name in r]
        ratios = [r[name]["tcp_gbps"] / r["engine_1g"]["tcp_gbps"] for r in result["rounds"]
                  if r.get("engine_1g", {}).get("tcp_gbps")]
        print(f"capture on vs off at 1 Gbit/s (both directions, {what}, to pcapng): TCP "
              f"{statistics.median(ratios):.3f}x (rounds {', '.join(f'{x:.3f}' for x in ratios)}), 64B "
              f"{on['pps'] / max(1.0, off['pps']):.3f}x; frames recorded {sum(c['frames'] for c in captured)}, "
              f"not recorded (ring full) {sum(c['lost'] for c in captured)}")


def print_delay(d: dict[str, Any]) -> None:
    """Each delay case: error against configured, the engine's release lateness, the host's load."""
    for case in [k for k, v in d.items() if isinstance(v, dict) and "error_median_us" in v]:
        c = d[case]
        if not c["probes"]:
            print(f"delay error {case:<15} no probes arrived")
            continue
        print(f"delay error {case:<15} median {c['error_median_us']:+.1f} µs  p99 {c['error_p99_us']:+.1f} µs  "
              f"max {c['error_max_us']:+.1f} µs  ({c['probes']} probes; configured {d['configured_delay_ns'] / 1e6:.3f} ms)")
        print(f"  engine release lateness: p50 < {c['release_late_p50_below_us']:g} µs, "
              f"p99 < {c['release_late_p99_below_us']:g} µs, max {c['release_late_max_us']:.1f} µs")
        print(f"  host over the probes: {describe(c.get('host'))}")


def print_json(result: dict[str, Any]) -> None:
    """The whole result as one JSON object."""
    print(json.dumps(result, indent=1))
