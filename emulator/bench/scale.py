"""`caspian bench --only scale`: the engine and the network layer at a hundred nodes.

Three figures, measured in one run, each beside the host's CPU steal and
pressure over its window (`hostload`):

- **bring-up / teardown** of the 5x5 and 10x10 router grids (`grid.py`):
  wall time of `Testbed.start()` (namespaces, veths, addresses, routes,
  neighbours, the engine started and answering) and `Testbed.stop()`,
  median of `runs`; beside them the **kernel floor** measured in the same
  run: the same namespaces and veth pairs (same names, MACs and MTUs, the
  node ends and the wire ends up) made by iproute2 from `ip -batch` files
  and removed by one `ip -batch` of `netns delete`. The floor's namespaces
  carry a prefix of their own (`csp…-b-`) and only those it made are deleted.
- **RTT with idle links**: ping RTT between two hosts on one 0-delay link,
  alone, and in a testbed where the same engine also serves 180 idle links
  (a star of 180 hosts around one router, not connected to the pair). The
  same ping rate for both: the RTT depends on it (DESIGN.md).
- **engine memory** (VmRSS) against the number of idle links: stars of 10,
  50 and 100 links, the 180-idle-link testbed (181) and the 10x10 grid (182).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import psutil

from emulator.bench.grid import grid_topology
from emulator.bench.hostload import describe, host_load
from emulator.errors import TestbedError
from emulator.network import naming
from emulator.network.plan import NetworkPlan, network_plan
from emulator.scenario.topology import Link, LinkEnd, Node, Topology

GRIDS = ((5, 5), (10, 10))
IDLE_LINKS = 180
MEMORY_STARS = (10, 50, 100)
PING_COUNT = 200
PING_INTERVAL_S = 0.01
#: pause after a teardown: namespace deletion finishes in a kernel worker
#: after `netns delete` returns, and that work would land in the next figure
SETTLE_S = 2.0
NETNS_DIR = "/run/netns"
#: how long the benchmark keeps retrying a `Testbed.stop()` whose engine is slow to exit
STOP_GIVE_UP_S = 120.0


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- the kernel floor: iproute2 batch files (pure) ------------------------------------


def floor_netns(plan: NetworkPlan, name: str) -> str:
    """The floor's name for the plan's namespace `name`: `{prefix}-b-{node}`.

    The `-b` keeps the floor's namespaces apart from any run's (a run's are
    `{prefix}-{node}` and node names cannot make `b-...` collide with a
    fresh prefix) and marks them as the benchmark's."""
    if not name.startswith(plan.prefix + "-"):
        raise ValueError(f"namespace {name!r} is not of plan {plan.prefix}")
    return f"{plan.prefix}-b{name[len(plan.prefix):]}"


def floor_create_batch(plan: NetworkPlan) -> str:
    """`ip -batch` text making the plan's namespaces and veth pairs from the root namespace.

    Each pair is created directly in its node's namespace with the peer in
    the wire namespace, with the plan's MACs and MTUs, the node end up (as
    `Network.build` makes them)."""
    lines = [f"netns add {floor_netns(plan, ns.name)}" for ns in plan.namespaces]
    for v in plan.veths:
        lines.append(
            f"link add {v.ifname} netns {floor_netns(plan, v.netns)} address {v.mac} mtu {v.mtu} up "
            f"type veth peer name {v.wire_ifname} netns {floor_netns(plan, v.wire_netns)} "
            f"address {v.wire_mac} mtu {v.wire_mtu}"
        )
    return "\n".join(lines) + "\n"


def floor_links_up_batch(plan: NetworkPlan, netns: str) -> str:
    """`ip -n NS -batch` text setting up the plan's `links_up` of namespace `netns` (plan name)."""
    return "".join(f"link set dev {u.ifname} up\n" for u in plan.links_up if u.netns == netns)


def floor_delete_batch(names: list[str]) -> str:
    """`ip -batch` text deleting the namespaces `names` (their veths go with them)."""
    return "".join(f"netns delete {name}\n" for name in names)


# --- the kernel floor: running it -----------------------------------------------------


def _ip_batch(text: str, *, netns: str | None = None, force: bool = False) -> float:
    """Run `ip [-n NS] [-force] -batch FILE` on `text`; its wall time (s). TestbedError if it fails."""
    with tempfile.NamedTemporaryFile("w", prefix="caspian-bench-", suffix=".ip") as fh:
        fh.write(text)
        fh.flush()
        argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", fh.name]
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True)
        elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise TestbedError(f"{' '.join(argv[:-1])} failed: {proc.stderr.strip()[-300:]}")
    return elapsed


def _existing(names: list[str]) -> list[str]:
    """Those of `names` that are namespaces now (bind mounts under /run/netns)."""
    try:
        present = set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []
    return [name for name in names if name in present]


def kernel_floor(topology: Topology) -> dict[str, Any]:
    """Make and delete `topology`'s namespaces and veths with iproute2; wall times and host load.

    `up_s` covers the create batch and the links-up batch of every namespace
    that has links to set up besides `lo` (the wire); the nodes' loopbacks
    are left down (one `ip -n` process each would time process start-up,
    not the kernel). Whatever of its own namespaces exists afterwards is
    deleted in a `finally`, also when a batch failed half-way.
    """
    plan = network_plan(topology, naming.new_prefix())
    names = [floor_netns(plan, ns.name) for ns in plan.namespaces]
    deleted = False
    try:
        with host_load() as up_load:
            up_s = _ip_batch(floor_create_batch(plan))
            for ns in plan.namespaces:
                text = floor_links_up_batch(plan, ns.name)
                if ns.node is None and text:
                    up_s += _ip_batch(text, netns=floor_netns(plan, ns.name))
        with host_load() as down_load:
            down_s = _ip_batch(floor_delete_batch(names))
        deleted = True
    finally:
        if not deleted:
            left = _existing(names)
            if left:
                try:
                    _ip_batch(floor_delete_batch(left), force=True)
                except TestbedError as problem:
                    _log(f"kernel floor cleanup: {problem}")
    return {"namespaces": len(names), "veths": len(plan.veths), "up_s": up_s, "down_s": down_s,
            "up_host": up_load.to_dict(), "down_host": down_load.to_dict()}


# --- testbeds ---------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident memory (VmRSS) of process `pid`, MiB."""
    return psutil.Process(pid).memory_info().rss / (1024 * 1024)


def testbed_cycle(
    topology: Topology, state_root: str, during: Callable[[Any], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Start a Testbed of `topology`, run `during(testbed)`, stop it: wall times, host load, what `during` gave."""
    from emulator.testbed import Testbed

    testbed = Testbed(topology, state_root=state_root)
    out: dict[str, Any] = {}
    with host_load() as up_load:
        started = time.monotonic()
        testbed.start()
        out["up_s"] = time.monotonic() - started
    out["up_host"] = up_load.to_dict()
    stopped = False
    try:
        out["shards"] = testbed.engine_options.shards
        if during is not None:
            out.update(during(testbed))
        with host_load() as down_load:
            started = time.monotonic()
            problems, out["stop_timeouts"] = _stop(testbed)
            out["down_s"] = time.monotonic() - started
        stopped = True
        out["down_host"] = down_load.to_dict()
        if problems:
            raise TestbedError("teardown left problems: " + "; ".join(problems))
    finally:
        if not stopped:
            _stop(testbed)
    return out


def _stop(testbed: Any, give_up_s: float = STOP_GIVE_UP_S) -> tuple[list[str], int]:
    """`testbed.stop()` until it completes; its problems and how many times it timed out.

    An engine serving hundreds of links can take longer to exit than
    `Testbed.stop()` waits for it (each AF_PACKET socket's close waits for
    an RCU grace period), and then `stop()` raises TimeoutExpired with the
    engine killed but not yet gone. The benchmark retries, so the figure is
    the time until the testbed is really down, and reports the timeouts."""
    deadline = time.monotonic() + give_up_s
    timeouts = 0
    while True:
        try:
            return testbed.stop(), timeouts
        except subprocess.TimeoutExpired:
            timeouts += 1
            if time.monotonic() > deadline:
                raise


def _settled_rss(testbed: Any) -> dict[str, Any]:
    time.sleep(0.5)  # the engine's buffers are touched once it has polled every socket
    return {"engine_rss_mib": rss_mib(testbed.engine_pid)}


def star_topology(n_links: int, *, with_pair: bool = False) -> Topology:
    """A router `hub` with `n_links` hosts around it; with `with_pair` also `src`—`dst`, apart from it.

    The pair's link comes first; the star's links stay idle (nothing is sent on them)."""
    nodes: list[Node] = []
    links: list[Link] = []
    if with_pair:
        nodes += [Node("src"), Node("dst")]
        links.append(Link("pair", LinkEnd("src"), LinkEnd("dst")))
    if n_links:
        nodes.append(Node("hub", role="router"))
        nodes += [Node(f"h{i}") for i in range(n_links)]
        links += [Link(f"l{i}", LinkEnd("hub"), LinkEnd(f"h{i}")) for i in range(n_links)]
    name = f"bench-star-{n_links}" + ("-pair" if with_pair else "")
    return Topology(nodes=tuple(nodes), links=tuple(links), name=name, source="<bench>")


def _pings(testbed: Any) -> dict[str, Any]:
    from emulator.traffic.ping import ping

    ping(testbed, "src", "dst", count=10, interval_s=PING_INTERVAL_S)  # warm up: caches, first-packet paths
    with host_load() as load:
        result = ping(testbed, "src", "dst", count=PING_COUNT, interval_s=PING_INTERVAL_S,
                      timeout_s=PING_COUNT * PING_INTERVAL_S + 30)
    if not result.rtts_ms:
        raise TestbedError("ping src -> dst got no replies in the scale benchmark")
    out = {"rtts_us": [ms * 1e3 for ms in result.rtts_ms.values()], "sent": result.sent, "host": load.to_dict()}
    out.update(_settled_rss(testbed))
    return out


# --- the part -------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _worst_host(loads: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The window with the most steal among `loads` (what to print beside a median)."""
    return max(loads, key=lambda load: load["steal_pct"]) if loads else None


def _rtt_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rtts = sorted(r for run in runs for r in run["rtts_us"])
    return {
        "pings": len(rtts),
        "sent": sum(run["sent"] for run in runs),
        "avg_us": statistics.fmean(rtts),
        "p50_us": statistics.median(rtts),
        "host": _worst_host([run["host"] for run in runs]),
        "per_run": [{"avg_us": statistics.fmean(run["rtts_us"]), "p50_us": statistics.median(run["rtts_us"]),
                     "host": run["host"]} for run in runs],
    }


def scale(state_root: str, runs: int) -> dict[str, Any]:
    """The scale part: bring-up and teardown against the kernel floor, RTT beside idle links, memory."""
    out: dict[str, Any] = {"runs": runs, "ping": {"count": PING_COUNT, "interval_ms": PING_INTERVAL_S * 1e3}}
    cycles: dict[str, dict[str, list[dict[str, Any]]]] = {f"{r}x{c}": {"testbed": [], "floor": []} for r, c in GRIDS}
    alone: list[dict[str, Any]] = []
    idle: list[dict[str, Any]] = []
    for run in range(runs):
        for rows, cols in GRIDS:
            name = f"{rows}x{cols}"
            topology = grid_topology(rows, cols)
            _log(f"scale {run + 1}/{runs}: kernel floor {name}")
            cycles[name]["floor"].append(kernel_floor(topology))
            time.sleep(SETTLE_S)
            _log(f"scale {run + 1}/{runs}: testbed {name}")
            cycles[name]["testbed"].append(testbed_cycle(topology, state_root, _settled_rss))
            time.sleep(SETTLE_S)
        _log(f"scale {run + 1}/{runs}: ping, pair alone")
        alone.append(testbed_cycle(star_topology(0, with_pair=True), state_root, _pings))
        time.sleep(SETTLE_S)
        _log(f"scale {run + 1}/{runs}: ping, pair beside {IDLE_LINKS} idle links")
        idle.append(testbed_cycle(star_topology(IDLE_LINKS, with_pair=True), state_root, _pings))
        time.sleep(SETTLE_S)

    grids: dict[str, Any] = {}
    for (rows, cols), (name, cycle) in zip(GRIDS, cycles.items()):
        tb, fl = cycle["testbed"], cycle["floor"]
        grids[name] = {
            "nodes": rows * cols + 2,
            "links": len(grid_topology(rows, cols).links),
            "up_s": _median([c["up_s"] for c in tb]),
            "down_s": _median([c["down_s"] for c in tb]),
            "floor_up_s": _median([c["up_s"] for c in fl]),
            "floor_down_s": _median([c["down_s"] for c in fl]),
            "up_host": _worst_host([c["up_host"] for c in tb]),
            "down_host": _worst_host([c["down_host"] for c in tb]),
            "floor_up_host": _worst_host([c["up_host"] for c in fl]),
            "floor_down_host": _worst_host([c["down_host"] for c in fl]),
            "engine_rss_mib": _median([c["engine_rss_mib"] for c in tb]),
            "shards": tb[0]["shards"],
            # Testbed.stop() raising TimeoutExpired (engine slower to exit than it waits)
            "stop_timeouts": sum(c["stop_timeouts"] for c in tb),
            "per_run": {"testbed": tb, "floor": fl},
        }
    out["bringup"] = grids

    rtt_alone, rtt_idle = _rtt_summary(alone), _rtt_summary(idle)
    out["rtt_idle_links"] = {
        "idle_links": IDLE_LINKS,
        "alone": rtt_alone,
        "with_idle": rtt_idle,
        "avg_diff_us": rtt_idle["avg_us"] - rtt_alone["avg_us"],
        "p50_diff_us": rtt_idle["p50_us"] - rtt_alone["p50_us"],
        "shards": {"alone": alone[0]["shards"], "with_idle": idle[0]["shards"]},
    }

    memory: list[dict[str, Any]] = []
    for n in MEMORY_STARS:
        _log(f"scale: engine memory, {n} idle links")
        cycle = testbed_cycle(star_topology(n), state_root, _settled_rss)
        memory.append({"links": n, "rss_mib": cycle["engine_rss_mib"], "topology": f"star of {n}"})
        time.sleep(SETTLE_S)
    memory.append({"links": IDLE_LINKS + 1, "rss_mib": _median([c["engine_rss_mib"] for c in idle]),
                   "topology": f"pair + star of {IDLE_LINKS}"})
    memory.append({"links": grids["10x10"]["links"], "rss_mib": grids["10x10"]["engine_rss_mib"],
                   "topology": "10x10 grid"})
    out["memory"] = memory
    return out


# --- printing -------------------------------------------------------------------------


def print_scale(s: dict[str, Any]) -> None:
    """Human-readable lines of the scale part."""
    print(f"scale: medians of {s['runs']} run(s); beside each figure the host's load in its window "
          "(the worst of the runs)")
    for name, g in s["bringup"].items():
        print(f"bring-up {name} grid ({g['nodes']} nodes, {g['links']} links): up {g['up_s']:.2f} s "
              f"[{describe(g['up_host'])}], down {g['down_s']:.2f} s [{describe(g['down_host'])}]")
        if g["stop_timeouts"]:
            print(f"  Testbed.stop() timed out waiting for the engine {g['stop_timeouts']} time(s) and was "
                  "retried: `down` is until the testbed was gone")
        print(f"  kernel floor (ip -batch, same namespaces and veths): up {g['floor_up_s']:.2f} s "
              f"[{describe(g['floor_up_host'])}], down {g['floor_down_s']:.2f} s [{describe(g['floor_down_host'])}]")
    r = s["rtt_idle_links"]
    ping = s["ping"]
    for label, key in (("alone", "alone"), (f"beside {r['idle_links']} idle links", "with_idle")):
        c = r[key]
        print(f"ping RTT pair {label}: avg {c['avg_us']:.1f} µs, p50 {c['p50_us']:.1f} µs "
              f"({c['pings']}/{c['sent']} replies, {ping['interval_ms']:g} ms apart) [{describe(c['host'])}]")
    print(f"  difference: avg {r['avg_diff_us']:+.1f} µs, p50 {r['p50_diff_us']:+.1f} µs (target within 10 µs)")
    print("engine RSS by idle links: " + ", ".join(f"{m['links']}: {m['rss_mib']:.1f} MiB" for m in s["memory"]))
