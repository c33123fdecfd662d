"""What a `caspian run` of a scenario measured: plain data, JSON-ready.

A `Report` is built once at the end of a run (see `emulator.run`) and handed
to the writers (`emulator.report.writers`: JSON, JUnit XML, plots) and the
console (`emulator.report.console`). It holds no live objects: everything is
numbers, strings, lists and dicts, so `Report.to_dict()` goes straight to
`json.dump` and `Report.from_dict()` reads it back.
"""

from __future__ import annotations

import math
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from emulator.scenario.scenario import unit_scale_ms

if TYPE_CHECKING:
    from emulator.scenario.scenario import Assertion

#: the series names a traffic stream may carry (any other name is kept, but not plotted)
SERIES_NAMES = ("owd_ms", "throughput_mbps", "loss_pct")

Point = tuple[float, float]


#: a metric's value: a number, or for failover metrics a path (node names) or a boolean; None = not measured
MetricValue = Any


def format_value(value: MetricValue) -> str:
    """A measured value for humans: integers as such, otherwise 4 significant digits or 3 decimals;
    a path as `a > b > c`, a boolean as true/false."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return " > ".join(str(v) for v in value) if value else "(empty)"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:.1f}"
    if magnitude >= 0.01:
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def describe_bound(low: float | None, high: float | None) -> str:
    """`between [1.9, 2.3]`, `>= 90`, `<= 0.5` or `any value` for open bounds."""
    if low is not None and high is not None:
        return f"between [{format_value(low)}, {format_value(high)}]"
    if low is not None:
        return f">= {format_value(low)}"
    if high is not None:
        return f"<= {format_value(high)}"
    return "any value"


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity: a non-finite number is reported as not measured."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _metric_json(value: MetricValue) -> Any:
    """A metric for JSON: booleans, texts and paths (lists of node names) as such, numbers finite or None."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return _finite_or_none(value)


@dataclass
class AssertionResult:
    """One assertion of the scenario and what was measured for it.

    `description` is the bound as written in the scenario file (e.g.
    "between [1.9, 2.3]"); `low`/`high` are the bound as numbers (None =
    open). `measured` is None when the metric could not be measured (a
    missing metric fails its assertion).
    """

    metric: str
    description: str
    measured: MetricValue          # a number, a path (list of node names) or a boolean
    passed: bool
    line: int = 0
    low: float | None = None
    high: float | None = None
    #: "pass", "fail" or "inconclusive" (the run's own error could have flipped it:
    #: emulator.report.verdict), and why when inconclusive
    verdict: str = ""
    reason: str = ""
    #: the scenario's tolerance for a timing metric, in the metric's unit (None: none given)
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if not self.verdict:
            self.verdict = "pass" if self.passed else "fail"

    @classmethod
    def from_assertion(cls, assertion: Assertion, measured: MetricValue) -> AssertionResult:
        """Judge a scenario `Assertion` against the measured value."""
        description = assertion.description or describe_bound(assertion.low, assertion.high)
        scale = unit_scale_ms(assertion.metric)
        tolerance = (None if assertion.tolerance_ns is None or scale is None
                     else assertion.tolerance_ns / 1e6 * scale)
        return cls(metric=assertion.metric, description=description, measured=measured,
                   passed=assertion.holds(measured), line=assertion.line, low=assertion.low, high=assertion.high,
                   tolerance=tolerance)

    @property
    def bound(self) -> str:
        """The bound in words: the description as written, else built from low/high."""
        return self.description or describe_bound(self.low, self.high)

    @property
    def name(self) -> str:
        """`<metric> <description>`: the test case name in JUnit XML."""
        return f"{self.metric} {self.bound}"

    def message(self) -> str:
        """`measured 2.41, expected between [1.9, 2.3]` (or `not measured, expected ...`),
        with the reason when inconclusive."""
        measured = "not measured" if self.measured is None else f"measured {format_value(self.measured)}"
        tail = f"; inconclusive: {self.reason}" if self.verdict == "inconclusive" else ""
        return f"{measured}, expected {self.bound}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "description": self.description, "bound": self.bound,
                "low": _finite_or_none(self.low), "high": _finite_or_none(self.high),
                "measured": _metric_json(self.measured), "passed": self.passed, "line": self.line,
                "verdict": self.verdict, "reason": self.reason, "tolerance": self.tolerance}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssertionResult:
        return cls(metric=data["metric"], description=data.get("description", ""), measured=data.get("measured"),
                   passed=bool(data["passed"]), line=int(data.get("line", 0)),
                   low=data.get("low"), high=data.get("high"),
                   verdict=data.get("verdict", ""), reason=data.get("reason", ""),
                   tolerance=data.get("tolerance"))


@dataclass
class TimelineMark:
    """Something that happened at `t_s` seconds after the start.

    `kind` is a timeline step (cut, restore, set; a flap appears as its cut
    and restore steps) or a routing event: "route", the first kernel route
    change of router `link` after a step (`detail`: how many in that step's window).
    """

    t_s: float
    kind: str
    link: str
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} {self.link}" + (f" {self.detail}" if self.detail else "")

    def to_dict(self) -> dict[str, Any]:
        return {"t_s": self.t_s, "kind": self.kind, "link": self.link, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimelineMark:
        return cls(t_s=float(data["t_s"]), kind=data["kind"], link=data["link"], detail=data.get("detail", ""))


def run_verdict(verdicts: list[str], errors: list[str]) -> str:
    """The run's verdict from its assertions' verdicts and its errors (docs/verdicts.md)."""
    if errors or "fail" in verdicts:
        return "fail"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "pass"


@dataclass
class Report:
    """Everything one run of a scenario produced."""

    scenario: str                 # the scenario's (topology's) name
    source: str                   # the file it came from, or "<default>"
    seed: int
    started_at: str               # ISO 8601, UTC
    duration_s: float             # the scenario's duration
    wall_s: float                 # the whole run: build, traffic, teardown
    versions: dict[str, str]      # caspian, python, kernel, iperf3 ...
    #: flat: "probe.owd_median_ms" -> value (None = not measured); failover metrics
    #: (`routing.<step>.<metric>`) may be a path (list of node names), a boolean or a text (`detected_by`)
    metrics: dict[str, MetricValue]
    assertions: list[AssertionResult]
    marks: list[TimelineMark]
    #: traffic name -> {"owd_ms": [(t_s, v)], "throughput_mbps": [...], "loss_pct": [...]}
    series: dict[str, dict[str, list[Point]]]
    links: dict[str, Any]         # engine counters at the end, as Testbed.stats()
    scenario_text: str = ""
    errors: list[str] = field(default_factory=list)   # e.g. a traffic tool that failed
    #: each timeline step as the engine applied it (emulator.run.collect.timeline_status): label, kind,
    #: link, direction, scheduled_s, applied_s, apply_error_us, and per direction the applied
    #: time and the arrival times of the last frame judged before and the first after
    timeline: list[dict[str, Any]] = field(default_factory=list)
    #: what bent this run's figures (emulator.measure.fidelity.Fidelity.to_dict()); {} = not measured
    fidelity: dict[str, Any] = field(default_factory=dict)
    #: the topology drawn on the HTML page (emulator.report.topology_view.topology_data) and
    #: "streams": each traffic stream's least-delay path as node names; {} = not recorded
    topology: dict[str, Any] = field(default_factory=dict)
    #: queue occupancy over time, per link direction that queued: "link sender>receiver" ->
    #: [(t_s, the most packets awaiting serialization in that 100 ms)] (emulator.measure.queues)
    queues: dict[str, list[Point]] = field(default_factory=dict)
    #: the scenario's `capture:` files: path -> frames recorded (docs/capture.md)
    captures: dict[str, int] = field(default_factory=dict)
    #: frames the capture could not record (its ring was full): the files miss them,
    #: forwarding did not (not an error: the network was emulated as asked)
    capture_lost: int = 0
    #: replica factors (docs/capacity.md): {"links": {name: {factor, fitted, design_mbps, lit_mbps,
    #: emulated_mbps, ...}}, "streams": {name: factor}}; {} when nothing is scaled. Measured
    #: throughputs are the replica's; `*_scaled_back_*` and the link windows are divided by the factor
    scale: dict[str, Any] = field(default_factory=dict)
    #: the machines of a run across machines (Testbed.placement_summary): "machines" ->
    #: their nodes, "crossing" links with owner, tunnel and the delay the owner's engine
    #: held, "underlay" as measured; {} on one machine
    placement: dict[str, Any] = field(default_factory=dict)

    def stream_scale(self, stream: str) -> float:
        """The factor of the scaled links `stream` crossed (1: none)."""
        return float(self.scale.get("streams", {}).get(stream, 1.0)) if self.scale else 1.0

    @property
    def verdict(self) -> str:
        """"pass", "fail" (an assertion failed, or the run had errors) or "inconclusive"
        (none failed, but the run's own error could have flipped one)."""
        return run_verdict([a.verdict for a in self.assertions], self.errors)

    @property
    def passed(self) -> bool:
        """Every assertion held, none inconclusive, and nothing went wrong."""
        return self.verdict == "pass"

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail (the CLI's "a check failed"), 3 inconclusive."""
        return {"pass": 0, "fail": 1, "inconclusive": 3}[self.verdict]

    @property
    def failed(self) -> list[AssertionResult]:
        return [a for a in self.assertions if a.verdict == "fail"]

    @property
    def inconclusive(self) -> list[AssertionResult]:
        return [a for a in self.assertions if a.verdict == "inconclusive"]

    def summary(self) -> str:
        """`PASS (3/3 assertions)`, `FAIL (2/3 assertions, 1 error)` or
        `INCONCLUSIVE (2/3 assertions, 1 inconclusive)`."""
        n = len(self.assertions)
        ok = n - len(self.failed) - len(self.inconclusive)
        tail = f", {len(self.inconclusive)} inconclusive" if self.inconclusive else ""
        tail += f", {len(self.errors)} error{'s' if len(self.errors) != 1 else ''}" if self.errors else ""
        return f"{self.verdict.upper()} ({ok}/{n} assertions{tail})"

    def streams(self) -> list[str]:
        """Traffic stream names, in the order they appear in series, then metrics."""
        names = list(self.series)
        for key in self.metrics:
            head = key.split(".", 1)[0]
            if "." in key and head not in ("link", "events", "routing") and head not in names:
                names.append(head)
        return names

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: only dicts, lists, strings, finite numbers, booleans and None."""
        return {
            "scenario": self.scenario,
            "source": self.source,
            "seed": self.seed,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "wall_s": self.wall_s,
            "passed": self.passed,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "versions": dict(self.versions),
            "metrics": {k: _metric_json(v) for k, v in self.metrics.items()},
            "assertions": [a.to_dict() for a in self.assertions],
            "marks": [m.to_dict() for m in self.marks],
            "series": {
                stream: {name: [[float(t), _finite_or_none(v)] for t, v in points] for name, points in named.items()}
                for stream, named in self.series.items()
            },
            "links": _json_safe(self.links),
            "timeline": _json_safe(self.timeline),
            "fidelity": _json_safe(self.fidelity),
            "topology": _json_safe(self.topology),
            "queues": {name: [[float(t), float(v)] for t, v in points] for name, points in self.queues.items()},
            "captures": dict(self.captures),
            "capture_lost": self.capture_lost,
            "scale": _json_safe(self.scale),
            "placement": _json_safe(self.placement),
            "errors": list(self.errors),
            "scenario_text": self.scenario_text,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The inverse of `to_dict` (series points come back as tuples; NaN points as None)."""
        return cls(
            scenario=data["scenario"], source=data["source"], seed=int(data["seed"]), started_at=data["started_at"],
            duration_s=float(data["duration_s"]), wall_s=float(data["wall_s"]), versions=dict(data["versions"]),
            metrics=dict(data["metrics"]),
            assertions=[AssertionResult.from_dict(a) for a in data["assertions"]],
            marks=[TimelineMark.from_dict(m) for m in data["marks"]],
            series={stream: {name: [(t, v) for t, v in points] for name, points in named.items()}
                    for stream, named in data["series"].items()},
            links=data.get("links", {}), scenario_text=data.get("scenario_text", ""),
            errors=list(data.get("errors", [])), timeline=list(data.get("timeline", [])),
            fidelity=dict(data.get("fidelity", {})), topology=dict(data.get("topology", {})),
            queues={name: [(t, v) for t, v in points] for name, points in data.get("queues", {}).items()},
            captures=dict(data.get("captures", {})), capture_lost=int(data.get("capture_lost", 0)),
            scale=dict(data.get("scale", {})), placement=dict(data.get("placement", {})),
        )


def _json_safe(value: Any) -> Any:
    """Engine counters as JSON: tuples to lists, non-finite floats to None, keys to strings."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return _finite_or_none(value)
    return value


def utc_now() -> str:
    """Now, ISO 8601 in UTC to the second: `2025-01-31T12:00:00Z`."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def tool_version(command: str, *, timeout_s: float = 5.0) -> str | None:
    """The first version number `command --version` prints, or None when absent."""
    path = shutil.which(command)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\d+(?:\.\d+)+", done.stdout + done.stderr)
    return match.group(0) if match else None


def collect_versions(tools: tuple[str, ...] = ("iperf3",)) -> dict[str, str]:
    """caspian, python, kernel and each tool's version (tools not installed are left out)."""
    from emulator import __version__

    versions = {"caspian": __version__, "python": platform.python_version(), "kernel": platform.release()}
    for tool in tools:
        version = tool_version(tool)
        if version is not None:
            versions[tool] = version
    return versions


def scale_lines(report: "Report") -> list[str]:
    """One line per scaled link: its factor and what it stands for."""
    lines = []
    for name, entry in report.scale.get("links", {}).items() if report.scale else ():
        real = f"{entry['lit_mbps'] / 1e6:g} Tbit/s lit of {entry['design_mbps'] / 1e6:g} design" if "lit_mbps" in entry else "its rate"
        lines.append(f"scale: {name} is a replica at x{entry['factor']:g}{' (fit)' if entry.get('fitted') else ''}: "
                     f"{real} -> {entry['emulated_mbps']:g} Mbit/s here; figures named *scaled_back* and the "
                     f"capacity table are divided by the factor, throughput_mbps is the replica's")
    return lines
