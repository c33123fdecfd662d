"""`caspian bench`: the fast path against the Linux bridge on the same veths.

One run builds two hosts (`src`, `dst`) joined by one link and alternates, in
rounds, three ways of forwarding that link's frames in the wire namespace:

- `bridge`: a kernel bridge enslaving the two wire ends (the limit here);
- `engine`: caspian's engine with no impairment;
- `engine_preset`: the engine with the aktau-sumgait preset.

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
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

from pyroute2 import IPRoute

from emulator.bench.hostload import describe, host_load
from emulator.engine.counters import lateness_bound_us
from emulator.engine.fastpath import EngineOptions, LinkSpec
from emulator.engine.process import EngineProcess
from emulator.errors import EnvironmentProblem, TestbedError
from emulator.model.linkparams import LinkParams
from emulator.model.presets import get_preset
from emulator.network import kernel
from emulator.network.state import DEFAULT_ROOT, RunState
from emulator.network.teardown import teardown
from emulator.scenario.topology import DEFAULT_MTU, Link, LinkEnd, Node, Topology
from emulator.testbed import FRAME_OVERHEAD_BYTES
from emulator.traffic.analysis import nearest_rank

#: Ethernet preamble+SFD+IFG (20 B) + FCS (4 B): what a frame costs beyond its bytes
L2_OVERHEAD_BYTES = 24
BIG_FRAME = 1514
SMALL_FRAME = 60  # a "64-byte packet": 60 B + 4 B FCS


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def bench_topology(n_hosts: int = 2) -> Topology:
    """`src` and `dst` (or a star of hosts around a router for the memory check)."""
    if n_hosts == 2:
        return Topology(nodes=(Node("src"), Node("dst")), links=(Link("bench", LinkEnd("src"), LinkEnd("dst")),),
                        name="bench", source="<bench>")
    hosts = tuple(Node(f"h{i}") for i in range(n_hosts))
    links = tuple(Link(f"l{i}", LinkEnd("hub"), LinkEnd(f"h{i}")) for i in range(n_hosts))
    return Topology(nodes=(Node("hub", role="router"),) + hosts, links=links, name="bench-star", source="<bench>")


@dataclass
class Forwarder:
    """One way of forwarding the bench link: set up, measure, take down."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None]


class Bench:
    """The benchmark's testbed and its measurements."""

    def __init__(self, duration_s: float, state_root: str = DEFAULT_ROOT) -> None:
        from emulator.network.testbed import Network

        self.duration_s = duration_s
        self.topology = bench_topology()
        self.run = RunState.create(state_root)
        try:
            self.rx_cpus = EngineOptions().receive_cpu_mask()
            self.network = Network.build(self.topology, self.run, rx_cpus=self.rx_cpus)
        except BaseException:
            teardown(self.run)
            raise
        self.engine: EngineProcess | None = None
        self.iperf_server: subprocess.Popen | None = None
        self.src_if = self.network.interfaces[("src", "bench")]
        self.dst_if = self.network.interfaces[("dst", "bench")]

    # -- forwarders ------------------------------------------------------------

    def bridge_up(self) -> None:
        a, b = self.network.link_ends["bench"]
        with kernel.in_netns(self.network.wire_netns):
            with IPRoute() as ipr:
                ipr.link("add", ifname="br0", kind="bridge")
                br = ipr.link_lookup(ifname="br0")[0]
                for port in (a, b):
                    ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=br)
                ipr.link("set", index=br, state="up")

    def bridge_down(self) -> None:
        with kernel.in_netns(self.network.wire_netns):
            with IPRoute() as ipr:
                ipr.link("del", index=ipr.link_lookup(ifname="br0")[0])

    def engine_up(self, params: LinkParams, options: EngineOptions | None = None) -> None:
        a, b = self.network.link_ends["bench"]
        spec = LinkSpec("bench", "src", "dst", a, b, DEFAULT_MTU + FRAME_OVERHEAD_BYTES, params, params, 1, 2)
        self.engine = EngineProcess(self.run, self.network.wire_netns, [spec], options or EngineOptions())
        self.engine.start()

    def engine_stats(self) -> dict[str, Any]:
        assert self.engine is not None and self.engine.client is not None
        return self.engine.client.stats()

    def engine_down(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    def capture_up(self, params: LinkParams, snaplen: int) -> None:
        """The engine with both directions captured to a pcapng file (capture never slows forwarding)."""
        self.engine_up(params)
        assert self.engine is not None and self.engine.client is not None
        self.capture_path = os.path.join(tempfile.gettempdir(), f"caspian-bench-{os.getpid()}.pcapng")
        self.engine.client.capture_start([{"link": "bench"}], self.capture_path, snaplen=snaplen)

    def capture_down(self) -> None:
        assert self.engine is not None and self.engine.client is not None
        self.last_capture = self.engine.client.capture_stop()
        self.last_capture["bytes"] = os.path.getsize(self.capture_path)
        os.unlink(self.capture_path)   # GBs at line rate: only its figures are kept
        self.engine_down()

    def steer(self, mask: str | None) -> None:
        """Set node-side receive steering (RPS); "0" turns it off."""
        if self.rx_cpus:
            self.network.steer_receive(mask or "0")

    def forwarders(self) -> list[Forwarder]:
        preset = get_preset("aktau-sumgait").params()
        wave = LinkParams(rate_bps=1_000_000_000)
        return [
            Forwarder("bridge", self.bridge_up, self.bridge_down),
            # Reference: the bridge on veths without receive steering (the
            # kernel's default), in case steering is what helps the bridge less.
            Forwarder("bridge_no_rps", lambda: (self.steer("0"), self.bridge_up()),
                      lambda: (self.bridge_down(), self.steer(self.rx_cpus))),
            Forwarder("engine", lambda: self.engine_up(LinkParams()), self.engine_down),
            Forwarder("engine_preset", lambda: self.engine_up(preset), self.engine_down),
            # capture on and off at the cable's lit wave (1 Gbit/s), side by side
            Forwarder("engine_1g", lambda: self.engine_up(wave), self.engine_down),
            Forwarder("engine_1g_capture", lambda: self.capture_up(wave, 0), self.capture_down),
            # ... and with the default snaplen: frames cut to their first 128 bytes (every header)
            Forwarder("engine_1g_capture128", lambda: self.capture_up(wave, 128), self.capture_down),
        ]

    # -- measurements ----------------------------------------------------------

    def _tool(self, node: str, *args: Any) -> subprocess.Popen:
        proc = self.network.popen(node, [sys.executable, "-m", "emulator.bench.tools", *map(str, args)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._place(proc.pid)
        return proc

    def _place(self, pid: int) -> None:
        """Traffic tools keep off the engine's core while an engine runs; with
        the bridge they may use every CPU (its forwarding runs in their context)."""
        cpus = EngineOptions().other_cpus() if self.engine is not None else set(os.sched_getaffinity(0))
        try:
            os.sched_setaffinity(pid, cpus)
        except ProcessLookupError:
            pass

    @staticmethod
    def _result(proc: subprocess.Popen, timeout_s: float) -> dict[str, Any]:
        out, err = proc.communicate(timeout=timeout_s)
        if proc.returncode != 0:
            raise TestbedError(f"bench tool failed ({proc.returncode}): {err.strip()[-300:]}")
        return json.loads(out)

    def tcp_gbps(self) -> float:
        if self.iperf_server is None:
            self.iperf_server = self.network.popen("dst", ["iperf3", "-s"], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
            self.network.record_process(self.iperf_server.pid, "iperf3-server")
            time.sleep(0.3)
        self._place(self.iperf_server.pid)
        seconds = max(2, int(round(self.duration_s)))
        proc = self.network.popen("src", ["iperf3", "-c", "dst", "-t", str(seconds + 1), "-O", "1", "-J"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._place(proc.pid)
        out, err = proc.communicate(timeout=seconds + 30)
        data = json.loads(out)
        if "error" in data:
            raise TestbedError(f"iperf3: {data['error']}")
        return data["end"]["sum_received"]["bits_per_second"] / 1e9

    def flood(self, size: int, rate_pps: float = 0.0) -> dict[str, Any]:
        """Flood src→dst with `size`-byte frames; what arrived and how fast."""
        receiver = self._tool("dst", "pps-recv", self.dst_if, self.duration_s + 1.0)
        time.sleep(0.3)
        sender = self._tool("src", "pps-send", self.src_if, self.duration_s, size, rate_pps)
        sent = self._result(sender, self.duration_s + 30)
        got = self._result(receiver, self.duration_s + 30)
        span_s = (got["last_ns"] - got["first_ns"]) / 1e9 if got["packets"] > 1 else 0.0
        pps = (got["packets"] - 1) / span_s if span_s > 0 else 0.0
        return {"pps": pps, "received": got["packets"], "sent": sent["sent"],
                "offered_pps": sent["sent"] / self.duration_s,
                "l2_bps": pps * (size + L2_OVERHEAD_BYTES) * 8}

    def probes(self, rate_pps: float, background: tuple[int, float] | None = None) -> list[int]:
        """One-way delays (ns) of probes at `rate_pps`, optionally over paced background frames."""
        receiver = self._tool("dst", "probe-recv", self.dst_if, self.duration_s + 1.5)
        load = None
        time.sleep(0.3)
        if background is not None:
            # batch 1: a smooth background, so a probe waits behind at most one
            # frame (bursts would add queueing that is the model, not an error)
            load = self._tool("src", "pps-send", self.src_if, self.duration_s + 0.5, background[0], background[1], 1)
        sender = self._tool("src", "probe-send", self.src_if, self.duration_s, rate_pps)
        self._result(sender, self.duration_s + 30)
        if load is not None:
            self._result(load, self.duration_s + 30)
        return self._result(receiver, self.duration_s + 30)["delays_ns"]

    def close(self) -> None:
        self.engine_down()
        if self.iperf_server is not None:
            self.iperf_server.terminate()
            self.iperf_server.wait(timeout=5)
        problems = teardown(self.run)
        for problem in problems:
            _log(f"teardown: {problem}")


def delay_accuracy(bench: Bench) -> dict[str, Any]:
    """Added one-way delay vs configured, at 10 kpps and at 50 % of 1 Gbit/s."""
    configured = get_preset("aktau-sumgait").params().replace(loss=LinkParams().loss)
    out: dict[str, Any] = {"configured_delay_ns": configured.delay_ns}
    bench.bridge_up()
    try:
        base = statistics.median(bench.probes(10_000))
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
                delays = bench.probes(rate, background)
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
            flood = bench.flood(BIG_FRAME, offered_pps)
            link = bench.engine_stats()["bench"]["a_to_b"]
        finally:
            bench.engine_down()
        out[f"{rate // 1_000_000}mbit"] = {
            "configured_bps": rate,
            "measured_l2_bps": flood["l2_bps"],
            "error_pct": (flood["l2_bps"] / rate - 1) * 100,
            "engine_drops": {k: v for k, v in link["drops"].items() if v},
            "kernel_drops": link["kernel_drops"],
        }
    return out


def engine_memory(state_root: str) -> dict[str, Any]:
    """Resident memory of an engine serving 10 idle links."""
    from emulator.testbed import Testbed

    with Testbed(bench_topology(10), state_root=state_root) as testbed:
        time.sleep(0.5)
        with open(f"/proc/{testbed.engine_pid}/status") as fh:
            rss_kib = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return {"links": 10, "rss_mib": rss_kib / 1024}


PARTS = ("throughput", "delay", "rate", "memory", "scale")
#: the parts that use the `src`/`dst` bench link (and iperf3)
_BENCH_LINK_PARTS = ("throughput", "delay", "rate")


def run_bench(*, as_json: bool, runs: int = 3, duration_s: float = 5.0, state_root: str = DEFAULT_ROOT,
              only: tuple[str, ...] = PARTS) -> int:
    """Run the benchmark; print a table (or one JSON object). Exit code 0."""
    if "throughput" in only and shutil.which("iperf3") is None:
        raise EnvironmentProblem("iperf3 is missing (apt-get install iperf3, or run `make bench`)")
    rounds: list[dict[str, Any]] = []
    result: dict[str, Any] = {"duration_s": duration_s}
    bench = Bench(duration_s, state_root) if any(part in only for part in _BENCH_LINK_PARTS) else None
    if bench is not None:
        result["rx_cpus"] = bench.rx_cpus
    try:
        for r in range(runs if "throughput" in only else 0):
            row: dict[str, Any] = {}
            for fwd in bench.forwarders():
                _log(f"round {r + 1}/{runs}: {fwd.name}")
                fwd.start()
                try:
                    with host_load() as load:
                        tcp = bench.tcp_gbps()
                        flood = bench.flood(SMALL_FRAME)
                finally:
                    fwd.stop()
                row[fwd.name] = {"tcp_gbps": tcp, "pps": flood["pps"], "offered_pps": flood["offered_pps"],
                                 "host": load.to_dict()}
                if fwd.name.startswith("engine_1g_capture"):
                    row[fwd.name]["capture"] = bench.last_capture
            rounds.append(row)
        if rounds:
            result.update(summarize(rounds))
            result["rounds"] = rounds
        if "delay" in only:
            _log("delay accuracy")
            result["delay_accuracy"] = delay_accuracy(bench)
        if "rate" in only:
            _log("rate accuracy")
            result["rate_accuracy"] = rate_accuracy(bench)
    finally:
        if bench is not None:
            bench.close()
    if "memory" in only:
        _log("memory with 10 idle links")
        result["memory"] = engine_memory(state_root)
    if "scale" in only:
        from emulator.bench.scale import scale

        _log("scale: grid bring-up, RTT beside idle links, memory by link count")
        result["scale"] = scale(state_root, runs)
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        print_report(result)
    return 0


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
        from emulator.bench.scale import print_scale

        print_scale(result["scale"])


def print_throughput(result: dict[str, Any]) -> None:
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
