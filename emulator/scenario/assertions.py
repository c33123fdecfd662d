"""The `assertions:` section: metric names and the bounds their values must keep.

A metric is named `<traffic>.<metric>`, `link.<link>.<direction>.<metric>`,
`events.<metric>` or `routing.<step>.<metric>` (docs/scenario.md); each name
is checked against what this scenario measures, so a typo is refused before
the run, not reported as a missing value after it.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import yaml

from emulator.scenario.builder import Builder, existing_node
from emulator.scenario.reader import Document, is_null, join_path, kind_of, suggest
from emulator.scenario.scenario import (
    EVENT_KINDS,
    EVENT_METRICS,
    LINK_METRICS,
    REVERT_KINDS,
    ROUTING_METRICS,
    START_METRICS,
    START_STEP,
    TRAFFIC_METRICS,
    Assertion,
    unit_scale_ms,
)

#: Names an assertion may start with besides traffic names.
ASSERTION_PREFIXES = ("link", "events", "routing")
#: Bound keys of an assertion: exactly one per assertion.
#: (`includes`/`excludes` for path metrics, `equals: true|false` for boolean ones.)
ASSERTION_BOUNDS: tuple[str, ...] = ("between", "at_most", "at_least", "equals", "includes", "excludes")
#: Bound keys by the kind of value a metric has (scenario.ROUTING_METRICS; every other metric is a number).
BOUNDS_BY_VALUE: dict[str, tuple[str, ...]] = {
    "number": ("between", "at_most", "at_least", "equals"),
    "path": ("includes", "excludes"),
    "bool": ("equals",),
}
_STEP_LABEL = re.compile(rf"^({'|'.join(EVENT_KINDS)})([1-9][0-9]*)$")
#: `tolerance`: the largest emulator error (a duration) a timing assertion accepts
#: before it is inconclusive, however far the value lies from its bound
ASSERTION_FIELDS: tuple[str, ...] = ("metric", *ASSERTION_BOUNDS, "tolerance")


def _number(doc: Document, node: yaml.Node, path: str) -> float:
    """A bound's value: a plain finite number (its unit is in the metric's name)."""
    value = doc.value(node, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        doc.fail(node, path, f"expected a number, got {value!r}", "write a plain number, e.g. 1 (the unit is in the metric's name)")
    return value


def _check_metric(doc: Document, node: yaml.Node, path: str, out: Builder) -> str:
    """The metric name, if it names something this scenario measures."""
    metric = doc.text(node, path, "probe.loss_pct")
    parts = metric.split(".")
    head = parts[0]
    if head == "link":
        example = f"link.{next(iter(out.links), 'LINK')}.a_to_b.drops_outage"
        if len(parts) != 4:
            doc.fail(node, path, f"link metric {metric!r} is not link.<link>.<direction>.<metric>", f"e.g. {example}")
        _, link, direction, name = parts
        if link not in out.links:
            doc.fail(node, path, f"no link called {link!r} in {metric!r}", suggest(link, out.links, "links"))
        if direction not in ("a_to_b", "b_to_a"):
            doc.fail(node, path, f"unknown direction {direction!r} in {metric!r}", suggest(direction, ("a_to_b", "b_to_a"), "use"))
        if name not in LINK_METRICS:
            doc.fail(node, path, f"unknown link metric {name!r} in {metric!r}", suggest(name, LINK_METRICS, "link metrics"))
        return metric
    if head == "events":
        if len(parts) != 2 or parts[1] not in EVENT_METRICS:
            name = ".".join(parts[1:])
            doc.fail(node, path, f"unknown events metric {name!r} in {metric!r}", suggest(name, EVENT_METRICS, "events metrics"))
        return metric
    if head == "routing":
        _check_routing_metric(doc, node, path, metric, out)
        return metric
    if head in out.traffic:
        kind = out.traffic[head].kind
        name = ".".join(parts[1:])
        if len(parts) != 2 or name not in TRAFFIC_METRICS[kind]:
            doc.fail(node, path, f"unknown {kind} metric {name!r} in {metric!r}", suggest(name, TRAFFIC_METRICS[kind], f"{kind} metrics"))
        return metric
    doc.fail(
        node, path, f"{head!r} in {metric!r} is no traffic name, 'link', 'events' or 'routing'",
        suggest(head, (*out.traffic, *ASSERTION_PREFIXES), "use"),
    )  # fmt: skip


def _check_routing_metric(doc: Document, node: yaml.Node, path: str, metric: str, out: Builder) -> None:
    """`routing.<step>.<metric>`: a failover metric of a timeline event (docs/scenario.md)."""
    parts = metric.split(".")
    if len(parts) != 3:
        doc.fail(node, path, f"routing metric {metric!r} is not routing.<step>.<metric>", "e.g. routing.cut1.outage_ms")
    _, step, name = parts
    if out.routing is None or not out.routing.uses_daemons:
        doc.fail(node, path, f"{metric!r} is measured only with a routing protocol run by daemons",
                 "set routing: {protocol: ospf} (docs/routing.md), or assert on the probe stream instead")
    if step == START_STEP:
        if name not in START_METRICS:
            doc.fail(node, path, f"unknown start-up routing metric {name!r} in {metric!r}",
                     suggest(name, START_METRICS, "start-up metrics"))
        return
    match = _STEP_LABEL.match(step)
    counts = out.step_counts
    have = [f"{kind}{n}" for kind in EVENT_KINDS for n in range(1, counts[kind] + 1)]
    if not match or int(match.group(2)) > counts[match.group(1)]:
        doc.fail(node, path, f"no timeline step {step!r} in {metric!r} (steps are the event kind and its number "
                 "in time order)", suggest(step, have, "steps") if have else "add a timeline event")
    if name not in ROUTING_METRICS or (name == "reverts_on_restore" and match.group(1) not in REVERT_KINDS):
        names = [m for m in ROUTING_METRICS if m != "reverts_on_restore" or match.group(1) in REVERT_KINDS]
        doc.fail(node, path, f"unknown {match.group(1)} routing metric {name!r} in {metric!r}",
                 suggest(name, names, "routing metrics"))
    if not any(spec.kind == "probe" for spec in out.traffic.values()):
        doc.fail(node, path, f"{metric!r} is measured on a probe stream, and there is none",
                 "add e.g. traffic: {probe: {kind: probe, from: HOST, to: HOST}}")


def _metric_value_kind(metric: str) -> str:
    """"number", "path" or "bool": what kind of value `metric` has."""
    return ROUTING_METRICS.get(metric.split(".")[-1], "number") if metric.startswith("routing.") else "number"


def _node_list(doc: Document, node: yaml.Node, path: str, out: Builder) -> tuple[str, ...]:
    items = doc.sequence(node, path) if kind_of(node) == "list" else [node]
    if not items:
        doc.fail(node, path, "an empty list of nodes", "name at least one node, e.g. includes: moscow")
    return tuple(existing_node(doc, item, path, out) for item in items)


def _read_assertion(doc: Document, node: yaml.Node, path: str, out: Builder) -> Assertion:
    assertion = _read_bound(doc, node, path, out)
    fields = {key: value for key, _, value in doc.mapping(node, path, ASSERTION_FIELDS)}
    if "tolerance" not in fields:
        return assertion
    here = join_path(path, "tolerance")
    if unit_scale_ms(assertion.metric) is None:
        doc.fail(fields["tolerance"], here, f"a tolerance applies to timing metrics, and {assertion.metric} is not one",
                 "drop tolerance, or use it on a metric ending in _ms, _us or _s")
    return replace(assertion, tolerance_ns=doc.time(fields["tolerance"], here, "tolerance"))


def _read_bound(doc: Document, node: yaml.Node, path: str, out: Builder) -> Assertion:
    """An assertion's metric and its one bound."""
    pairs = doc.mapping(node, path, ASSERTION_FIELDS)
    fields = {key: value for key, _, value in pairs}
    if "metric" not in fields:
        doc.fail(node, path, "an assertion needs a metric", "add e.g. metric: probe.loss_pct")
    metric = _check_metric(doc, fields["metric"], join_path(path, "metric"), out)
    bounds = [key for key in ASSERTION_BOUNDS if key in fields]
    value_kind = _metric_value_kind(metric)
    allowed = BOUNDS_BY_VALUE[value_kind]
    if len(bounds) != 1:
        what = "no bound" if not bounds else f"{len(bounds)} bounds ({', '.join(bounds)})"
        words = {"number": "between: [low, high], at_most, at_least, equals", "path": "includes, excludes",
                 "bool": "equals: true, equals: false"}[value_kind]
        doc.fail(node, path, f"{what} for {metric}", f"give exactly one of {words}")
    bound = bounds[0]
    here = join_path(path, bound)
    if bound not in allowed:
        kind_words = {"number": "a number", "path": "a path (node names)", "bool": "true or false"}[value_kind]
        doc.fail(fields[bound], here, f"{bound} does not apply to {metric}, which is {kind_words}",
                 f"use {' or '.join(allowed)}")
    line = node.start_mark.line + 1
    if bound in ("includes", "excludes"):
        nodes = _node_list(doc, fields[bound], here, out)
        words = f"{bound} {', '.join(nodes)}"
        if bound == "includes":
            return Assertion(metric, description=words, line=line, includes=nodes)
        return Assertion(metric, description=words, line=line, excludes=nodes)
    if value_kind == "bool":
        value = doc.value(fields[bound], here)
        if not isinstance(value, bool):
            doc.fail(fields[bound], here, f"expected true or false, got {value!r}", "write equals: true")
        return Assertion(metric, description=f"equals {str(value).lower()}", line=line, expected=value)
    if bound == "between":
        items = doc.sequence(fields[bound], here)
        if len(items) != 2:
            doc.fail(fields[bound], here, f"between needs two numbers, got {len(items)}", "write between: [low, high]")
        low, high = (_number(doc, item, here) for item in items)
        if low > high:
            doc.fail(fields[bound], here, f"low {low} is above high {high}", f"write between: [{high}, {low}]")
        return Assertion(metric, float(low), float(high), f"between [{low}, {high}]", node.start_mark.line + 1)
    value = _number(doc, fields[bound], here)
    lower, upper = {"at_most": (None, value), "at_least": (value, None), "equals": (value, value)}[bound]
    return Assertion(
        metric,
        None if lower is None else float(lower),
        None if upper is None else float(upper),
        f"{bound.replace('_', ' ')} {value}",
        node.start_mark.line + 1,
    )


def read_assertions(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`assertions: [{metric: probe.loss_pct, at_most: 1}, ...]` (read after traffic, timeline and routing)."""
    if is_null(node):
        return
    for i, item in enumerate(doc.sequence(node, path)):
        out.assertions.append(_read_assertion(doc, item, f"{path}[{i}]", out))
