"""The `duration:`, `timeline:` and `engine:` sections: how long a run lasts, what happens to the links when, and how many engine loops forward them.

A timeline item is `at` plus exactly one event kind naming a link (`cut`,
`restore`, `set`, `flap`) and the options of that kind, or a partial failure
of a link's lit capacity and its repair (`fail`/`repair: {link, fiber_pairs,
waves}`, on a link that declares `capacity`). Every step is bounded
(flap spacing, the number of steps a run plays) so a file cannot ask the
engine for unbounded work.
"""

from __future__ import annotations

import dataclasses

import yaml

from emulator.errors import InputError
from emulator.model.capacity import CapacityError, Outage, format_bps
from emulator.model.limits import (
    MAX_DURATION_NS,
    MAX_FLAP_COUNT,
    MAX_TIMELINE_STEPS,
    MIN_CARRIER_FLAP_HALF_NS,
    MIN_FLAP_HALF_NS,
)
from emulator.model.linkparams import LinkParams
from emulator.model.netem import parse_netem_words
from emulator.model.units import format_time
from emulator.scenario.builder import Builder, existing_link, scenario_end
from emulator.scenario.links import read_direction
from emulator.scenario.reader import Document, is_null, join_path, suggest
from emulator.scenario.scenario import CAPACITY_KINDS, CUT_MODES, EVENT_KINDS, Event
from emulator.scenario.topology import Link

#: Keys of a timeline item: `at`, exactly one of EVENT_KINDS (its value names
#: the link), and the options below (each only for the kinds listed).
EVENT_OPTIONS: dict[str, tuple[str, ...]] = {
    # a fiber pair carries both directions, so a fail or repair is both directions
    "direction": tuple(kind for kind in EVENT_KINDS if kind not in CAPACITY_KINDS),
    "netem": ("set",),
    "period": ("flap",),
    "count": ("flap",),
    "mode": ("cut", "flap"),
}
EVENT_FIELDS: tuple[str, ...] = ("at", *EVENT_KINDS, *EVENT_OPTIONS)
#: The keys of a fail/repair value: the link, and what fails (at least one of the two)
FAILURE_FIELDS: tuple[str, ...] = ("link", "fiber_pairs", "waves")

#: the `engine:` section's keys
ENGINE_FIELDS = ("shards",)
#: the most engine loops a testbed may ask for
MAX_SHARDS = 64


def read_duration(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`duration: 20s`: how long the run lasts (read before traffic and timeline, which it bounds)."""
    duration = doc.time(node, path, "duration")
    if duration <= 0:
        doc.fail(node, path, "duration must be longer than 0", "e.g. duration: 20s")
    if duration > MAX_DURATION_NS:
        doc.fail(node, path, f"duration {format_time(duration)} is over the {format_time(MAX_DURATION_NS)} a run may last",
                 f"give at most duration: {format_time(MAX_DURATION_NS)}, iperf3's longest test")
    out.duration_ns = duration


def _set_words(doc: Document, node: yaml.Node, path: str, link: Link, direction: str) -> tuple[str, LinkParams, LinkParams | None]:
    """The words of a `set` event and the parameters they give each chosen direction."""
    words = doc.text(node, path, '"delay 5ms loss 1%"')
    if not words.split():
        doc.fail(node, path, "no netem words", 'e.g. netem: "delay 5ms loss 1%"')
    bases = {"both": (link.a_to_b, link.b_to_a), "a_to_b": (link.a_to_b,), "b_to_a": (link.b_to_a,)}[direction]
    try:
        params = [parse_netem_words(words, base) for base in bases]
    except InputError as exc:
        doc.fail(node, path, exc.bare_message, exc.fix)
    return words, params[0], params[1] if len(params) == 2 else None


def _read_event(doc: Document, node: yaml.Node, path: str, out: Builder) -> Event:
    pairs = doc.mapping(node, path, EVENT_FIELDS)
    fields = {key: value for key, _, value in pairs}
    keys = {key: key_node for key, key_node, _ in pairs}
    kinds = [kind for kind in EVENT_KINDS if kind in fields]
    if len(kinds) != 1:
        what = "no event" if not kinds else f"{len(kinds)} events ({', '.join(kinds)})"
        doc.fail(node, path, f"{what} in one item", f"give exactly one of {', '.join(EVENT_KINDS)}, e.g. {{at: 10s, cut: aktau-sumgait}}")
    kind = kinds[0]
    for option, kinds_allowed in EVENT_OPTIONS.items():
        if option in fields and kind not in kinds_allowed:
            doc.fail(keys[option], join_path(path, option), f"'{option}' does not apply to a {kind} event", f"remove it; it is for {', '.join(kinds_allowed)}")
    if "at" not in fields:
        doc.fail(node, path, f"the {kind} event has no time", "add at: with the time from the start, e.g. at: 10s")
    at = doc.time(fields["at"], join_path(path, "at"), "at")
    if kind in CAPACITY_KINDS:
        if at > out.duration_ns:
            doc.fail(fields["at"], join_path(path, "at"), f"at {format_time(at)} is after {scenario_end(out)}", "move the event earlier or lengthen duration")
        return _read_failure(doc, fields[kind], join_path(path, kind), kind, at, out)
    link = existing_link(doc, fields[kind], join_path(path, kind), out)
    direction = read_direction(doc, fields["direction"], join_path(path, "direction"), link) if "direction" in fields else "both"
    if at > out.duration_ns:
        doc.fail(fields["at"], join_path(path, "at"), f"at {format_time(at)} is after {scenario_end(out)}", "move the event earlier or lengthen duration")
    mode = "silent"
    if "mode" in fields:
        mode = doc.text(fields["mode"], join_path(path, "mode"), "carrier")
        if mode not in CUT_MODES:
            doc.fail(fields["mode"], join_path(path, "mode"), f"unknown cut mode {mode!r}", suggest(mode, CUT_MODES, "modes"))
        if mode == "carrier" and direction != "both":
            doc.fail(fields["mode"], join_path(path, "mode"),
                     "a carrier cut takes both ends' interfaces down, so it cannot be one direction",
                     "remove 'direction', or use the default silent mode for a one-way cut")

    if kind == "set":
        if "netem" not in fields:
            doc.fail(node, path, "a set event needs netem words", 'add e.g. netem: "delay 5ms loss 1%"')
        words, params, params_b_to_a = _set_words(doc, fields["netem"], join_path(path, "netem"), link, direction)
        return Event(at, kind, link.name, direction, params=params, params_b_to_a=params_b_to_a, words=words)
    if kind == "flap":
        for required, example in (("period", "period: 1s"), ("count", "count: 3")):
            if required not in fields:
                doc.fail(node, path, f"a flap event needs '{required}'", f"add e.g. {example}")
        period = doc.time(fields["period"], join_path(path, "period"), "period")
        if period <= 0:
            doc.fail(fields["period"], join_path(path, "period"), "period must be longer than 0", "e.g. period: 1s (down half, up half)")
        # The shortest down/up half the engine holds and the probes resolve
        # (limits.MIN_FLAP_HALF_NS; longer with carrier: interfaces follow from a thread).
        floor = MIN_CARRIER_FLAP_HALF_NS if mode == "carrier" else MIN_FLAP_HALF_NS
        if period // 2 < floor:
            how = "a carrier flap's" if mode == "carrier" else "a flap's"
            doc.fail(fields["period"], join_path(path, "period"),
                     f"period {format_time(period)} makes {how} down and up halves {format_time(period // 2)}, "
                     f"shorter than the {format_time(floor)} a run can play", f"give period: {format_time(2 * floor)} or longer")
        count = doc.integer(fields["count"], join_path(path, "count"), 1, MAX_FLAP_COUNT, "3")
        if at + period * count > out.duration_ns:
            doc.fail(
                fields["at"], join_path(path, "at"),
                f"the flap ends at {format_time(at + period * count)} ({format_time(at)} + {count} x {format_time(period)}), after {scenario_end(out)}",
                "start it earlier, flap fewer times or lengthen duration",
            )  # fmt: skip
        return Event(at, kind, link.name, direction, period_ns=period, count=count, mode=mode)
    return Event(at, kind, link.name, direction, mode=mode)


def _read_failure(doc: Document, node: yaml.Node, path: str, kind: str, at: int, out: Builder) -> Event:
    """`fail: {link: L, fiber_pairs: 1}` / `{link: L, waves: 8}` and `repair: {...}` alike."""
    example = f"{kind}: {{link: aktau-sumgait, fiber_pairs: 1}}"
    if not isinstance(node, yaml.MappingNode):
        doc.fail(node, path, f"a {kind} event names the link and what {'fails' if kind == 'fail' else 'is repaired'}",
                 f"write {example} or {{link: ..., waves: 8}}")
    given = {key: value for key, _, value in doc.mapping(node, path, FAILURE_FIELDS)}
    if "link" not in given:
        doc.fail(node, path, f"a {kind} event needs 'link'", f"write {example}")
    link = existing_link(doc, given["link"], join_path(path, "link"), out)
    if link.capacity is None:
        doc.fail(given["link"], join_path(path, "link"), f"link {link.name!r} declares no capacity to {kind} part of",
                 "add capacity: {fiber_pairs: 8, waves_per_pair: 128, wave_rate: 400gbit} to the link, or use cut/restore")
    if "fiber_pairs" not in given and "waves" not in given:
        doc.fail(node, path, f"a {kind} event needs fiber_pairs or waves", f"write {example}")
    pairs = doc.integer(given["fiber_pairs"], join_path(path, "fiber_pairs"), 1, 10_000, "1") if "fiber_pairs" in given else 0
    waves = doc.integer(given["waves"], join_path(path, "waves"), 1, 1_000_000, "8") if "waves" in given else 0
    return Event(at, kind, link.name, fiber_pairs=pairs, waves=waves)


def _capacity_steps(doc: Document, node: yaml.Node, path: str, items: list[yaml.Node], out: Builder) -> None:
    """Give every fail/repair its parameters: the outage so far (in time order, file order at one
    instant) and the rate left at the link's scale. Refuses failing more than is in service."""
    outages: dict[str, Outage] = {}
    order = sorted(range(len(out.timeline)), key=lambda i: out.timeline[i].at_ns)
    for i in order:
        event = out.timeline[i]
        if event.kind not in CAPACITY_KINDS:
            continue
        link = out.links[event.link]
        capacity = link.capacity
        assert capacity is not None  # _read_failure checked
        try:
            outage = capacity.after(outages.get(link.name, Outage()), event.fiber_pairs, event.waves,
                                    repair=event.kind == "repair")
        except CapacityError as exc:
            doc.fail(items[i], f"{path}[{i}].{event.kind}", exc.bare_message, exc.fix)
        outages[link.name] = outage
        rate = capacity.emulated_bps(outage)
        what = ", ".join(f"{n} {unit}" for n, unit in ((event.fiber_pairs, "fiber pair(s)"), (event.waves, "wave(s)")) if n)
        words = (f"{what} {'down' if event.kind == 'fail' else 'back'}: {capacity.share(outage):.2%} of lit in service, "
                 f"{format_bps(capacity.lit_bps(outage))} real, rate {format_bps(rate)} at scale {capacity.scale:g}")
        out.timeline[i] = dataclasses.replace(
            event, params=link.a_to_b.replace(rate_bps=rate), params_b_to_a=link.b_to_a.replace(rate_bps=rate),
            share=capacity.share(outage), words=words)


def read_timeline(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`timeline: [{at: 10s, cut: LINK}, ...]` (read after `links` and `duration`)."""
    if is_null(node):
        return
    steps = 0
    for i, item in enumerate(doc.sequence(node, path)):
        event = _read_event(doc, item, f"{path}[{i}]", out)
        # Bounded work: every step is handed to the engine (per direction) and reported.
        steps += 2 * event.count if event.kind == "flap" else 1
        if steps > MAX_TIMELINE_STEPS:
            doc.fail(item, f"{path}[{i}]", f"the timeline reaches {steps} steps here (a flap is 2 per cycle), "
                     f"more than the {MAX_TIMELINE_STEPS} a run plays", "flap fewer times, or split the scenario")
        out.timeline.append(event)
    _capacity_steps(doc, node, path, doc.sequence(node, path), out)
    out.step_counts = {kind: sum(1 for e in out.timeline if e.kind == kind) for kind in EVENT_KINDS}


def read_engine(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`engine: {shards: N}`: how many engine loops (threads, a CPU each) share the links."""
    for key, _key_node, value in doc.mapping(node, path, ENGINE_FIELDS):
        if key == "shards":
            shards = doc.integer(value, join_path(path, key), 1, MAX_SHARDS, "2")
            if shards > max(1, len(out.links)):
                doc.fail(value, join_path(path, key), f"{shards} shards for {len(out.links)} link(s)",
                         f"use at most {max(1, len(out.links))}: each shard forwards at least one whole link")
            out.engine_shards = shards
