"""Two machines simulated on one host, as data: the `underlay:` section, the
machines' plan (namespaces, tunnels, bridges), the engines behind one
interface, and the kernel-stamped echo's packets (no root)."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.engine.machines import MachineEngines
from emulator.errors import InputError, ScenarioError
from emulator.measure.icmp_echo import checksum, echo_request, parse_reply
from emulator.model.linkparams import LinkParams
from emulator.model.underlay import SimulatedUnderlay, Underlay, UnderlayTooSlow
from emulator.network.machines import UNDERLAY_MTU, machines_plan
from emulator.network.plan import network_plan
from emulator.scenario.loader import parse_scenario
from tests.unit.test_placement import CORRIDOR

PLACED = "placement: {host1: [europe, sumgait], host2: [aktau, asia]}\n"


def _topology(extra: str) -> Any:
    return parse_scenario(CORRIDOR + extra, source="c.yaml").topology


def test_an_underlay_makes_a_placement_run_here() -> None:
    topology = _topology(PLACED + "underlay: {delay: 250us, jitter: 10us}\n")
    assert topology.underlay == SimulatedUnderlay(delay_ns=250_000, jitter_ns=10_000)
    assert parse_scenario(CORRIDOR + "placement: 2\nunderlay: {delay: 1ms}\n", source="c.yaml").topology.placement == 2


@pytest.mark.parametrize("text, expected", [
    ("underlay: {delay: 250us}\n", "c.yaml:11: placement: missing 'placement', which 'underlay' needs"),
    ("placement: 3\nunderlay: {delay: 250us}\n",
     "c.yaml:12: underlay: a simulated underlay joins two machines, the placement has 3"),
    (PLACED + "underlay: {jitter: 1us}\n", "c.yaml:12: underlay: the underlay has no delay"),
    (PLACED + "underlay: {delay: 250}\n", "c.yaml:12: underlay.delay:"),
    (PLACED + "underlay: {delay: 2s}\n", "c.yaml:12: underlay.delay: delay must be between 0 and 100ms"),
    (PLACED + "underlay: {delay: 1ms, loss: 1%}\n", "c.yaml:12: underlay.loss: unknown key 'loss'"),
])
def test_a_wrong_underlay_is_one_line_naming_it(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(CORRIDOR + text, source="c.yaml")
    message = str(refused.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_the_plan_gives_each_machine_its_wire_and_the_cable_a_tunnel() -> None:
    topology = _topology(PLACED + "underlay: {delay: 250us}\n")
    machines = machines_plan(topology, topology.placement, "csp00abc")
    assert machines.wire_netns == {"host1": "csp00abc+wire-host1", "host2": "csp00abc+wire-host2"}
    # only the cable crosses; its a end (aktau) is on host2, whose engine impairs it
    (cable,) = machines.crossing
    assert (cable.link, cable.owner, cable.other, cable.owner_end, cable.other_end, cable.vni) == \
        ("aktau-sumgait", "host2", "host1", "l1a", "l1b", 2)
    commands = machines.commands()
    assert list(commands)[0] == machines.underlay_netns        # it makes the veths into both wires
    assert f"link add u0 mtu {UNDERLAY_MTU} type veth peer name ul mtu {UNDERLAY_MTU} netns csp00abc+wire-host1" \
        in commands[machines.underlay_netns]
    host1, host2 = commands["csp00abc+wire-host1"], commands["csp00abc+wire-host2"]
    assert ("link add vx1 mtu 9000 type vxlan id 2 local 198.19.254.1 remote 198.19.254.2 dstport 4789 dev ul"
            in host1)
    # the bridge is on the machine that does not own the link, the far end's side
    assert "link set l1b master br1" in host1 and not any("bridge" in line for line in host2)
    # the network plan puts each end where its node is, and makes the three namespaces
    plan = network_plan(topology, "csp00abc", machines=machines)
    ends = {(v.node, v.link): v.wire_netns for v in plan.veths}
    assert ends[("europe", "europe-sumgait")] == ends[("sumgait", "aktau-sumgait")] == "csp00abc+wire-host1"
    assert ends[("aktau", "aktau-sumgait")] == ends[("asia", "aktau-asia")] == "csp00abc+wire-host2"
    assert {ns.name for ns in plan.namespaces if ns.node is None} == \
        {"csp00abc+wire-host1", "csp00abc+wire-host2", "csp00abc+underlay"}
    # and nothing of a one-machine run changes
    assert {ns.name for ns in network_plan(topology, "csp00abc").namespaces if ns.node is None} == {"csp00abc-wire"}


class _Engine:
    """Stands in for one engine's control socket: records requests, answers as the engine would."""

    def __init__(self, links: dict[str, LinkParams]) -> None:
        self.links = dict(links)
        self.scheduled: list[dict[str, Any]] = []

    def params(self, link: str, direction: str = "a_to_b") -> LinkParams:
        return self.links[link]

    def set(self, link: str, params: LinkParams, direction: str = "both") -> None:
        self.links[link] = params

    def schedule(self, events: list[dict[str, Any]]) -> None:
        self.scheduled = sorted(events, key=lambda e: int(e["at_ns"]))

    def schedule_status(self) -> list[dict[str, Any]]:
        return [{**e, "directions": {}} for e in self.scheduled]


def test_the_engines_answer_as_one_and_a_crossing_delay_is_held_less_the_underlay() -> None:
    host1 = _Engine({"europe-sumgait": LinkParams(delay_ns=50_000)})
    host2 = _Engine({"aktau-sumgait": LinkParams(delay_ns=1_650_000)})
    engines = MachineEngines({"host1": host1, "host2": host2},  # type: ignore[dict-item]
                             {"europe-sumgait": "host1", "aktau-sumgait": "host2"},
                             {"aktau-sumgait": Underlay(delay_ns=250_000, spread_ns=10_000, echoes=200)})
    # read back as configured: the engine's share plus the underlay's
    assert engines.params("aktau-sumgait").delay_ns == 1_900_000
    engines.set("aktau-sumgait", LinkParams(delay_ns=5_000_000))
    assert host2.links["aktau-sumgait"].delay_ns == 4_750_000
    engines.set("europe-sumgait", LinkParams(delay_ns=60_000))
    assert host1.links["europe-sumgait"].delay_ns == 60_000
    with pytest.raises(UnderlayTooSlow):
        engines.set("aktau-sumgait", LinkParams(delay_ns=100_000))   # under the underlay's own
    with pytest.raises(InputError):
        engines.params("no-such-link")
    # each engine gets its own events, a crossing set less the underlay; the status
    # comes back in time order, as one engine's does
    engines.schedule([
        {"at_ns": 30, "link": "europe-sumgait", "kind": "cut", "direction": "both"},
        {"at_ns": 10, "link": "aktau-sumgait", "kind": "set", "direction": "both",
         "params": LinkParams(delay_ns=3_000_000).to_dict()},
        {"at_ns": 20, "link": "aktau-sumgait", "kind": "cut", "direction": "both"},
    ])
    assert [e["at_ns"] for e in host2.scheduled] == [10, 20] and [e["at_ns"] for e in host1.scheduled] == [30]
    assert LinkParams.from_dict(host2.scheduled[0]["params"]).delay_ns == 2_750_000
    assert [(e["at_ns"], e["link"]) for e in engines.schedule_status()] == \
        [(10, "aktau-sumgait"), (20, "aktau-sumgait"), (30, "europe-sumgait")]
    with pytest.raises(InputError, match="carrier cut of aktau-sumgait"):
        engines.schedule([{"at_ns": 1, "link": "aktau-sumgait", "kind": "cut", "mode": "carrier"}])


def test_the_echo_request_is_a_valid_icmp_packet_and_only_its_reply_matches() -> None:
    request = echo_request(0x1234, 7)
    assert request[0] == 8 and checksum(request) == 0          # a correct checksum sums to zero
    ip_header = bytes([0x45]) + bytes(19)
    reply = bytes([0]) + request[1:]
    assert parse_reply(ip_header + reply) == (0x1234, 7)
    assert parse_reply(ip_header + request) is None               # our own request
    assert parse_reply(b"\x45") is None
