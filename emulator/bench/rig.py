"""The benchmark's rig: two hosts on one link, and the ways of forwarding it.

`Bench` builds a `Network` (`src` and `dst` joined by the link `bench`)
with node-side receive steering, and forwards that link's frames in the
wire namespace one way at a time (`Forwarder`): a kernel bridge enslaving
the two wire ends, or caspian's engine (`EngineProcess`) with some
parameters, with or without a capture. A `Testbed` would start one engine
for good; the benchmark swaps the forwarder on the same veths between
measurements, so it sits on the `Network` underneath instead.

It also starts the traffic tools inside the nodes (`tool`, `popen`), placed
on CPUs so that they do not share the engine's core. What is measured with
them is `emulator.bench.measure`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

from pyroute2 import IPRoute

from emulator.engine.fastpath import LinkSpec
from emulator.engine.options import EngineOptions
from emulator.engine.process import EngineProcess
from emulator.errors import TestbedError
from emulator.model.linkparams import LinkParams
from emulator.model.presets import get_preset
from emulator.network import kernel
from emulator.network.network import Network
from emulator.network.processes import stop_children
from emulator.network.state import DEFAULT_ROOT, RunState
from emulator.network.teardown import teardown
from emulator.scenario.topology import DEFAULT_MTU, Link, LinkEnd, Node, Topology
from emulator.testbed import FRAME_OVERHEAD_BYTES

#: how long a receiver just started in a node is given to listen before its sender starts
RECEIVER_START_S = 0.3


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the report)."""
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
    """The benchmark's network, its forwarders and the tools run in its nodes."""

    def __init__(self, duration_s: float, state_root: str = DEFAULT_ROOT) -> None:
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
        self.last_capture: dict[str, Any] = {}
        self.src_if = self.network.interfaces[("src", "bench")]
        self.dst_if = self.network.interfaces[("dst", "bench")]

    # -- forwarders ------------------------------------------------------------

    def bridge_up(self) -> None:
        """A kernel bridge `br0` in the wire namespace enslaving both ends of the link."""
        a, b = self.network.link_ends["bench"]
        with kernel.in_netns(self.network.wire_netns):
            with IPRoute() as ipr:
                ipr.link("add", ifname="br0", kind="bridge")
                br = ipr.link_lookup(ifname="br0")[0]
                for port in (a, b):
                    ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=br)
                ipr.link("set", index=br, state="up")

    def bridge_down(self) -> None:
        """Delete the bridge (its ports are released)."""
        with kernel.in_netns(self.network.wire_netns):
            with IPRoute() as ipr:
                ipr.link("del", index=ipr.link_lookup(ifname="br0")[0])

    def bridge_no_rps_up(self) -> None:
        """The bridge with node-side receive steering off (the kernel's default)."""
        self.steer("0")
        self.bridge_up()

    def bridge_no_rps_down(self) -> None:
        """Take the bridge down and steering back on."""
        self.bridge_down()
        self.steer(self.rx_cpus)

    def engine_up(self, params: LinkParams, options: EngineOptions | None = None) -> None:
        """The engine forwarding the link with `params` both ways."""
        a, b = self.network.link_ends["bench"]
        spec = LinkSpec("bench", "src", "dst", a, b, DEFAULT_MTU + FRAME_OVERHEAD_BYTES, params, params, 1, 2)
        self.engine = EngineProcess(self.run, self.network.wire_netns, [spec], options or EngineOptions())
        self.engine.start()

    def engine_stats(self) -> dict[str, Any]:
        """The running engine's counters (EngineClient.stats)."""
        assert self.engine is not None and self.engine.client is not None
        return self.engine.client.stats()

    def engine_down(self) -> None:
        """Stop the engine if one runs."""
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
        """Stop the capture (its figures go to `last_capture`), delete the file, stop the engine."""
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
        """The forwarders of a throughput round, the reference bridge first."""
        preset = get_preset("aktau-sumgait").params()
        wave = LinkParams(rate_bps=1_000_000_000)
        return [
            Forwarder("bridge", self.bridge_up, self.bridge_down),
            # Reference: the bridge on veths without receive steering (the
            # kernel's default), in case steering is what helps the bridge less.
            Forwarder("bridge_no_rps", self.bridge_no_rps_up, self.bridge_no_rps_down),
            Forwarder("engine", lambda: self.engine_up(LinkParams()), self.engine_down),
            Forwarder("engine_preset", lambda: self.engine_up(preset), self.engine_down),
            # capture on and off at the cable's lit wave (1 Gbit/s), side by side
            Forwarder("engine_1g", lambda: self.engine_up(wave), self.engine_down),
            Forwarder("engine_1g_capture", lambda: self.capture_up(wave, 0), self.capture_down),
            # ... and with the default snaplen: frames cut to their first 128 bytes (every header)
            Forwarder("engine_1g_capture128", lambda: self.capture_up(wave, 128), self.capture_down),
        ]

    # -- tools in the nodes ----------------------------------------------------

    def popen(self, node: str, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen:
        """Start `argv` in `node`, placed off the engine's core (see `place`)."""
        proc = self.network.popen(node, argv, **popen_kwargs)
        self.place(proc.pid)
        return proc

    def tool(self, node: str, *args: Any) -> subprocess.Popen:
        """Start `python -m emulator.bench.tools ARGS` in `node`, its JSON on stdout."""
        return self.popen(node, [sys.executable, "-m", "emulator.bench.tools", *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def place(self, pid: int) -> None:
        """Traffic tools keep off the engine's core while an engine runs; with
        the bridge they may use every CPU (its forwarding runs in their context)."""
        cpus = EngineOptions().other_cpus() if self.engine is not None else set(os.sched_getaffinity(0))
        try:
            os.sched_setaffinity(pid, cpus)
        except ProcessLookupError:
            pass

    @staticmethod
    def result(proc: subprocess.Popen, timeout_s: float) -> dict[str, Any]:
        """The JSON a tool printed (TestbedError if it failed)."""
        out, err = proc.communicate(timeout=timeout_s)
        if proc.returncode != 0:
            raise TestbedError(f"bench tool failed ({proc.returncode}): {err.strip()[-300:]}")
        return json.loads(out)

    def ensure_iperf_server(self) -> subprocess.Popen:
        """The iperf3 server in `dst`, started (and recorded) on first use."""
        if self.iperf_server is None:
            self.iperf_server = self.network.popen("dst", ["iperf3", "-s"], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
            self.network.record_process(self.iperf_server.pid, "iperf3-server")
            time.sleep(RECEIVER_START_S)
        self.place(self.iperf_server.pid)
        return self.iperf_server

    def close(self) -> None:
        """Stop the engine and the iperf3 server, tear the network down."""
        self.engine_down()
        if self.iperf_server is not None:
            stop_children([self.iperf_server], 5)
        problems = teardown(self.run)
        for problem in problems:
            log(f"teardown: {problem}")
