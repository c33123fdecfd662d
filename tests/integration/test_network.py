"""The network layer against the real kernel: namespaces, veths, routes, teardown.

The engine is not part of these tests: a kernel bridge in the wire namespace
joins the two ends of each link instead, which is exactly what the engine's
forwarding must be equivalent to.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from pyroute2 import IPRoute

from emulator.network import kernel, processes
from emulator.network.exec import popen_in_node
from emulator.network.state import RunState
from emulator.network.teardown import down_all, teardown
from emulator.network.network import WIRE_MTU, Network
from tests.integration.conftest import chain_topology, requires_root

pytestmark = [pytest.mark.root, requires_root]


def bridge_links(net: Network) -> None:
    """Join l{k}a and l{k}b of every link with a kernel bridge in the wire namespace."""
    with kernel.in_netns(net.wire_netns):
        ipr = IPRoute()
    with ipr:
        for k, (end_a, end_b) in enumerate(net.link_ends.values()):
            bridge = f"br{k}"
            ipr.link("add", ifname=bridge, kind="bridge")
            index = ipr.link_lookup(ifname=bridge)[0]
            for end in (end_a, end_b):
                ipr.link("set", index=ipr.link_lookup(ifname=end)[0], master=index)
            ipr.link("set", index=index, state="up")


def leftovers(prefix: str) -> list[str]:
    """Named namespaces of this prefix still present."""
    try:
        return sorted(n for n in os.listdir(kernel.NETNS_RUN_DIR) if n.startswith(prefix + "-"))
    except FileNotFoundError:
        return []


def run_in(net: Network, node: str, argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    proc = popen_in_node(net.node_netns(node), argv, net.hosts_file, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.skipif(shutil.which("ping") is None, reason="needs ping (Debian: apt-get install iputils-ping)")
def test_chain_pings_end_to_end_and_tears_down(run_state: RunState) -> None:
    net = Network.build(chain_topology(), run_state)
    prefix = run_state.prefix
    assert leftovers(prefix) == sorted(
        [f"{prefix}-wire", f"{prefix}-europe", f"{prefix}-sumgait", f"{prefix}-aktau", f"{prefix}-asia"]
    )
    assert net.link_ends == {"europe-sumgait": ("l0a", "l0b"), "aktau-sumgait": ("l1a", "l1b"), "aktau-asia": ("l2a", "l2b")}
    assert net.interfaces[("europe", "europe-sumgait")] == "sumgait"
    bridge_links(net)

    # name resolution through the hosts file, IPv4 then IPv6, across both routers
    for family in ([], ["-6"]):
        result = run_in(net, "europe", ["ping", *family, "-c", "3", "-i", "0.2", "-W", "2", "asia"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "3 received" in result.stdout, result.stdout
    expected = str(net.addresses.loopback4["asia"].ip)
    assert expected in run_in(net, "europe", ["getent", "ahostsv4", "asia"]).stdout

    # MTUs: node side the link's, wire side 9000; every offload off on both sides
    for link in net.topology.links:
        for end, wire_if in zip((link.a, link.b), net.link_ends[link.name]):
            node_if = net.interfaces[(end.node, link.name)]
            for netns, ifname, mtu in ((net.node_netns(end.node), node_if, link.mtu), (net.wire_netns, wire_if, WIRE_MTU)):
                with kernel.in_netns(netns):
                    ipr = IPRoute()
                with ipr:
                    (info,) = ipr.get_links(ifname=ifname)
                    assert info.get("mtu") == mtu, (netns, ifname)
                sock = kernel.netns_socket(netns)
                with sock:
                    offloads = kernel.read_offloads(sock, ifname)
                assert not any(offloads.values()), (netns, ifname, offloads)

    # sysctls: routers forward, the wire namespace has no IPv6
    with kernel.in_netns(net.node_netns("sumgait")):
        assert kernel.read_sysctl("net.ipv4.ip_forward") == "1"
        assert kernel.read_sysctl("net.ipv6.conf.all.forwarding") == "1"
    with kernel.in_netns(net.node_netns("europe")):
        assert kernel.read_sysctl("net.ipv4.ip_forward") == "0"
    with kernel.in_netns(net.wire_netns):
        assert kernel.read_sysctl("net.ipv6.conf.l0a.disable_ipv6") == "1"

    # a recorded process is stopped by teardown
    sleeper = net.popen("aktau", ["sleep", "300"])
    net.record_process(sleeper.pid, role="sleeper")

    assert net.teardown() == []
    assert sleeper.wait(timeout=5) == -signal.SIGTERM
    assert leftovers(prefix) == []
    assert not os.path.exists(run_state.dir)
    assert net.teardown() == []  # idempotent


def test_context_manager_tears_down(run_state: RunState) -> None:
    with Network.build(chain_topology(), run_state) as net:
        assert len(leftovers(net.prefix)) == 5
    assert leftovers(run_state.prefix) == []
    assert not os.path.exists(run_state.dir)


def test_failed_build_leaves_nothing(run_state: RunState, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(self: Network, ipr: IPRoute, node: str) -> None:
        calls.append(node)
        raise RuntimeError("injected failure while configuring a node")

    monkeypatch.setattr(Network, "_configure_node", broken)
    with pytest.raises(RuntimeError, match="injected"):
        Network.build(chain_topology(), run_state)
    assert calls == ["europe"]  # namespaces and veths existed by then
    assert leftovers(run_state.prefix) == []
    assert not os.path.exists(run_state.dir)


def test_exec_reports_missing_namespace_and_program(run_state: RunState) -> None:
    with Network.build(chain_topology(), run_state) as net:
        assert run_in(net, "asia", ["no-such-program-caspian"]).returncode == 127
        proc = popen_in_node(f"{net.prefix}-nosuchnode", ["true"], net.hosts_file, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 125 and b"does not exist" in err
        # /sys shows the node's own interfaces
        assert "sumgait" in run_in(net, "europe", ["ls", "/sys/class/net"]).stdout.split()


def test_down_all_cleans_up_after_sigkill(run_root: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from emulator.network.state import RunState
        from emulator.network.network import Network
        from tests.integration.conftest import chain_topology
        run = RunState.create(root={run_root!r})
        Network.build(chain_topology(), run)
        print(run.prefix, flush=True)
        time.sleep(300)
        """
    )
    builder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout is not None
        prefix = builder.stdout.readline().strip()
        assert prefix.startswith("csp"), prefix
        assert len(leftovers(prefix)) == 5
        builder.send_signal(signal.SIGKILL)
        builder.wait(timeout=10)
        assert [run.prefix for run in RunState.all(run_root)] == [prefix]
        assert down_all(run_root) == []
        assert leftovers(prefix) == []
        assert RunState.all(run_root) == []
    finally:
        if builder.poll() is None:
            builder.kill()
            builder.wait()
        if builder.stdout is not None:
            builder.stdout.close()
        down_all(run_root)


def test_teardown_spares_a_reused_pid(run_state: RunState) -> None:
    # a record whose start time does not match the live PID (as after PID reuse)
    victim = subprocess.Popen(["sleep", "300"])
    try:
        starttime = processes.process_starttime(victim.pid)
        assert starttime is not None
        run_state.record("process", pid=victim.pid, starttime=starttime + 1, role="impostor")
        assert teardown(run_state, timeout_s=0.5) == []
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_sigterm_tears_down_through_exit(run_root: str) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from emulator.network.signals import install_teardown_handlers
        from emulator.network.state import RunState
        from emulator.network.network import Network
        from tests.integration.conftest import chain_topology
        install_teardown_handlers()
        run = RunState.create(root={run_root!r})
        print(run.prefix, flush=True)
        with Network.build(chain_topology(), run):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    try:
        prefix = result.stdout.strip()
        assert result.returncode == 128 + signal.SIGTERM, result.stderr
        assert prefix and leftovers(prefix) == []
        assert RunState.all(run_root) == []
    finally:
        down_all(run_root)


def test_state_records_and_meta(run_state: RunState) -> None:
    run_state.set_meta("engine_socket", "/run/caspian/x.sock")
    entry = run_state.record("file", path=os.path.join(run_state.dir, "extra"))
    other = RunState.load(run_state.dir)
    assert other.prefix == run_state.prefix
    assert other.get_meta("engine_socket") == "/run/caspian/x.sock"
    assert other.of_kind("file") == [entry]
    with pytest.raises(ValueError):
        run_state.record("process", pid=1)  # no start time: could hit a reused PID
    run_state.forget(entry)
    assert RunState.load(run_state.dir).records == []
