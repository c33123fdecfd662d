"""The engines of a run across machines, behind the one engine's interface.

Each machine runs an engine of its own (emulator.network.machines), and a
link is forwarded by exactly one of them: a link inside a machine by that
machine's, a crossing link by its owner's. `MachineEngines` answers what the
rest of the run asks one `EngineClient` (stats, live changes, the timeline,
probe taps, fidelity) by asking each link's engine and putting the answers
together, so the run, the measurements and the report need not know how
many machines there were.

A crossing link's frames also cross the underlay, whose one-way delay the
run measured: its owner's engine holds the configured delay less that
(`emulator.model.underlay.carried`), and every change to the link's delay,
live or on the timeline, is taken off the same way; `params` adds it back,
so a link reads as configured. The underlay's own engine (a simulated
underlay's) is asked only for its fidelity: its stalls delay crossing frames.
"""

from __future__ import annotations

from typing import Any, Iterable

from emulator.engine.control import EngineClient
from emulator.engine.shards import link_weights
from emulator.errors import InputError
from emulator.model.linkparams import LinkParams
from emulator.model.placement import Placement, place_nodes
from emulator.model.underlay import Underlay, carried
from emulator.scenario.topology import Topology


def resolve_placement(topology: Topology) -> Placement:
    """The topology's placement as written, or split automatically when the file gives a count."""
    given = topology.placement
    if given is None:
        raise InputError("the topology has no 'placement:' section", where=topology.source,
                         fix="add 'placement: 2' or name each machine's nodes (docs/multihost.md)")
    if isinstance(given, Placement):
        return given
    weights = link_weights([(link.a_to_b.rate_bps, link.b_to_a.rate_bps) for link in topology.links])
    links = [(link.a.node, link.b.node, w) for link, w in zip(topology.links, weights)]
    return place_nodes([node.name for node in topology.nodes], links, given)


class MachineEngines:
    """Several machines' engine clients as one; `links`: link -> its engine's machine."""

    def __init__(self, clients: dict[str, EngineClient], links: dict[str, str],
                 underlays: dict[str, Underlay] | None = None, extra: Iterable[tuple[str, EngineClient]] = (),
                 *, check_spread: bool = True) -> None:
        self.clients = clients
        self.links = links
        #: crossing link -> the underlay its frames cross (its delay taken off the link's)
        self.underlays = underlays or {}
        #: engines asked only for their fidelity (the simulated underlay's)
        self.extra = list(extra)
        #: judge the underlay's spread on each change (False for a simulated underlay: model.underlay.carried)
        self.check_spread = check_spread
        self._scheduled: list[tuple[str, int]] = []     # per event: (machine, place in its schedule)
        self._capturing: EngineClient | None = None

    def _client(self, link: str) -> EngineClient:
        machine = self.links.get(link)
        if machine is None:
            raise InputError(f"no link called {link!r}", fix=f"links: {', '.join(sorted(self.links))}")
        return self.clients[machine]

    def _carried(self, link: str, params: LinkParams, direction: str) -> LinkParams:
        underlay = self.underlays.get(link)
        if underlay is None:
            return params
        return carried(link, direction, params, underlay, check_spread=self.check_spread)

    def _by_machine(self, items: list[dict[str, Any]]) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        grouped: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for position, item in enumerate(items):
            self._client(item["link"])
            grouped.setdefault(self.links[item["link"]], []).append((position, item))
        return grouped

    # --- the one engine's interface ------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return {machine: client.ping() for machine, client in self.clients.items()}

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for machine, client in self.clients.items():
            for name, entry in client.stats().items():
                entry["machine"] = machine
                if name in self.underlays:
                    entry["underlay_ms"] = self.underlays[name].delay_ns / 1e6
                out[name] = entry
        return out

    def params(self, link: str, direction: str = "a_to_b") -> LinkParams:
        held = self._client(link).params(link, direction)
        underlay = self.underlays.get(link)
        return held.replace(delay_ns=held.delay_ns + underlay.delay_ns) if underlay is not None else held

    def set(self, link: str, params: LinkParams, direction: str = "both") -> None:
        for one in (("a_to_b", "b_to_a") if direction == "both" else (direction,)):
            self._client(link).set(link, self._carried(link, params, one), one)

    def cut(self, link: str, direction: str = "both", *, carrier: bool = False) -> None:
        if carrier and link in self.underlays:
            raise InputError(f"a carrier cut of {link}, which crosses between machines, is not built yet",
                             fix="cut it without carrier (a silent cut), or place both its ends on one machine")
        self._client(link).cut(link, direction, carrier=carrier)

    def restore(self, link: str, direction: str = "both") -> None:
        self._client(link).restore(link, direction)

    def schedule(self, events: list[dict[str, Any]]) -> None:
        grouped = self._by_machine(events)
        for event in events:
            if event.get("mode") == "carrier" and event["link"] in self.underlays:
                raise InputError(f"a carrier cut of {event['link']}, which crosses between machines, "
                                 "is not built yet", fix="cut it without 'mode: carrier'")
        for machine, client in self.clients.items():
            mine = []
            for _, event in grouped.get(machine, []):
                event = dict(event)
                if event["kind"] == "set" and event["link"] in self.underlays:
                    a_to_b = LinkParams.from_dict(event["params"])
                    b_to_a = LinkParams.from_dict(event.get("params_b_to_a") or event["params"])
                    event["params"] = self._carried(event["link"], a_to_b, "a_to_b").to_dict()
                    event["params_b_to_a"] = self._carried(event["link"], b_to_a, "b_to_a").to_dict()
                mine.append(event)
            client.schedule(mine)       # an empty list clears what it held
        self._scheduled = [(self.links[e["link"]], k) for e, k in self._positions(events, grouped)]

    @staticmethod
    def _positions(events: list[dict[str, Any]], grouped: dict[str, list[tuple[int, dict[str, Any]]]]
                   ) -> list[tuple[dict[str, Any], int]]:
        """Each event with its place in its engine's schedule, which that engine orders by time."""
        place: dict[int, int] = {}
        for items in grouped.values():
            ordered = sorted(items, key=lambda item: (int(item[1]["at_ns"]), item[0]))
            for k, (position, _) in enumerate(ordered):
                place[position] = k
        return [(event, place[position]) for position, event in enumerate(events)]

    def schedule_status(self) -> list[dict[str, Any]]:
        scheduled = self._scheduled
        statuses = {machine: client.schedule_status() for machine, client in self.clients.items()
                    if any(m == machine for m, _ in scheduled)}
        out = [statuses[machine][k] for machine, k in scheduled]
        # each engine answers in time order: the run's events, in time order, are the merge
        return sorted(out, key=lambda entry: int(entry["at_ns"]))

    def set_fidelity(self, epoch_ns: int, bin_ns: int, stall_threshold_ns: int) -> None:
        for client in [*self.clients.values(), *(c for _, c in self.extra)]:
            client.set_fidelity(epoch_ns, bin_ns, stall_threshold_ns)

    def fidelity(self) -> dict[str, Any]:
        merged: dict[str, Any] = {"shards": [], "late_bins_us": {}, "queue_bins": {}}
        for machine, client in [*self.clients.items(), *self.extra]:
            data = client.fidelity()
            merged["shards"] += [{**shard, "machine": machine} for shard in data.get("shards", [])]
            if (machine, client) in self.extra:
                continue        # the underlay is no link of the topology
            for key in ("late_bins_us", "queue_bins"):
                merged[key].update(data.get(key, {}))
        return merged

    def set_probe_taps(self, taps: list[dict[str, Any]]) -> None:
        grouped = self._by_machine(taps)
        for machine, client in self.clients.items():
            client.set_probe_taps([tap for _, tap in grouped.get(machine, [])])

    def probe_taps(self, taps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any] | None] = [None] * len(taps)
        for machine, items in self._by_machine(taps).items():
            answers = self.clients[machine].probe_taps([tap for _, tap in items])
            for (position, _), answer in zip(items, answers):
                out[position] = answer
        return [answer for answer in out if answer is not None]

    def _capture_client(self, targets: list[dict[str, Any]]) -> EngineClient:
        machines = {self.links.get(t["link"], "") for t in targets}
        if len(machines) != 1 or "" in machines:
            raise InputError("a capture across machines' engines is not built yet",
                             fix="capture links of one machine only (docs/multihost.md)")
        return self.clients[machines.pop()]

    def capture_start(self, targets: list[dict[str, Any]], path: str, *, count: int | None = None,
                      snaplen: int = 128) -> dict[str, Any]:
        self._capturing = self._capture_client(targets)
        return self._capturing.capture_start(targets, path, count=count, snaplen=snaplen)

    def capture_status(self) -> dict[str, Any]:
        if self._capturing is None:
            raise InputError("no capture is running", fix="start one with a capture: section or `caspian capture`")
        return self._capturing.capture_status()

    def capture_stop(self) -> dict[str, Any]:
        if self._capturing is None:
            raise InputError("no capture is running", fix="start one with a capture: section or `caspian capture`")
        return self._capturing.capture_stop()

    def shutdown(self) -> None:
        for client in [*self.clients.values(), *(c for _, c in self.extra)]:
            client.shutdown()
