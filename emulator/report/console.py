"""A report on the console (rich): assertions, key metrics per stream, link drops, files, verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emulator.report.report import Report, format_value, scale_lines
from emulator.scenario.scenario import START_STEP

#: the metrics shown per traffic stream, in this order, when the stream has them
KEY_METRICS = (
    "sent", "received", "loss_pct", "loss_outside_events_pct",
    "owd_min_ms", "owd_median_ms", "owd_p99_ms", "owd_max_ms", "jitter_ms", "longest_gap_ms",
    "reordered", "duplicates", "throughput_mbps", "throughput_scaled_back_mbps", "retransmits", "bytes",
)
#: the per-window figures of a link that declares capacity (docs/capacity.md)
CAPACITY_WINDOWS = ("before", "during", "after")
#: a console that is not a terminal (a file, a pipe, CI) is at least this wide
MIN_WIDTH = 100


def make_console() -> Console:
    """A console for the report; when not writing to a terminal, at least MIN_WIDTH wide."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(MIN_WIDTH, console.width))
    return console


VERDICT_STYLE = {"pass": "[bold green]PASS[/]", "fail": "[bold red]FAIL[/]",
                 "inconclusive": "[bold yellow]INCONCLUSIVE[/]"}


def _verdict(verdict: str) -> str:
    return VERDICT_STYLE[verdict]


def assertions_table(report: Report) -> Table:
    table = Table(title="assertions", title_justify="left", pad_edge=False)
    table.add_column("line", justify="right")
    table.add_column("metric", no_wrap=True)    # the others give way first: a metric reads whole
    table.add_column("bound", overflow="fold")
    table.add_column("measured", justify="right", overflow="fold")
    table.add_column("result")
    for result in report.assertions:
        table.add_row(str(result.line) if result.line else "", escape(result.metric), escape(result.bound),
                      escape(format_value(result.measured)), _verdict(result.verdict))
    return table


def stream_table(report: Report) -> Table | None:
    """The key metrics of each traffic stream (and the timeline's), one row per metric."""
    table = Table(title="traffic", title_justify="left")
    table.add_column("stream", overflow="fold")
    table.add_column("metric", overflow="fold")
    table.add_column("value", justify="right")
    rows = 0
    for stream in [*report.streams(), "events"]:
        prefix = stream + "."
        own = {key[len(prefix):]: value for key, value in report.metrics.items() if key.startswith(prefix)}
        names = [name for name in KEY_METRICS if name in own] if stream != "events" else list(own)
        factor = report.stream_scale(stream)
        for i, name in enumerate(names):
            # a replica's own figures say so, so nobody reads them as the real link's
            label = f"{name} (replica, x{factor:g})" if factor != 1.0 and name == "throughput_mbps" else name
            table.add_row(escape(stream) if i == 0 else "", escape(label), format_value(own[name]),
                          end_section=i == len(names) - 1)
            rows += 1
    return table if rows else None


#: the columns of the failover table: (routing metric, heading); texts and paths follow it as lines
FAILOVER_COLUMNS = (
    ("detection_ms", "detect ms"), ("convergence_ms", "converge ms"), ("outage_ms", "outage ms"),
    ("route_changes", "routes"), ("rtt_before_ms", "rtt before"), ("rtt_after_ms", "rtt after"),
    ("reverts_on_restore", "reverts"),
)
#: ... and the lines under it: (routing metric, words)
FAILOVER_LINES = (("detected_by", "detected by"), ("detection_in_bfd_window", "within BFD's window:"),
                  ("loss_derived_ms", "RFC 6413 loss-derived ms"), ("rate_derived_full_ms", "rate-derived full ms"),
                  ("path_after", "path after:"))


def _failover_steps(report: Report) -> dict[str, dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {}
    for key, value in report.metrics.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "routing" and parts[1] != START_STEP:
            steps.setdefault(parts[1], {})[parts[2]] = value
    return steps


def failover_table(report: Report) -> Table | None:
    """One row per timeline step with failover metrics (`routing.<step>.<metric>`), None without any."""
    steps = _failover_steps(report)
    converged = report.metrics.get(f"routing.{START_STEP}.convergence_s")
    if not steps and converged is None:
        return None
    title = "failover" if converged is None else f"failover (routing converged {format_value(converged)} s after start)"
    table = Table(title=title, title_justify="left", pad_edge=False)
    table.add_column("step", no_wrap=True)
    for _, heading in FAILOVER_COLUMNS:
        table.add_column(heading, justify="right")
    for step, values in steps.items():
        table.add_row(escape(step), *(escape(format_value(values.get(name))) if name in values else ""
                                      for name, _ in FAILOVER_COLUMNS))
    return table


def failover_lines(report: Report) -> list[str]:
    """Per step, what does not fit a table cell: `cut1 detected by bfd sumgait ... down; path after: a > b > c`."""
    lines = []
    for step, values in _failover_steps(report).items():
        parts = [f"{words} {format_value(values[name])}" for name, words in FAILOVER_LINES
                 if values.get(name) is not None]
        if parts:
            lines.append(f"  {step} " + "; ".join(parts))
    return lines


def capacity_table(report: Report) -> Table | None:
    """Per direction of a link that declares capacity: the real capacity in service and the
    scaled-back throughput before / during / after its partial failures."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in report.metrics.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "link" and parts[3].endswith("_mbps") and parts[3].split("_")[0] in ("throughput", "capacity"):
            rows.setdefault((parts[1], parts[2]), {})[parts[3]] = value
    rows = {key: values for key, values in rows.items() if any(v is not None for v in values.values())}
    if not rows:
        return None
    table = Table(title="capacity (real size: scaled back, Tbit/s)", title_justify="left", pad_edge=False)
    for column in ("link", "direction", *(f"{w} lit / measured" for w in CAPACITY_WINDOWS)):
        table.add_column(column, justify="left" if column in ("link", "direction") else "right")

    def tbps(value: Any) -> str:
        return f"{value / 1e6:.4g}" if isinstance(value, (int, float)) else "-"

    for (link, direction), values in rows.items():
        cells = [f"{tbps(values.get(f'capacity_{w}_mbps'))} / {tbps(values.get(f'throughput_{w}_mbps'))}"
                 if values.get(f"capacity_{w}_mbps") is not None else "" for w in CAPACITY_WINDOWS]
        table.add_row(escape(link), direction, *cells)
    return table


def drops_table(links: Mapping[str, Any]) -> Table | None:
    """Per link and direction: packets in and out, engine drops by reason, kernel (socket) drops."""
    if not links:
        return None
    table = Table(title="links", title_justify="left", pad_edge=False)
    for column in ("link", "direction", "rx", "tx", "dropped (reason)", "kernel"):
        table.add_column(column, justify="right" if column in ("rx", "tx", "kernel") else "left",
                         overflow="fold", no_wrap=column == "dropped (reason)")
    for name, entry in links.items():
        ends = entry.get("ends") or ["a", "b"]
        for label, (src, dst) in (("a_to_b", (ends[0], ends[1])), ("b_to_a", (ends[1], ends[0]))):
            counters = entry.get(label)
            if not counters:
                continue
            drops = ", ".join(f"{n} {reason}" for reason, n in counters.get("drops", {}).items() if n) or "0"
            table.add_row(escape(name) + (" [red]\\[cut][/]" if entry.get("cut") else ""), escape(f"{src}→{dst}"),
                          str(counters.get("rx_packets", "")), str(counters.get("tx_packets", "")), escape(drops),
                          str(counters.get("kernel_drops", "")))
    return table


def print_report(report: Report, console: Console | None = None, *, files: Mapping[str, str] | None = None) -> None:
    """The whole report; `files` are the paths written (as `write_all` returns them).

    The last line is `caspian: PASS (n/n assertions)` or `caspian: FAIL (...)`.
    """
    console = console or make_console()
    console.print(f"caspian: [bold]{escape(report.scenario)}[/] from {escape(report.source)}, seed {report.seed}, "
                  f"{report.duration_s:g} s scenario, {report.wall_s:.1f} s wall, started {report.started_at}",
                  soft_wrap=True)
    failover = failover_table(report)
    for line in scale_lines(report):
        console.print(escape(line), soft_wrap=True)
    if report.placement:
        console.print(escape(placement_line(report.placement)), soft_wrap=True)
    for table in (assertions_table(report) if report.assertions else None, stream_table(report),
                  capacity_table(report), failover, drops_table(report.links)):
        if table is not None:
            console.print(table)
        if table is failover and failover is not None:
            for line in failover_lines(report):
                console.print(escape(line), soft_wrap=True)
    for error in report.errors:
        console.print(f"[bold red]error:[/] {escape(error)}")
    for kind, path in (files or {}).items():
        console.print(f"  {kind}: {escape(path)}", soft_wrap=True)
    for path, frames in report.captures.items():
        console.print(f"  capture: {escape(path)} ({frames} frames)", soft_wrap=True)
    if report.capture_lost:
        console.print(f"[yellow]capture:[/] {report.capture_lost} frames not recorded (the capture ring was full; "
                      "forwarding was not slowed)", soft_wrap=True)
    for result in report.inconclusive:
        console.print(f"[yellow]inconclusive:[/] {escape(result.metric)}: {escape(result.reason)}", soft_wrap=True)
    fidelity_lines(console, report)
    summary = report.summary()
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[report.verdict]
    console.print(f"caspian: [bold {colour}]{summary.split(' ', 1)[0]}[/] {escape(summary.split(' ', 1)[1])}",
                  soft_wrap=True)


def placement_line(placement: Mapping[str, Any]) -> str:
    """One line: the machines, their nodes, the underlay measured and what crossed it."""
    machines = ", ".join(f"{name} ({len(nodes)} nodes)" for name, nodes in placement["machines"].items())
    underlay = placement.get("underlay", {})
    crossing = ", ".join(f"{link} (impaired by {entry['owner']})" for link, entry in placement["crossing"].items())
    return (f"machines: {machines}, simulated here; underlay {underlay.get('measured_delay_ms', 0):.3f} ms one way "
            f"(spread {underlay.get('measured_spread_ms', 0):.3f} ms), taken off {crossing or 'no link'}")


def fidelity_lines(console: Console, report: Report) -> None:
    """One line when the run kept its fidelity, else a table of what bent it."""
    f = report.fidelity
    if not f:
        return
    problems = f.get("problems", [])
    p99 = f.get("lateness_p99_us")
    steal = f"steal {f.get('steal_pct', 0):.1f} %"
    if not problems:
        console.print(f"fidelity: ok (release lateness p99 < {p99:g} µs, no engine stall, {steal})"
                      if p99 is not None else f"fidelity: ok (no engine stall, {steal})", soft_wrap=True)
        return
    table = Table(title="fidelity: what bent this run", title_justify="left")
    table.add_column("what", overflow="fold")
    for problem in problems:
        table.add_row(escape(problem))
    console.print(table)
