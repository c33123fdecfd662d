"""BIRD 2 configuration for one router of a topology. Pure text generation, no system state.

`bird_config(topology, plan, node, interfaces)` returns the `bird.conf` of
router `node` when `topology.routing.protocol` is `ospf` or `bgp`:

- `router id` = the node's loopback IPv4 address;
- `protocol device` (interface scan every second) and `protocol kernel`
  exporting the routes BIRD selected into the main kernel table with the
  node's loopback as preferred source (as the static routes do), `learn`ing
  alien routes, scanning every second, no multipath merging;
- `protocol static hosts`: a /32 to each attached host's loopback via the
  host's address on the link (hosts run no daemon), exported into OSPF as
  type-2 externals so every router reaches every host;
- `protocol ospf v2`: area 0 with every link interface to another router as
  a point-to-point interface (hello/dead from the scenario, cost = the
  link's `ospf_cost`, `bfd yes` when BFD is configured), interfaces to hosts
  as stub interfaces (advertised, no hellos), and the loopback /32 as a
  stub network. ECMP off, so a route has one next hop and the path is
  deterministic;
- `protocol bfd` on the same router-to-router interfaces when configured.

With `bgp` instead of OSPF (eBGP only, every router an AS of its own):

- `protocol direct` puts the router's connected subnets and loopback /32 in
  BIRD's table (the kernel has them already: the kernel export skips them);
- one `protocol bgp` per link to another router, named `bgp_LINK`: `local`
  and `neighbor` are the two link addresses with the routers' AS numbers
  (`Topology.asn`), `interface` the link's, `direct` (the peer is on the
  link: no multihop), hold and keepalive time from the scenario, fast
  reconnection (`connect delay time 1`, `connect retry time 2`, `error
  wait time 1, 4`: after a hold-timer expiry BIRD would otherwise wait 60 s
  before trying again), `bfd on` with BFD;
- import all (BGP's AS-path check drops routes that already crossed this
  router); export the router's own prefixes (direct, static host routes)
  and the BGP routes it selected, within the testbed's 198.18.0.0/15,
  prepending its own AS `bgp_prepend` extra times on links that set it
  (so a backup path looks longer to every router);
- the kernel export takes BGP and static routes.

With OSPF, IPv6 runs beside it: `protocol ospf v3` over the same
interfaces with the same costs, timers and BFD (sessions between link-local
addresses), the IPv6 loopback as a stub network, the hosts' IPv6 loopbacks
as static routes exported as externals, and a second kernel protocol
(`kernel6`) exporting them with the IPv6 loopback as preferred source. The
eBGP sessions carry IPv4 only (docs/routing.md).
"""

from __future__ import annotations

from typing import Any

from emulator.errors import ScenarioError
from emulator.network.addressing import AddressPlan
from emulator.scenario.topology import RoutingConfig, Topology

#: OSPF scheduler tick, seconds: BIRD recomputes routes and originates LSAs at most this often (its minimum)
OSPF_TICK_S = 1
#: kernel and device scan period, seconds
SCAN_TIME_S = 1
#: what BIRD logs of its protocols: state changes and protocol events (neighbour and session states)
DEBUG = "states, events"
#: BGP: seconds before the first connection attempt, between attempts, and after an error (min, max)
BGP_CONNECT_DELAY_S = 1
BGP_CONNECT_RETRY_S = 2
BGP_ERROR_WAIT_S = (1, 4)
#: the testbed's IPv4 space (link subnets and loopbacks): all BGP exports
TESTBED_NET4 = "198.18.0.0/15"


def _duration(ns: int) -> str:
    """A BIRD time expression (`100 ms`, `250 us`) for a whole number of microseconds."""
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000} ms"
    return f"{ns // 1_000} us"


def _quote(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


#: the route sources the kernel protocol exports (BIRD's `source` values)
OSPF_SOURCES = "RTS_OSPF, RTS_OSPF_IA, RTS_OSPF_EXT1, RTS_OSPF_EXT2, RTS_STATIC"
BGP_SOURCES = "RTS_BGP, RTS_STATIC"


def _kernel_protocol(name: str, channel: str, sources: str, prefsrc: str) -> list[str]:
    """A `protocol kernel` block: export the routes from `sources` with `prefsrc` as preferred source."""
    return [
        f"protocol kernel {name} {{",
        f"  {channel} {{",
        "    import all;",
        "    export filter {",
        f"      if source ~ [{sources}] then {{",
        f"        krt_prefsrc = {prefsrc};",
        "        accept;",
        "      }",
        "      reject;",
        "    };",
        "  };",
        "  learn;",
        "  merge paths off;",
        f"  scan time {SCAN_TIME_S};",
        "}",
    ]


def router_id(plan: AddressPlan, node: str) -> str:
    """The BIRD router id of `node`: its loopback IPv4 address."""
    return str(plan.loopback4[node].ip)


def bird_config(
    topology: Topology,
    plan: AddressPlan,
    node: str,
    interfaces: dict[tuple[str, str], str],
    *,
    log_file: str | None = None,
) -> str:
    """The bird.conf of router `node` (see the module docstring).

    `interfaces` maps (node, link name) to the node-side interface name
    (`emulator.network.naming.interface_names`). Raises ScenarioError if
    `node` is not a router or the topology's routing is not OSPF.
    """
    routing = topology.routing or RoutingConfig()
    if routing.protocol not in ("ospf", "bgp"):
        raise ScenarioError(f"no BIRD configuration for routing protocol {routing.protocol!r}",
                            where=topology.source, fix="set routing: {protocol: ospf} or {protocol: bgp}")
    me = topology.node(node)
    if me.role != "router":
        raise ScenarioError(f"node {node!r} is a {me.role}, and only routers run BIRD", where=topology.source)
    roles = {n.name: n.role for n in topology.nodes}
    loopback = plan.loopback4[node]
    hello_s = routing.hello_ns // 1_000_000_000
    dead_s = routing.dead_interval_ns // 1_000_000_000

    bgp = routing.protocol == "bgp"
    ospf_ifaces: list[str] = []
    stub_ifaces: list[str] = []
    host_routes: list[str] = []
    host_routes6: list[str] = []
    bgp_sessions: list[str] = []
    for link in topology.links_of(node):
        ifname = interfaces[(node, link.name)]
        peer = link.b.node if link.a.node == node else link.a.node
        if bgp:
            if roles[peer] == "router":
                bgp_sessions += _bgp_session(topology, plan, node, peer, link, ifname)
            else:
                via = plan.link4[(peer, link.name)].ip
                host_routes.append(f"  route {plan.loopback4[peer].network} via {via};  # host {peer}")
            continue
        if roles[peer] == "router":
            lines = ["type ptp", f"cost {link.ospf_cost}", f"hello {hello_s}", f"dead {dead_s}"]
            if routing.bfd is not None:
                lines.append("bfd yes")
            body = "; ".join(lines)
            ospf_ifaces.append(f"    interface {_quote(ifname)} {{ {body}; }};  # link {link.name} to {peer}")
        else:
            stub_ifaces.append(f"    interface {_quote(ifname)} {{ stub yes; cost {link.ospf_cost}; }};  # link {link.name} to host {peer}")
            via = plan.link4[(peer, link.name)].ip
            host_routes.append(f"  route {plan.loopback4[peer].network} via {via};  # host {peer}")
            host_routes6.append(f"  route {plan.loopback6[peer].network} via {plan.link6[(peer, link.name)].ip};  # host {peer}")

    out = [
        f"# BIRD 2 configuration of router {node}, generated by caspian from {topology.source}.",
        "# Do not edit: it is rewritten at every start.",
    ]
    if log_file:
        # millisecond stamps and protocol state changes: the failover report's
        # detection time is the first BFD/OSPF/BGP state change after a cut
        out += [f"log {_quote(log_file)} all;", 'timeformat log "%F %T.%3f";']
    out += [
        f"router id {loopback.ip};",
        "",
        f"protocol device {{ scan time {SCAN_TIME_S}; }}",
        "",
        "# BIRD's selected routes into the kernel, from the loopback address like the static routes",
        *_kernel_protocol("kernel4", "ipv4", BGP_SOURCES if bgp else OSPF_SOURCES, str(loopback.ip)),
    ]
    if not bgp:
        out += ["", "# ... and the OSPFv3 (IPv6) routes, from the IPv6 loopback",
                *_kernel_protocol("kernel6", "ipv6", OSPF_SOURCES, str(plan.loopback6[node].ip))]
    if host_routes:
        out += ["", f"# hosts run no daemon: their loopbacks are static routes here, exported into {'BGP' if bgp else 'OSPF'}",
                "protocol static hosts {", "  ipv4;", *host_routes, "}"]
    if host_routes6:
        out += ["protocol static hosts6 {", "  ipv6;", *host_routes6, "}"]
    if routing.bfd is not None and (ospf_ifaces or bgp_sessions):
        names = ", ".join(_quote(interfaces[(node, link.name)]) for link in topology.links_of(node)
                          if roles[link.b.node if link.a.node == node else link.a.node] == "router")
        out += [
            "",
            "protocol bfd {",
            f"  debug {{ {DEBUG} }};",
            f"  interface {names} {{",
            f"    min rx interval {_duration(routing.bfd.interval_ns)};",
            f"    min tx interval {_duration(routing.bfd.interval_ns)};",
            f"    idle tx interval {_duration(max(routing.bfd.interval_ns, 1_000_000_000))};",
            f"    multiplier {routing.bfd.multiplier};",
            "  };",
            "}",
        ]
    if bgp:
        out += [
            "",
            "# connected subnets and the loopback, for export to the peers (the kernel has them)",
            "protocol direct {",
            "  ipv4;",
            '  interface "*";',
            "}",
            "",
            f"define TESTBED_NET4 = [{TESTBED_NET4}+];",
            "",
            f"# eBGP: this router is AS {topology.asn(node)}; one session per link to another router",
            *bgp_sessions,
            "",
        ]
        return "\n".join(out)
    out += [
        "",
        "protocol ospf v2 ospf4 {",
        f"  debug {{ {DEBUG} }};",
        "  ecmp no;",
        f"  tick {OSPF_TICK_S};",
        "  ipv4 {",
        "    import all;",
        "    export where source = RTS_STATIC;",
        "  };",
        "  area 0 {",
        f"    stubnet {loopback.network};  # the loopback",
        *ospf_ifaces,
        *stub_ifaces,
        "  };",
        "}",
        "",
        "# OSPFv3 for IPv6 over the same interfaces (link-local next hops; BFD over IPv6 with BFD)",
        "protocol ospf v3 ospf6 {",
        f"  debug {{ {DEBUG} }};",
        "  ecmp no;",
        f"  tick {OSPF_TICK_S};",
        "  ipv6 {",
        "    import all;",
        "    export where source = RTS_STATIC;",
        "  };",
        "  area 0 {",
        f"    stubnet {plan.loopback6[node].network};  # the loopback",
        *ospf_ifaces,
        *stub_ifaces,
        "  };",
        "}",
        "",
    ]
    return "\n".join(out)


def _bgp_name(link_name: str) -> str:
    """The BIRD protocol name of the BGP session over link `link_name` (a BIRD symbol: no dashes)."""
    return "bgp_" + link_name.replace("-", "_")


def bgp_protocol_names(topology: Topology, node: str) -> dict[str, str]:
    """{BIRD protocol name: link name} of router `node`'s BGP sessions."""
    roles = {n.name: n.role for n in topology.nodes}
    return {_bgp_name(link.name): link.name for link in topology.links_of(node)
            if all(roles[end] == "router" for end in link.nodes)}


def _bgp_session(topology: Topology, plan: AddressPlan, node: str, peer: str, link: Any, ifname: str) -> list[str]:
    """The `protocol bgp` block of `node`'s session with `peer` over `link`."""
    routing = topology.routing or RoutingConfig(protocol="bgp")   # only called for BGP topologies
    asn, peer_asn = topology.asn(node), topology.asn(peer)
    prepend = [f"        bgp_path.prepend({asn});"] * link.bgp_prepend
    lines = [
        "",
        f"protocol bgp {_bgp_name(link.name)} {{  # link {link.name} to {peer}",
        f'  description "link {link.name} to {peer}";',
        f"  debug {{ {DEBUG} }};",
        f"  local {plan.link4[(node, link.name)].ip} as {asn};",
        f"  neighbor {plan.link4[(peer, link.name)].ip} as {peer_asn};",
        f"  interface {_quote(ifname)};",
        "  direct;",
        f"  hold time {routing.hold_ns // 1_000_000_000};",
        f"  keepalive time {routing.keepalive_interval_ns // 1_000_000_000};",
        f"  connect delay time {BGP_CONNECT_DELAY_S};",
        f"  connect retry time {BGP_CONNECT_RETRY_S};",
        f"  error wait time {BGP_ERROR_WAIT_S[0]}, {BGP_ERROR_WAIT_S[1]};",
    ]
    if routing.bfd is not None:
        lines.append("  bfd on;")
    lines += [
        "  ipv4 {",
        "    import all;",
        "    export filter {",
        "      if net ~ TESTBED_NET4 && source ~ [RTS_DEVICE, RTS_STATIC, RTS_BGP] then {",
    ]
    if prepend:
        lines.append(f"        # bgp_prepend {link.bgp_prepend}: this link is a backup")
        lines += prepend
    lines += [
        "        accept;",
        "      }",
        "      reject;",
        "    };",
        "  };",
        "}",
    ]
    return lines
