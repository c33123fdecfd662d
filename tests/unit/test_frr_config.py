"""FRR configuration text, `routing.daemon` in scenario files, FRR's logs and JSON (no root)."""

from __future__ import annotations

import os
import shutil

import pytest

from emulator.errors import ScenarioError
from emulator.network.addressing import address_plan
from emulator.network.naming import interface_names
from emulator.routing.events import frr_log_events
from emulator.routing.frr import daemons_of, frr_configs, speakers
from emulator.routing.frr_daemons import parse_bfd_peers, parse_ospf_neighbours, parse_routes
from emulator.routing.state import BfdSession, OspfNeighbour, Route
from emulator.scenario.loader import parse_topology
from tests.unit.test_bird_config import BASE, RING

FRR_RING = RING.replace("hello: 1s}", "hello: 1s, daemon: frr}") + "  rd-right: {ends: [rd, right], delay: 50us}\n" \
    .replace("rd-right", "rd-right")
FRR_RING = FRR_RING.replace("  rd: {role: router}\n", "  rd: {role: router}\n  right: {role: host}\n")


def configs(node: str = "ra", text: str = FRR_RING) -> dict[str, str]:
    topology = parse_topology(text, source="<ring>")
    return frr_configs(topology, address_plan(topology), node, interface_names(topology), "/run/x/frr/" + node)


def test_router_runs_zebra_bfdd_ospfd_and_hosts_zebra_ospfd() -> None:
    topology = parse_topology(FRR_RING, source="<ring>")
    assert topology.routing.daemon == "frr"
    assert daemons_of(topology, "ra") == ("zebra", "bfdd", "ospfd")
    assert daemons_of(topology, "left") == ("zebra", "ospfd")
    assert speakers(topology) == ["left", "ra", "rb", "rc", "rd", "right"]
    assert set(configs("ra")) == {"zebra.conf", "bfdd.conf", "ospfd.conf"}
    assert set(configs("left")) == {"zebra.conf", "ospfd.conf"}
    no_bfd = FRR_RING.replace("bfd: {interval: 100ms, multiplier: 3}, ", "")
    assert set(configs("ra", no_bfd)) == {"zebra.conf", "ospfd.conf"}


def test_ospfd_config() -> None:
    topology = parse_topology(FRR_RING, source="<ring>")
    plan, names = address_plan(topology), interface_names(topology)
    text = configs("ra")["ospfd.conf"]
    assert f"ospf router-id {plan.loopback4['ra'].ip}" in text
    assert f" network {plan.loopback4['ra'].network} area 0" in text
    for link in ("left-ra", "ra-rb", "ra-rc"):
        assert f" network {plan.link4[('ra', link)].network} area 0" in text
    # the link to rc has cost 7 and BFD; the link to the host no BFD
    rc_block = text.split(f"interface {names[('ra', 'ra-rc')]}\n")[1].split("!")[0]
    assert " ip ospf cost 7" in rc_block and " ip ospf bfd profile caspian" in rc_block
    assert " ip ospf network point-to-point" in rc_block and " ip ospf hello-interval 1" in rc_block
    assert " ip ospf dead-interval 4" in rc_block
    host_block = text.split(f"interface {names[('ra', 'left-ra')]}\n")[1].split("!")[0]
    assert "bfd" not in host_block
    assert " timers throttle spf 0 50 5000" in text and " maximum-paths 1" in text
    assert "log file /run/x/frr/ra/ospfd.log debugging" in text and "log timestamp precision 6" in text
    assert "redistribute" not in text   # host loopbacks are intra-area: the hosts announce them


def test_bfdd_and_zebra_config() -> None:
    bfdd = configs("ra", FRR_RING.replace("interval: 100ms, multiplier: 3", "interval: 50ms, multiplier: 4"))["bfdd.conf"]
    assert "debug bfd peer" in bfdd and " profile caspian" in bfdd
    assert "  transmit-interval 50" in bfdd and "  receive-interval 50" in bfdd and "  detect-multiplier 4" in bfdd
    topology = parse_topology(FRR_RING, source="<ring>")
    zebra = configs("rb")["zebra.conf"]
    assert f" set src {address_plan(topology).loopback4['rb'].ip}" in zebra
    assert "ip protocol ospf route-map CASPIAN_SRC" in zebra


def test_frr_config_refuses_bird_topologies_and_lonely_hosts() -> None:
    with pytest.raises(ScenarioError, match="FRR runs routing: {protocol: ospf, daemon: frr}"):
        configs("ra", RING)
    lonely = FRR_RING.replace("  right: {role: host}\n", "  right: {role: host}\n  far: {role: host}\n") \
        + "  right-far: {ends: [right, far], delay: 1ms}\n"
    with pytest.raises(ScenarioError, match="'far' is a host with no router next to it"):
        configs("far", lonely)


@pytest.mark.parametrize(
    "routing, message",
    [
        ("routing: {protocol: ospf, daemon: quagga}", r"<t>:1: routing\.daemon: unknown routing daemon 'quagga'"),
        ("routing: {protocol: bgp, daemon: frr}", r"routing\.daemon: frr runs ospf here, not bgp \(set daemon: bird\)"),
        ("routing: {daemon: frr}", r"routing\.daemon: 'daemon' does not apply to static routing"),
        ("routing: {protocol: ospf, daemon: frr, bfd: {interval: 5ms}}",
         r"routing\.bfd\.interval: BFD interval 5ms is not whole milliseconds from 10 to 60000 \(FRR's bfdd"),
        ("routing: {protocol: ospf, daemon: frr, bfd: {interval: 1500us}}", r"is not whole milliseconds"),
    ],
)
def test_bad_daemon_input(routing: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_topology(routing + "\n" + BASE, source="<t>")


def test_bird_stays_the_default() -> None:
    assert parse_topology("routing: {protocol: ospf}\n" + BASE, source="<t>").routing.daemon == "bird"


# --- FRR's logs and JSON ---------------------------------------------------------------

FRR_LOG = """\
2026/11/25 11:57:13.582576 BFD: [J1C6V-VMRW5] state-change: [mhop:no peer:198.18.0.1 local:0.0.0.0 vrf:default ifname:to-r2] init -> up
2026/11/25 11:57:15.570512 BFD: [SEY1D-NT8EQ] state-change: [mhop:no peer:198.18.0.1 local:0.0.0.0 vrf:default ifname:to-r2] up -> down reason:control-expired
2026/11/25 11:57:15.570987 OSPF: [Y05P2-YJVXY] AdjChg: Nbr 198.18.255.2, NbrIP 198.18.0.1 (default) on to-r2:198.18.0.0: Full -> Deleted (InactivityTimer)
2026/11/25 11:57:15.570999 OSPF: [S3578-FNEB0] nsm_change_state:[198.18.255.2:default], Full -> Deleted): scheduling new router-LSA origination
2026/11/25 11:57:12.580295 OSPF: [SXPB9-WR7E3] default:Packet[DD]: Neighbor 198.18.255.3 state is Init, seq_num:0xf10eb2c, local:0x0
"""


def test_frr_log_events() -> None:
    events = frr_log_events(FRR_LOG, "r1")
    assert [(e.kind, e.peer, e.state) for e in events] == [
        ("bfd", "198.18.0.1", "up"), ("bfd", "198.18.0.1", "down"), ("ospf", "198.18.255.2", "deleted")]
    assert events[2].t_ns - events[1].t_ns == 475_000   # microsecond stamps, exactly


def test_frr_json_parsers() -> None:
    neighbours = {"neighbors": {"198.19.0.3": [{"nbrPriority": 1, "nbrState": "Full/-",
                                                 "routerDeadIntervalTimerDueMsec": 3711, "ifaceAddress": "198.18.0.10",
                                                 "ifaceName": "rb:198.18.0.9"}]}}
    assert parse_ospf_neighbours(neighbours) == [OspfNeighbour(router_id="198.19.0.3", priority=1, state="Full",
                                                               dead_s=3.711, interface="rb", address="198.18.0.10")]
    peers = [{"peer": "198.18.0.10", "interface": "rb", "status": "up", "transmit-interval": 100,
              "detect-multiplier": 3}]
    assert parse_bfd_peers(peers) == [BfdSession(address="198.18.0.10", interface="rb", state="Up",
                                                 interval_s=0.1, timeout_s=0.3)]
    routes = {"198.19.0.6/32": [{"protocol": "ospf", "selected": True,
                                 "nexthops": [{"ip": "198.18.0.10", "interfaceName": "rb"}]}]}
    assert parse_routes(routes) == [Route(prefix="198.19.0.6/32", protocol="ospf", via="198.18.0.10",
                                          dev="rb", best=True)]


def test_missing_frr_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.errors import EnvironmentProblem
    from emulator.routing import frr_daemons

    topology = parse_topology(FRR_RING, source="<ring>")
    monkeypatch.setattr(frr_daemons.os, "access", lambda path, mode: False)
    with pytest.raises(EnvironmentProblem, match=r"FRR's zebra \(/usr/lib/frr/zebra\) is missing.*apt-get install frr"):
        frr_daemons.frr_binaries(topology)


def test_caspian_exec_vtysh_gets_the_node_socket() -> None:
    from types import SimpleNamespace

    from emulator.cli_testbed import _with_daemon_socket

    meta = {"routing": {"vty": {"ra": "/run/caspian/csp00001/frr/ra"}}}
    testbed = SimpleNamespace(state=SimpleNamespace(get_meta=lambda key: meta.get(key)))
    assert _with_daemon_socket(testbed, "ra", ["vtysh", "-c", "show bfd peers"]) == [
        "vtysh", "--vty_socket", "/run/caspian/csp00001/frr/ra", "-c", "show bfd peers"]
    assert _with_daemon_socket(testbed, "rb", ["vtysh"]) == ["vtysh"]


@pytest.mark.skipif(not os.access("/usr/lib/frr/ospfd", os.X_OK), reason="FRR is not installed: apt-get install frr")
def test_frr_accepts_the_configs(tmp_path) -> None:
    """Each daemon's own dry run (-C: check the configuration and exit) on every generated file."""
    import subprocess

    for node in ("ra", "left"):
        for name, text in configs(node).items():
            daemon = name.split(".")[0]
            path = tmp_path / f"{node}-{name}"
            path.write_text(text.replace("/run/x/frr/" + node, str(tmp_path)))
            proc = subprocess.Popen([f"/usr/lib/frr/{daemon}", "-C", "-u", "root", "-g", "frrvty", "-f", str(path),
                                     "--vty_socket", str(tmp_path), "-z", str(tmp_path / "zserv.api"),
                                     "-i", str(tmp_path / f"{daemon}.pid")],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                output, _ = proc.communicate(timeout=30)
            finally:
                # a dry run leaves FRR's crash-log directory of its PID behind
                shutil.rmtree(f"/var/tmp/frr/{daemon}.{proc.pid}", ignore_errors=True)
            assert proc.returncode == 0, (name, output)
            assert "No such command" not in output, (name, output)
