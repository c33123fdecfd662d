"""BIRD configuration text, the routing section of scenario files, and birdc output parsers (no root)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from emulator.errors import ScenarioError
from emulator.network.addressing import address_plan
from emulator.network.naming import interface_names
from emulator.routing.bird import bird_config
from emulator.routing.bird_daemons import parse_bfd_sessions, parse_ospf_neighbours, parse_protocols, parse_routes
from emulator.scenario.loader import load_scenario, parse_topology

RING = """\
name: ring
routing: {protocol: ospf, bfd: {interval: 100ms, multiplier: 3}, hello: 1s}
nodes:
  left: {role: host}
  ra: {role: router}
  rb: {role: router}
  rc: {role: router}
  rd: {role: router}
links:
  left-ra: {ends: [left, ra], delay: 50us}
  ra-rb: {ends: [ra, rb], delay: 2ms}
  rb-rd: {ends: [rb, rd], delay: 2ms}
  ra-rc: {ends: [ra, rc], delay: 10ms, cost: 7}
  rc-rd: {ends: [rc, rd], delay: 10ms}
"""


def config(text: str = RING, node: str = "ra") -> str:
    topology = parse_topology(text, source="<ring>")
    return bird_config(topology, address_plan(topology), node, interface_names(topology))


def test_router_id_is_the_loopback_and_loopback_is_a_stub() -> None:
    text = config()
    topology = parse_topology(RING, source="<ring>")
    loopback = address_plan(topology).loopback4["ra"]
    assert f"router id {loopback.ip};" in text
    assert f"stubnet {loopback.network};" in text
    assert f"krt_prefsrc = {loopback.ip};" in text


def test_router_interfaces_are_ptp_with_the_link_cost_and_bfd() -> None:
    text = config()
    # 2 ms -> 200 (10 us units); an explicit cost wins
    assert re.search(r'interface "rb" \{ type ptp; cost 200; hello 1; dead 4; bfd yes; \};', text)
    assert re.search(r'interface "rc" \{ type ptp; cost 7; hello 1; dead 4; bfd yes; \};', text)
    # the host side: advertised, no hellos; the host's loopback is a static route exported to OSPF
    assert re.search(r'interface "left" \{ stub yes; cost 5; \};', text)
    assert "route 198.19.0.1/32 via 198.18.0.1;" in text
    assert "export where source = RTS_STATIC;" in text
    assert "ecmp no;" in text and "merge paths off;" in text and "learn;" in text


def test_bfd_block_has_the_configured_timers() -> None:
    text = config()
    block = text[text.index("protocol bfd"):]
    block = block[: block.index("\n}")]
    assert 'interface "rb", "rc"' in block
    assert "min rx interval 100 ms;" in block and "min tx interval 100 ms;" in block
    assert "multiplier 3;" in block
    assert '"left"' not in block


def test_without_bfd_there_is_no_bfd() -> None:
    text = config(RING.replace("bfd: {interval: 100ms, multiplier: 3}, ", "").replace("hello: 1s", "hello: 2s, dead: 10s"))
    assert "protocol bfd" not in text and "bfd yes" not in text
    assert "hello 2; dead 10;" in text


def test_router_without_hosts_has_no_static_protocol() -> None:
    assert "protocol static" not in config(node="rd")


def test_hosts_get_no_config() -> None:
    with pytest.raises(ScenarioError, match="only routers run BIRD"):
        config(node="left")


@pytest.mark.skipif(shutil.which("bird") is None and not shutil.os.path.exists("/usr/sbin/bird"),
                    reason="bird (BIRD 2) is not installed: apt-get install bird2")
def test_bird_accepts_the_config(tmp_path) -> None:
    bird = shutil.which("bird") or "/usr/sbin/bird"
    for node in ("ra", "rb", "rc", "rd"):
        path = tmp_path / f"{node}.conf"
        path.write_text(config(node=node))
        done = subprocess.run([bird, "-p", "-c", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_corridor_prefers_the_caspian_path() -> None:
    topology = load_scenario("scenarios/europe_asia_corridor.yaml").topology
    cost = {link.name: link.ospf_cost for link in topology.links}
    caspian = ["frankfurt-istanbul", "istanbul-tbilisi", "tbilisi-baku", "baku-sumgait", "aktau-sumgait",
               "aktau-almaty", "almaty-urumqi"]
    northern = ["frankfurt-moscow", "moscow-almaty", "almaty-urumqi"]
    assert sum(cost[name] for name in caspian) < sum(cost[name] for name in northern)
    assert topology.routing.protocol == "ospf" and topology.routing.bfd.detect_ns == 300_000_000


# --- the routing section: bad input ------------------------------------------------------

BASE = "nodes:\n  a: {role: router}\n  b: {role: router}\nlinks:\n  a-b: {ends: [a, b], delay: 1ms}\n"


@pytest.mark.parametrize(
    "routing, message",
    [
        ("routing: {protocol: ospf, bfd: {interval: 0ms}}", r"<t>:1: routing\.bfd\.interval: BFD interval must be longer than 0"),
        ("routing: {protocol: rip}", r"<t>:1: routing\.protocol: unknown routing protocol 'rip'"),
        ("routing: {protocol: bgp, hold: 2s}", r"<t>:1: routing\.hold: hold 2s is not a whole number of seconds from 3 to 65535"),
        ("routing: {protocol: bgp, hold: 3500ms}", r"routing\.hold: hold 3\.5s is not a whole number of seconds"),
        ("routing: {protocol: bgp, hold: 3s, keepalive: 3s}", r"<t>:1: routing\.keepalive: keepalive 3s is not shorter than hold 3s"),
        ("routing: {protocol: bgp, keepalive: 0s}", r"routing\.keepalive: keepalive 0\w* is not a whole number of seconds from 1"),
        ("routing: {protocol: bgp, hello: 1s}", r"routing\.hello: 'hello' does not apply to BGP \(remove it, or set protocol: ospf\)"),
        ("routing: {protocol: ospf, hold: 3s}", r"routing\.hold: 'hold' does not apply to OSPF \(remove it, or set protocol: bgp\)"),
        ("routing: {protocol: bgp, holdtime: 3s}", r"unknown key 'holdtime' \(did you mean 'hold'\?"),
        ("routing: {protocol: ospf, helo: 1s}", r"unknown key 'helo' \(did you mean 'hello'\?"),
        ("routing: {protocol: ospf, hello: 500ms}", r"routing\.hello: hello 500ms is not a whole number of seconds"),
        ("routing: {protocol: ospf, hello: 2s, dead: 2s}", r"routing\.dead: dead 2s is not longer than hello 2s"),
        ("routing: {protocol: ospf, bfd: {multiplier: 0}}", r"routing\.bfd\.multiplier: 0 is outside 1\.\.255"),
        ("routing: {bfd: {interval: 100ms}}", r"routing\.bfd: 'bfd' does not apply to static routing"),
    ],
)
def test_bad_routing_input(routing: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_topology(routing + "\n" + BASE, source="<t>")


def test_cost_needs_ospf_and_a_valid_number() -> None:
    with pytest.raises(ScenarioError, match=r"links\.a-b\.cost: cost applies to OSPF routing only"):
        parse_topology(BASE.replace("delay: 1ms", "delay: 1ms, cost: 5"), source="<t>")
    with pytest.raises(ScenarioError, match=r"links\.a-b\.cost: 0 is outside 1\.\.65535"):
        parse_topology("routing: {protocol: ospf}\n" + BASE.replace("delay: 1ms", "delay: 1ms, cost: 0"), source="<t>")


def test_bgp_node_and_link_fields_need_bgp() -> None:
    with pytest.raises(ScenarioError, match=r"<t>:2: nodes\.a\.asn: asn applies to BGP routing only"):
        parse_topology(BASE.replace("a: {role: router}", "a: {role: router, asn: 65001}"), source="<t>")
    with pytest.raises(ScenarioError, match=r"<t>:6: links\.a-b\.bgp_prepend: bgp_prepend applies to BGP routing only"):
        parse_topology("routing: {protocol: ospf}\n" + BASE.replace("delay: 1ms", "delay: 1ms, bgp_prepend: 2"), source="<t>")
    bgp = "routing: {protocol: bgp}\n"
    with pytest.raises(ScenarioError, match=r"links\.a-b\.cost: cost applies to OSPF routing only"):
        parse_topology(bgp + BASE.replace("delay: 1ms", "delay: 1ms, cost: 5"), source="<t>")
    with pytest.raises(ScenarioError, match=r"links\.a-b\.bgp_prepend: 17 is outside 0\.\.16"):
        parse_topology(bgp + BASE.replace("delay: 1ms", "delay: 1ms, bgp_prepend: 17"), source="<t>")
    with pytest.raises(ScenarioError, match=r"nodes\.a\.asn: 0 is outside 1\.\.4294967294"):
        parse_topology(bgp + BASE.replace("a: {role: router}", "a: {role: router, asn: 0}"), source="<t>")
    # b defaults to 64512 + 1: a clash with an explicit asn is refused
    with pytest.raises(ScenarioError, match=r"<t>:4: nodes\.b: router b has AS 64513, as a does"):
        parse_topology(bgp + BASE.replace("a: {role: router}", "a: {role: router, asn: 64513}"), source="<t>")
    hosts = bgp + BASE.replace("b: {role: router}", "b: {role: host}")
    with pytest.raises(ScenarioError, match=r"nodes\.b\.asn: asn applies to routers only"):
        parse_topology(hosts.replace("b: {role: host}", "b: {role: host, asn: 65001}"), source="<t>")
    with pytest.raises(ScenarioError, match=r"links\.a-b\.bgp_prepend: bgp_prepend applies to links between two routers"):
        parse_topology(hosts.replace("delay: 1ms", "delay: 1ms, bgp_prepend: 1"), source="<t>")


def test_bgp_defaults() -> None:
    topology = parse_topology("routing: {protocol: bgp}\n" + BASE, source="<t>")
    assert topology.routing.hold_ns == 9_000_000_000 and topology.routing.keepalive_interval_ns == 3_000_000_000
    assert topology.routing.bfd is None
    assert (topology.asn("a"), topology.asn("b")) == (64512, 64513)
    assert topology.link("a-b").bgp_prepend == 0
    topology = parse_topology("routing: {protocol: bgp, hold: 4s}\n" + BASE, source="<t>")
    assert topology.routing.keepalive_interval_ns == 1_000_000_000


def test_defaults() -> None:
    topology = parse_topology("routing: {protocol: ospf}\n" + BASE, source="<t>")
    assert topology.routing.bfd is None and topology.routing.dead_interval_ns == 4_000_000_000
    assert topology.link("a-b").ospf_cost == 100
    assert parse_topology(BASE, source="<t>").routing is None


# --- BGP configuration ------------------------------------------------------------------

BGP_RING = RING.replace("routing: {protocol: ospf, bfd: {interval: 100ms, multiplier: 3}, hello: 1s}",
                        "routing: {protocol: bgp, hold: 3s, keepalive: 1s}").replace(
                        "cost: 7", "bgp_prepend: 2").replace("rd: {role: router}", "rd: {role: router, asn: 65010}")


def _block(text: str, start: str) -> str:
    block = text[text.index(start):]
    return block[: block.index("\n}") + 2]


def test_bgp_sessions_one_per_router_link() -> None:
    text = config(BGP_RING)
    topology = parse_topology(BGP_RING, source="<ring>")
    plan = address_plan(topology)
    assert text.count("protocol bgp ") == 2 and "protocol ospf" not in text and "protocol bfd" not in text
    session = _block(text, "protocol bgp bgp_ra_rb {")
    assert f"local {plan.link4[('ra', 'ra-rb')].ip} as 64512;" in session
    assert f"neighbor {plan.link4[('rb', 'ra-rb')].ip} as 64513;" in session
    for line in ('interface "rb";', "direct;", "hold time 3;", "keepalive time 1;", "connect retry time 2;",
                 "error wait time 1, 4;", "import all;",
                 "if net ~ TESTBED_NET4 && source ~ [RTS_DEVICE, RTS_STATIC, RTS_BGP] then {"):
        assert line in session, line
    assert "prepend" not in session and "bfd on" not in session and "multihop" not in session
    # the backup link prepends the router's own AS twice; rd's explicit asn is used
    backup = _block(text, "protocol bgp bgp_ra_rc {")
    assert backup.count("bgp_path.prepend(64512);") == 2
    assert "as 64514;" in backup
    assert "as 65010;" in _block(config(BGP_RING, node="rb"), "protocol bgp bgp_rb_rd {")
    # connected subnets and the loopback go to the peers, BGP and host routes to the kernel
    assert "protocol direct {" in text and "define TESTBED_NET4 = [198.18.0.0/15+];" in text
    assert "if source ~ [RTS_BGP, RTS_STATIC] then {" in text
    assert "route 198.19.0.1/32 via 198.18.0.1;" in text


def test_bgp_with_bfd() -> None:
    text = config(BGP_RING.replace("keepalive: 1s}", "keepalive: 1s, bfd: {interval: 50ms, multiplier: 4}}"))
    assert text.count("bfd on;") == 2
    block = _block(text, "protocol bfd {")
    assert 'interface "rb", "rc"' in block and "min tx interval 50 ms;" in block and "multiplier 4;" in block


@pytest.mark.skipif(shutil.which("bird") is None and not shutil.os.path.exists("/usr/sbin/bird"),
                    reason="bird (BIRD 2) is not installed: apt-get install bird2")
def test_bird_accepts_the_bgp_config(tmp_path) -> None:
    bird = shutil.which("bird") or "/usr/sbin/bird"
    with_bfd = BGP_RING.replace("keepalive: 1s}", "keepalive: 1s, bfd: {interval: 100ms}}")
    for i, text in enumerate((BGP_RING, with_bfd)):
        for node in ("ra", "rb", "rc", "rd"):
            path = tmp_path / f"{node}{i}.conf"
            path.write_text(config(text, node=node))
            done = subprocess.run([bird, "-p", "-c", str(path)], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr


def test_bgp_corridor_prefers_the_caspian_path() -> None:
    """By AS-path length with the backup links' prepending, from both ends of the corridor."""
    topology = load_scenario("scenarios/corridor_bgp_cut.yaml").topology
    prepend = {link.name: link.bgp_prepend for link in topology.links}

    def path_length(hops: list[str], links: list[str]) -> int:
        # each router on the way adds itself once, plus the prepends of the link it exported over
        return len(hops) + sum(prepend[link] for link in links)

    caspian = path_length(["istanbul", "tbilisi", "baku", "sumgait", "aktau", "almaty", "urumqi"],
                          ["frankfurt-istanbul", "istanbul-tbilisi", "tbilisi-baku", "baku-sumgait", "aktau-sumgait",
                           "aktau-almaty"])
    northern = path_length(["moscow", "almaty", "urumqi"], ["frankfurt-moscow", "moscow-almaty"])
    assert caspian < northern
    assert topology.routing.protocol == "bgp" and topology.routing.bfd is None
    assert (topology.routing.hold_ns, topology.routing.keepalive_interval_ns) == (3_000_000_000, 1_000_000_000)


# --- birdc output ---------------------------------------------------------------------

NEIGHBOURS = """BIRD 2.0.12 ready.
ospf4:
Router ID   	Pri	     State     	DTime	Interface  Router IP
198.19.0.3  	  1	Full/PtP  	3.731	rb         198.18.0.10
198.19.0.4  	  1	Init/PtP  	3.745	rc         198.18.0.26
"""

ROUTES = """BIRD 2.0.12 ready.
Table master4:
198.19.0.5/32        unicast [ospf4 10:29:40.123] * I (150/400) [198.19.0.5]
	via 198.18.0.10 on rb
198.18.0.8/29        unicast [ospf4 10:29:37.000] * I (150/200) [198.19.0.2]
	dev rb
198.19.0.1/32        unicast [hosts 10:29:35.645] * (200)
	via 198.18.0.1 on left
"""

BFD = """BIRD 2.0.12 ready.
bfd1:
IP address                Interface  State      Since         Interval  Timeout
198.18.0.10               rb         Up         10:29:37.255    0.100    0.300
198.18.0.26               rc         Down       10:29:36.420    1.000    0.000
"""


PROTOCOLS = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     10:29:35.645  
kernel1    Kernel     master4    up     10:29:35.645  
bgp_ra_rb  BGP        ---        up     10:29:37.120  Established   
bgp_ra_rc  BGP        ---        start  10:29:41.002  Active        Socket: Connection timed out
"""


def test_parse_protocols() -> None:
    protocols = parse_protocols(PROTOCOLS)
    assert [(p["name"], p["proto"], p["state"], p["info"].split()[0] if p["info"] else "") for p in protocols] == [
        ("device1", "Device", "up", ""), ("kernel1", "Kernel", "up", ""),
        ("bgp_ra_rb", "BGP", "up", "Established"), ("bgp_ra_rc", "BGP", "start", "Active")]


def test_parsers() -> None:
    neighbours = parse_ospf_neighbours(NEIGHBOURS)
    assert [(n["router_id"], n["state"], n["interface"], n["address"]) for n in neighbours] == [
        ("198.19.0.3", "Full", "rb", "198.18.0.10"), ("198.19.0.4", "Init", "rc", "198.18.0.26")]
    routes = parse_routes(ROUTES)
    assert [(r["prefix"], r["protocol"], r["via"], r["dev"], r["best"]) for r in routes] == [
        ("198.19.0.5/32", "ospf4", "198.18.0.10", "rb", True),
        ("198.18.0.8/29", "ospf4", None, "rb", True),
        ("198.19.0.1/32", "hosts", "198.18.0.1", "left", True),
    ]
    sessions = parse_bfd_sessions(BFD)
    assert [(s["address"], s["interface"], s["state"], s["interval_s"]) for s in sessions] == [
        ("198.18.0.10", "rb", "Up", 0.1), ("198.18.0.26", "rc", "Down", 1.0)]


def test_missing_bird_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.errors import EnvironmentProblem
    from emulator.routing import bird_daemons

    monkeypatch.setattr(bird_daemons.shutil, "which", lambda name: None)
    monkeypatch.setattr(bird_daemons.os, "access", lambda path, mode: False)
    with pytest.raises(EnvironmentProblem, match=r"bird \(BIRD 2\) is missing.*apt-get install bird2"):
        bird_daemons.bird_binaries()


def test_caspian_exec_birdc_gets_the_router_socket() -> None:
    from types import SimpleNamespace

    from emulator.cli_testbed import _with_daemon_socket

    meta = {"routing": {"sockets": {"ra": "/run/caspian/csp00001/bird/ra.ctl"}}}
    testbed = SimpleNamespace(state=SimpleNamespace(get_meta=lambda key: meta.get(key)))
    assert _with_daemon_socket(testbed, "ra", ["birdc", "show", "status"]) == [
        "birdc", "-s", "/run/caspian/csp00001/bird/ra.ctl", "show", "status"]
    assert _with_daemon_socket(testbed, "ra", ["birdc", "-s", "x", "show"]) == ["birdc", "-s", "x", "show"]
    assert _with_daemon_socket(testbed, "left", ["birdc", "show"]) == ["birdc", "show"]
    assert _with_daemon_socket(testbed, "ra", ["ping", "rd"]) == ["ping", "rd"]


def test_ospf_runs_v3_for_ipv6_beside_v2() -> None:
    topology = parse_topology(RING, source="<ring>")
    plan = address_plan(topology)
    text = config()
    v3 = text.split("protocol ospf v3 ospf6 {")[1]
    assert f"stubnet {plan.loopback6['ra'].network};" in v3
    assert 'interface "rb" { type ptp; cost' in v3 and "bfd yes" in v3   # same interfaces, costs and BFD
    assert "  ipv6 {" in v3 and "export where source = RTS_STATIC;" in v3
    kernel6 = text.split("protocol kernel kernel6 {")[1].split("\n}")[0]
    assert f"krt_prefsrc = {plan.loopback6['ra'].ip};" in kernel6
    hosts6 = text.split("protocol static hosts6 {")[1].split("}")[0]
    assert f"route {plan.loopback6['left'].network} via {plan.link6[('left', 'left-ra')].ip};" in hosts6
    bgp = config(RING.replace("routing: {protocol: ospf, bfd: {interval: 100ms, multiplier: 3}, hello: 1s}",
                              "routing: {protocol: bgp}").replace(", cost: 7", ""))
    assert "ospf v3" not in bgp and "kernel6" not in bgp and "hosts6" not in bgp
