"""A scenario: a topology plus traffic, a timeline of events and assertions.

Pure, immutable data; `emulator.scenario.loader.load_scenario` builds it from
the same YAML file a topology lives in (the topology sections plus `duration`,
`traffic`, `timeline` and `assertions`). Times are ns from the scenario start.
The dependency runs one way: the loader imports these classes, never the
reverse (so there is no `Scenario.load`: call `load_scenario`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.model.direction import WORDS
from emulator.model.linkparams import LinkParams
from emulator.model.metrics import STREAM_KINDS, kinds as metric_kinds, names as metric_names
from emulator.scenario.topology import Topology

TRAFFIC_KINDS = tuple(kind.name for kind in STREAM_KINDS)
EVENT_KINDS = ("cut", "restore", "set", "flap", "fail", "repair")
#: Events that take part of a link's lit capacity away or give it back
#: (emulator.model.capacity): the engine plays each as a `set` of the reduced rate
CAPACITY_KINDS = ("fail", "repair")
#: the direction words a file may use (a node name too, resolved by emulator.model.direction)
DIRECTIONS = WORDS
#: How a cut fails the link: `silent`, frames vanish and both ends stay up (BFD or
#: hellos must notice); `carrier`, the link's interfaces go oper-down in both nodes as
#: when a transponder loses light, so the daemons see the netlink event at once
CUT_MODES = ("silent", "carrier")

#: The metric names, from the registry (emulator.model.metrics), which says each one's unit and producer.
#: Metrics each traffic kind yields; an assertion names `<traffic>.<metric>`.
TRAFFIC_METRICS: dict[str, tuple[str, ...]] = {kind: metric_names(kind) for kind in TRAFFIC_KINDS}
#: Metrics of every link direction: `link.<name>.<a_to_b|b_to_a>.<metric>`.
LINK_METRICS = metric_names("link")
#: Metrics of the timeline: `events.<metric>`: the total time links were cut (from the
#: instants the engine applied each cut and restore) and the largest delay between a
#: step's scheduled instant and the engine applying it
EVENT_METRICS = metric_names("events")
#: Failover metrics of each timeline event with dynamic routing: `routing.<step>.<metric>`, where
#: <step> is the event's kind and its number among the events of that kind in time order
#: (cut1, restore1, set1, flap1 ...). Value kinds: "number", "path" (node names), "bool".
ROUTING_METRICS: dict[str, str] = metric_kinds("routing")
#: ... of which `reverts_on_restore` exists only for these kinds
REVERT_KINDS = ("restore", "flap")
#: The routing's start-up as a step of its own: `routing.start.convergence_s`, seconds from
#: starting the daemons to converged (routes to every node, sessions Established, BFD Up)
START_STEP = "start"
START_METRICS = metric_names("start")


@dataclass(frozen=True)
class TrafficSpec:
    """One traffic stream between two nodes."""

    name: str
    kind: str                      # probe | tcp | udp
    source: str                    # node name (`from` in YAML)
    target: str                    # node name (`to` in YAML)
    start_ns: int = 0
    stop_ns: int | None = None     # None = the scenario's end
    #: probe: packets per second (0 for udp and tcp)
    rate_pps: float = 0.0
    #: udp: target bit/s; tcp: 0 (unlimited) or a cap in bit/s (0 for probes)
    rate_bps: float = 0.0
    #: probe/udp payload bytes (probe: at least 16, for sequence and time)
    size: int = 64
    ipv6: bool = False
    #: the replica factor of the scaled links the stream crosses (emulator.model.capacity);
    #: `rate_bps` is already multiplied by it, and its throughput is divided by it in reports
    scale: float = 1.0


@dataclass(frozen=True)
class Event:
    """A timeline event on one link at `at_ns` after the start.

    `flap`: `count` cycles of down for `period_ns / 2`, then up for `period_ns / 2`.
    `set`: `params` replaces the direction(s) parameters: the netem `words`
    applied on top of the link's parameters as configured in the file (not on
    top of an earlier `set`). With `direction` both, `params` is a_to_b and
    `params_b_to_a` the other way; for one direction only `params` is given.
    `direction` is always both, a_to_b or b_to_a (a node name is normalised).
    `fail` / `repair`: `fiber_pairs` and `waves` taken out of (given back to)
    service; `params` / `params_b_to_a` are both directions' parameters after
    it, at the lit capacity left times the link's scale, and `share` the
    fraction of the lit capacity in service after it.
    """

    at_ns: int
    kind: str                      # cut | restore | set | flap
    link: str
    direction: str = "both"
    params: LinkParams | None = None          # set: a_to_b (or the only direction)
    params_b_to_a: LinkParams | None = None   # set with direction both: the other way
    words: str = ""                           # set: the words as written, for reports
    period_ns: int = 0
    count: int = 0
    mode: str = "silent"                      # cut, flap: one of CUT_MODES
    fiber_pairs: int = 0                      # fail, repair
    waves: int = 0                            # fail, repair
    share: float = 1.0                        # fail, repair: lit capacity in service after it

    def expand(self) -> list["Event"]:
        """A flap as its cut/restore steps; other events as themselves."""
        if self.kind != "flap":
            return [self]
        half = self.period_ns // 2
        steps: list[Event] = []
        for i in range(self.count):
            t = self.at_ns + i * self.period_ns
            steps.append(Event(t, "cut", self.link, self.direction, mode=self.mode))
            steps.append(Event(t + half, "restore", self.link, self.direction, mode=self.mode))
        return steps

    @property
    def end_ns(self) -> int:
        return self.at_ns + (self.period_ns * self.count if self.kind == "flap" else 0)


def unit_scale_ms(metric: str) -> float | None:
    """How many of a metric's units make a millisecond (None: not a time).

    A metric's unit is its name's suffix: `_ms`, `_us` or `_s`.
    """
    if metric.endswith("_ms"):
        return 1.0
    if metric.endswith("_us"):
        return 1000.0
    if metric.endswith("_s"):
        return 0.001
    return None


@dataclass(frozen=True)
class Assertion:
    """`metric` must lie within [low, high] (either may be None = unbounded).

    For a path metric (a list of node names) `includes`/`excludes` name
    nodes the path must (not) pass through; for a boolean metric `expected`
    is the value it must have. A value of the wrong kind never holds.
    """

    metric: str
    low: float | None = None
    high: float | None = None
    description: str = ""          # how it was written, e.g. "between [1.9, 2.3]"
    line: int = 0                  # line in the scenario file, for reports
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    expected: bool | None = None
    #: timing metrics: the largest emulator error (ns) the assertion accepts before
    #: its verdict is inconclusive, however far the value lies from the bound
    #: (None: the distance to the bound alone decides; emulator.report.verdict)
    tolerance_ns: int | None = None

    def holds(self, value: object) -> bool:
        if value is None:
            return False
        if self.includes or self.excludes:
            return (isinstance(value, (list, tuple)) and all(node in value for node in self.includes)
                    and not any(node in value for node in self.excludes))
        if self.expected is not None:
            return isinstance(value, bool) and value == self.expected
        if isinstance(value, (bool, list, tuple, str)):
            return False
        if self.low is not None and value < self.low:  # type: ignore[operator]
            return False
        if self.high is not None and value > self.high:  # type: ignore[operator]
            return False
        return True


@dataclass(frozen=True)
class CaptureSpec:
    """A link captured to `<link>.pcapng` in the report directory for the whole run
    (emulator.engine.capture); `direction` both, a_to_b, b_to_a or the sending node."""

    link: str
    direction: str = "both"


@dataclass(frozen=True)
class Scenario:
    """Everything a run needs; `source` is the file it came from."""

    topology: Topology
    duration_ns: int
    traffic: tuple[TrafficSpec, ...] = ()
    timeline: tuple[Event, ...] = ()
    assertions: tuple[Assertion, ...] = ()
    capture: tuple[CaptureSpec, ...] = ()
    seed: int = 1
    source: str = "<default>"
    text: str = field(default="", repr=False)   # the file's text, kept for the report

    @property
    def name(self) -> str:
        return self.topology.name

    def measured_steps(self) -> list[tuple[str, Event]]:
        """The timeline's events (flaps whole) in time order, each with its failover label:
        its kind and number among the events of that kind (`cut1`, `restore1`, `flap1`, `set1`)."""
        counts: dict[str, int] = {}
        labelled = []
        for event in sorted(self.timeline, key=lambda e: e.at_ns):
            counts[event.kind] = counts.get(event.kind, 0) + 1
            labelled.append((f"{event.kind}{counts[event.kind]}", event))
        return labelled

    def steps(self) -> list[Event]:
        """The timeline with flaps expanded, in time order."""
        return sorted((step for event in self.timeline for step in event.expand()), key=lambda e: e.at_ns)
