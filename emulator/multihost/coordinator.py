"""The coordinator's preflight: every machine's agent reached, every crossing link's underlay measured and checked.

Before a run across machines builds anything, the coordinator:

1. reads the agents file (machine -> the address its agent listens at on
   the underlay: an IP address, or a name such as a Kubernetes Service's,
   resolved once) and holds it to the placement: every machine
   has an agent, every agent a machine;
2. says hello to each agent: the right machine, the same protocol;
3. for each pair of machines a link crosses, measures the underlay once
   (the second machine's agent answers echoes from the first's only; the
   first sends them and times them on its own clock);
4. applies the underlay rule (emulator.model.underlay.carried) to both
   directions of each crossing link: its delay less the underlay's, or
   UnderlayTooSlow, one line naming the link, before anything is made.

`caspian validate FILE --agents AGENTS --secret-file SECRET` runs it and
prints what it found.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from emulator.engine.machines import resolve_placement
from emulator.errors import InputError
from emulator.model.linkparams import LinkParams
from emulator.model.placement import Placement
from emulator.model.underlay import Underlay, UnderlayTooSlow, carried, from_rtts
from emulator.multihost.rpc import PROTOCOL, AgentClient, AgentRefused, AgentUnreachable, parse_address
from emulator.scenario.placement_section import MACHINE_NAME
from emulator.scenario.reader import Document, compose, is_null, read_file, suggest
from emulator.scenario.topology import Topology

#: A host name (RFC 1123): dot-separated labels, such as a Kubernetes Service's
HOSTNAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*", re.I)
#: Echoes per machine pair: 200 gives a nearest-rank p99 from the two
#: slowest, and takes under a second on any underlay a link can be carried on.
DEFAULT_ECHOES = 200


@dataclass(frozen=True)
class PairUnderlay:
    """The underlay between two machines as measured: `first` timed echoes `second` answered."""

    first: str
    second: str
    underlay: Underlay
    lost: int


@dataclass(frozen=True)
class CrossingLink:
    """A link whose ends are on two machines, with what its owner's engine will give each direction."""

    name: str
    owner: str
    other: str
    a_to_b: LinkParams
    b_to_a: LinkParams


@dataclass(frozen=True)
class Preflight:
    """What the preflight found: the placement, each agent's hello, each pair's underlay, each crossing link."""

    placement: Placement
    hellos: dict[str, dict]
    underlays: tuple[PairUnderlay, ...]
    crossing: tuple[CrossingLink, ...]

    def to_dict(self) -> dict:
        """As `caspian validate --agents --json` prints it (and report.json will hold it)."""
        return {
            "placement": self.placement.to_dict(),
            "agents": self.hellos,
            "underlays": [{"machines": [p.first, p.second], "delay_ns": p.underlay.delay_ns,
                           "spread_ns": p.underlay.spread_ns, "echoes": p.underlay.echoes, "lost": p.lost}
                          for p in self.underlays],
            "crossing": [{"link": c.name, "owner": c.owner, "other": c.other,
                          "carried_delay_ns": {"a_to_b": c.a_to_b.delay_ns, "b_to_a": c.b_to_a.delay_ns}}
                         for c in self.crossing],
        }


def read_agents(path: str | Path) -> dict[str, tuple[str, int]]:
    """The agents file: `agents: {MACHINE: ADDRESS[:PORT], ...}`, each ADDRESS an IP literal."""
    source = str(path)
    doc = Document(source, Path(path).parent)
    root = compose(read_file(Path(path), "agents"), source)
    if root is None or is_null(root):
        doc.fail(root, "", "the file is empty", "write 'agents:' and a line 'MACHINE: ADDRESS:PORT' per machine")
    top = doc.mapping(root, "", ("agents",))
    if not top:
        doc.fail(root, "agents", "no 'agents:' section", "write 'agents:' and a line 'MACHINE: ADDRESS:PORT' per machine")
    section = top[0][2]
    out: dict[str, tuple[str, int]] = {}
    for key, key_node, value in doc.mapping(section, "agents", None):
        field = f"agents.{key}"
        if not MACHINE_NAME.fullmatch(key):
            doc.fail(key_node, field, f"{key!r} is not a machine name", "use a-z, 0-9 and '-', starting with a letter")
        text = doc.text(value, field, "198.18.250.1:7390")
        where = f"{source}:{value.start_mark.line + 1}: {field}"
        host, port = parse_address(text, where)
        if not _is_ip(host) and not HOSTNAME.fullmatch(host):
            doc.fail(value, field, f"{host!r} is neither an IP address nor a host name",
                     "give the address the agent listens at on the underlay, e.g. 198.18.250.1:7390")
        out[key] = (host, port)
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def resolve(machine: str, host: str, port: int) -> tuple[str, int]:
    """`host` as the IP address the coordinator reaches (a Service's DNS name in Kubernetes); AgentUnreachable if none."""
    if _is_ip(host):
        return host, port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AgentUnreachable(f"the agent of {machine} at {host}:{port}: the name does not resolve ({exc.strerror})") from None
    return str(infos[0][4][0]), port


def check_agents(placement: Placement, agents: dict[str, tuple[str, int]], source: str) -> None:
    """Every placed machine has an agent and every agent a placed machine (InputError naming the first that does not)."""
    for machine in placement.names:
        if machine not in agents:
            raise InputError(f"machine {machine} runs nodes but has no agent", where=source,
                             fix=f"add '{machine}: ADDRESS:PORT' under agents:")
    for machine in agents:
        if machine not in placement.names:
            raise InputError(f"agent {machine} has no nodes placed on it", where=source,
                             fix=suggest(machine, placement.names, "machines placed") + "; or remove it")


def _hello(client: AgentClient) -> dict:
    hello = client.call("hello")
    if hello.get("machine") != client.machine:
        raise AgentRefused(f"{client!r} says it is machine {hello.get('machine')!r}: "
                           f"give it --machine {client.machine} or fix the agents file")
    if hello.get("protocol") != PROTOCOL:
        raise AgentRefused(f"{client!r} speaks protocol {hello.get('protocol')}, this caspian {PROTOCOL}: "
                           "run the same caspian version on every machine")
    return hello


def _reach(machine: str, address: tuple[str, int], key: bytes, timeout_s: float, wait_s: float) -> AgentClient:
    """A client of the agent of `machine`, once its name resolves and it answers (up to `wait_s` for both)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = AgentClient(machine, resolve(machine, *address), key, timeout_s)
            client.call("hello")
            return client
        except AgentUnreachable:
            if time.monotonic() >= deadline:
                raise
        time.sleep(1.0)


def measure_pair(first: AgentClient, second: AgentClient, echoes: int) -> PairUnderlay:
    """The underlay between two machines: `second` answers, `first` times `echoes` echoes."""
    # the responder stays open far longer than the echoes take (each ≤ 0.5 s if lost)
    port = second.call("echo_start", peer=first.address[0], seconds=min(600.0, 10.0 + echoes * 0.5))["port"]
    trips = first.call("measure", to=[second.address[0], port], count=echoes)
    rtts = [int(rtt) for rtt in trips.get("rtts_ns", [])]
    lost = int(trips.get("lost", 0))
    if lost:
        raise UnderlayTooSlow(
            f"the underlay from {first.machine} to {second.machine} lost {lost} of {echoes} echoes: "
            "a link carried on it would lose frames its model never drew",
            fix="place both ends of the crossing links on one machine, or use an underlay that loses nothing")
    return PairUnderlay(first.machine, second.machine, from_rtts(rtts), lost)


def preflight(topology: Topology, agents: dict[str, tuple[str, int]], key: bytes, *,
              agents_source: str = "agents", echoes: int = DEFAULT_ECHOES, timeout_s: float = 30.0,
              wait_s: float = 0.0) -> Preflight:
    """Reach every agent (waiting up to `wait_s` for each to come up), measure every crossed
    pair's underlay, check every crossing link (module docstring)."""
    placement = resolve_placement(topology)
    check_agents(placement, agents, agents_source)
    clients = {}
    hellos = {}
    for machine in placement.names:
        clients[machine] = _reach(machine, agents[machine], key, timeout_s, wait_s)
        hellos[machine] = _hello(clients[machine])
    where = placement.by_node()
    pairs: dict[frozenset[str], PairUnderlay] = {}
    crossing: list[CrossingLink] = []
    for link in topology.links:
        owner, other = where[link.a.node], where[link.b.node]
        if owner == other:
            continue
        pair = frozenset((owner, other))
        if pair not in pairs:
            pairs[pair] = measure_pair(clients[owner], clients[other], echoes)
        underlay = pairs[pair].underlay
        crossing.append(CrossingLink(
            name=link.name, owner=owner, other=other,
            a_to_b=carried(link.name, "a_to_b", link.a_to_b, underlay),
            b_to_a=carried(link.name, "b_to_a", link.b_to_a, underlay)))
    return Preflight(placement, hellos, tuple(pairs.values()), tuple(crossing))

