"""What the benchmark measures on its rig (`emulator.bench.rig.Bench`).

- `tcp_gbps`: single-flow TCP goodput (iperf3 `src` -> `dst`, parsed by
  `emulator.traffic.iperf`);
- `flood`: frames per second of a compiled sender flooding broadcast
  frames, counted by a compiled receiver;
- `probes`: one-way delays of timestamped probe frames, optionally over a
  paced background;
- `throughput_round`: every forwarder once, TCP and 64-byte frames;
- `delay_accuracy`, `rate_accuracy`: the engine's added delay and rate
  against what it was configured with;
- `engine_memory`: the engine's resident memory with 10 idle links.

Every timing figure comes with the host's CPU steal and pressure over its
window (`emulator.bench.hostload`).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any

from emulator.bench.hostload import host_load
from emulator.bench.rig import RECEIVER_START_S, Bench, bench_topology, log
from emulator.bench.scale import rss_mib
from emulator.engine.counters import lateness_bound_us
from emulator.engine.options import EngineOptions
from emulator.errors import TestbedError
from emulator.model.linkparams import LinkParams
from emulator.model.presets import get_preset
from emulator.testbed import Testbed
from emulator.traffic.analysis import nearest_rank
from emulator.traffic.iperf import parse_client_json

#: Ethernet preamble+SFD+IFG (20 B) + FCS (4 B): what a frame costs beyond its bytes
L2_OVERHEAD_BYTES = 24
BIG_FRAME = 1514
SMALL_FRAME = 60  # a "64-byte packet": 60 B + 4 B FCS


def tcp_gbps(bench: Bench) -> float:
    """Goodput of one iperf3 TCP flow `src` -> `dst` over the forwarder in place, Gbit/s."""
    bench.ensure_iperf_server()
    seconds = max(2, int(round(bench.duration_s)))
    proc = bench.popen("src", ["iperf3", "-c", "dst", "-t", str(seconds + 1), "-O", "1", "-J"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=seconds + 30)
    try:
        mbps = parse_client_json(out, "tcp").metrics["throughput_mbps"]
    except ValueError as exc:
        raise TestbedError(str(exc)) from exc
    if mbps is None:
        raise TestbedError(f"iperf3 reported no received throughput: {err.strip()[-300:]}")
    return mbps / 1e3


def flood(bench: Bench, size: int, rate_pps: float = 0.0) -> dict[str, Any]:
    """Flood src→dst with `size`-byte frames; what arrived and how fast."""
    duration_s = bench.duration_s
    receiver = bench.tool("dst", "pps-recv", bench.dst_if, duration_s + 1.0)
    time.sleep(RECEIVER_START_S)
    sender = bench.tool("src", "pps-send", bench.src_if, duration_s, size, rate_pps)
    sent = bench.result(sender, duration_s + 30)
    got = bench.result(receiver, duration_s + 30)
    span_s = (got["last_ns"] - got["first_ns"]) / 1e9 if got["packets"] > 1 else 0.0
    pps = (got["packets"] - 1) / span_s if span_s > 0 else 0.0
    return {"pps": pps, "received": got["packets"], "sent": sent["sent"],
            "offered_pps": sent["sent"] / duration_s,
            "l2_bps": pps * (size + L2_OVERHEAD_BYTES) * 8}


def probes(bench: Bench, rate_pps: float, background: tuple[int, float] | None = None) -> list[int]:
    """One-way delays (ns) of probes at `rate_pps`, optionally over paced background frames."""
    duration_s = bench.duration_s
    receiver = bench.tool("dst", "probe-recv", bench.dst_if, duration_s + 1.5)
    load = None
    time.sleep(RECEIVER_START_S)
    if background is not None:
        # batch 1: a smooth background, so a probe waits behind at most one
        # frame (bursts would add queueing that is the model, not an error)
        load = bench.tool("src", "pps-send", bench.src_if, duration_s + 0.5, background[0], background[1], 1)
    sender = bench.tool("src", "probe-send", bench.src_if, duration_s, rate_pps)
    bench.result(sender, duration_s + 30)
    if load is not None:
        bench.result(load, duration_s + 30)
    return bench.result(receiver, duration_s + 30)["delays_ns"]


def throughput_round(bench: Bench, label: str) -> dict[str, Any]:
    """Every forwarder once: TCP goodput and 64-byte frames per second, with the host's load."""
    row: dict[str, Any] = {}
    for fwd in bench.forwarders():
        log(f"{label}: {fwd.name}")
        fwd.start()
        try:
            with host_load() as load:
                tcp = tcp_gbps(bench)
                flooded = flood(bench, SMALL_FRAME)
        finally:
            fwd.stop()
        row[fwd.name] = {"tcp_gbps": tcp, "pps": flooded["pps"], "offered_pps": flooded["offered_pps"],
                         "host": load.to_dict()}
        if fwd.name.startswith("engine_1g_capture"):
            row[fwd.name]["capture"] = bench.last_capture
    return row


def delay_accuracy(bench: Bench) -> dict[str, Any]:
    """Added one-way delay vs configured, at 10 kpps and at 50 % of 1 Gbit/s."""
    configured = get_preset("aktau-sumgait").params().replace(loss=LinkParams().loss)
    out: dict[str, Any] = {"configured_delay_ns": configured.delay_ns}
    bench.bridge_up()
    try:
        base = statistics.median(probes(bench, 10_000))
    finally:
        bench.bridge_down()
    out["bridge_base_owd_ns"] = base
    # (name, params, background, probe rate, engine options): the release-tail
    # variants side by side in one run. "no_qos": without the engine's PM QoS
    # request for zero CPU wake-up latency (idle vCPUs halt; docs/pipeline.md)
    no_qos = EngineOptions(cpu_latency_qos=False)
    loaded = configured.replace(rate_bps=1_000_000_000)
    half_gbit = (BIG_FRAME, 0.5e9 / ((BIG_FRAME + L2_OVERHEAD_BYTES) * 8))
    cases: list[tuple[str, LinkParams, tuple[int, float] | None, float, EngineOptions | None]] = [
        ("500pps", configured, None, 500, None),
        ("500pps_no_qos", configured, None, 500, no_qos),
        ("10kpps", configured, None, 10_000, None),
        ("10kpps_no_qos", configured, None, 10_000, no_qos),
        ("50pct_of_1gbit", loaded, half_gbit, 10_000, None),
    ]
    for name, params, background, rate, options in cases:
        bench.engine_up(params, options)
        try:
            with host_load() as load:
                delays = probes(bench, rate, background)
            link = bench.engine_stats()["bench"]["a_to_b"]
        finally:
            bench.engine_down()
        # The probe's own serialization at the link rate is part of the model, not an error.
        serialization = (SMALL_FRAME + L2_OVERHEAD_BYTES) * 8 * 1e9 / params.rate_bps if params.rate_bps else 0.0
        errors = [d - params.delay_ns - serialization - base for d in delays]
        out[name] = {
            "probes": len(errors),
            "error_median_us": statistics.median(errors) / 1e3 if errors else None,
            "error_p99_us": nearest_rank(sorted(errors), 0.99) / 1e3 if errors else None,
            "error_max_us": max(errors) / 1e3 if errors else None,
            "error_min_us": min(errors) / 1e3 if errors else None,
            # the engine's own timing: how late releases left vs scheduled
            # (all frames of the direction, background included)
            "release_late_p50_below_us": lateness_bound_us(link, 0.5),
            "release_late_p99_below_us": lateness_bound_us(link, 0.99),
            "release_late_max_us": link["release_lateness"]["max_ns"] / 1e3,
            "host": load.to_dict(),
        }
    return out


def rate_accuracy(bench: Bench) -> dict[str, Any]:
    """L2 rate delivered under overload vs configured, at 100 Mbit/s and 1 Gbit/s."""
    out: dict[str, Any] = {}
    for rate in (100_000_000, 1_000_000_000):
        bench.engine_up(LinkParams(rate_bps=rate))
        try:
            # Offer 20 % more than the rate: the queue stays full and the
            # output is the serializer's pace. (An unpaced flood would only
            # starve the receiver's CPU on a 2-core machine.)
            offered_pps = 1.2 * rate / ((BIG_FRAME + L2_OVERHEAD_BYTES) * 8)
            flooded = flood(bench, BIG_FRAME, offered_pps)
            link = bench.engine_stats()["bench"]["a_to_b"]
        finally:
            bench.engine_down()
        out[f"{rate // 1_000_000}mbit"] = {
            "configured_bps": rate,
            "measured_l2_bps": flooded["l2_bps"],
            "error_pct": (flooded["l2_bps"] / rate - 1) * 100,
            "engine_drops": {k: v for k, v in link["drops"].items() if v},
            "kernel_drops": link["kernel_drops"],
        }
    return out


def engine_memory(state_root: str) -> dict[str, Any]:
    """Resident memory of an engine serving 10 idle links."""
    with Testbed(bench_topology(10), state_root=state_root) as testbed:
        time.sleep(0.5)
        assert testbed.engine_pid is not None  # started by the `with`
        rss = rss_mib(testbed.engine_pid)
    return {"links": 10, "rss_mib": rss}
