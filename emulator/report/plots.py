"""Figures of a run: one-way delay, throughput and loss over time, with the timeline marked.

Drawn with matplotlib's Agg canvas on a bare `Figure` (no pyplot, no display,
no global backend switch), each 1200x600 px (12x6 in at 100 dpi). The layout
is fixed by hand (`subplots_adjust`) and the file saved without
`bbox_inches="tight"`, so every PNG has exactly that size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from emulator.report.report import Report

WIDTH_IN, HEIGHT_IN, DPI = 12, 6, 100
#: timeline mark colours by kind; any other kind (routing events) is purple
MARK_COLOURS = {"cut": "tab:red", "restore": "tab:green", "set": "tab:orange", "fail": "tab:brown", "repair": "tab:olive"}
OTHER_MARK_COLOUR = "tab:purple"
#: above this many marks only the lines are drawn (a long flap would bury the plot in labels)
MAX_MARK_LABELS = 24
#: above this many points a series is drawn as a line only, without markers
MAX_MARKED_POINTS = 200
#: a step between points this many times the median step is a gap (no line across it)
GAP_FACTOR = 5
#: the loss axis reaches at least this far (%), so a loss-free run reads as 0 on a sensible scale
MIN_LOSS_TOP = 1.0

PLOT_FILES = {"delay": "delay.png", "throughput": "throughput.png", "loss": "loss.png", "queue": "queue.png"}


def _text(value: str) -> str:
    """User text (names, details) as literal text: `$` would start mathtext."""
    return value.replace("$", r"\$")


@contextmanager
def _missing_glyphs_tolerated() -> Iterator[None]:
    """A name with a character the font lacks is drawn as a box, not an error.

    matplotlib warns ("Glyph N ... missing from font(s) ...") and carries on;
    with warnings as errors that would lose the whole figure over one
    character of a user's link name. Only that warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        yield


def _figure(report: Report, what: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    figure.subplots_adjust(left=0.07, right=0.83, top=0.90, bottom=0.10)
    axes.set_title(_text(f"{report.scenario}: {what}"))
    axes.set_xlabel("time since start (s)")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if report.duration_s > 0:
        axes.set_xlim(0, report.duration_s)
    return figure, axes


def _streams_with(report: Report, name: str) -> dict[str, list[tuple[float, float]]]:
    """Stream -> points of the series `name`, for streams that have at least one point."""
    return {stream: named[name] for stream, named in report.series.items() if named.get(name)}


def _with_gaps(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Times and values, with a NaN where the spacing jumps (an outage): no line bridges the gap.

    A gap is a step longer than GAP_FACTOR times the median step (and than a
    millisecond); missing values (None) are NaN, drawn as breaks too.
    """
    points = sorted(points, key=lambda p: p[0])
    times = [float(t) for t, _ in points]
    values = [math.nan if v is None else float(v) for _, v in points]
    steps = sorted(b - a for a, b in zip(times, times[1:]))
    if not steps:
        return times, values
    limit = max(GAP_FACTOR * steps[len(steps) // 2], 1e-3)
    out_t, out_v = [times[0]], [values[0]]
    for i in range(1, len(times)):
        if times[i] - times[i - 1] > limit:
            out_t.append((times[i] + times[i - 1]) / 2)
            out_v.append(math.nan)
        out_t.append(times[i])
        out_v.append(values[i])
    return out_t, out_v


def _draw_series(axes: Axes, streams: dict[str, list[tuple[float, float]]]) -> None:
    for stream, points in streams.items():
        times, values = _with_gaps(points)
        marker = "." if len(points) <= MAX_MARKED_POINTS else None
        axes.plot(times, values, label=_text(stream), linewidth=1, marker=marker, markersize=4)


def _draw_marks(axes: Axes, report: Report) -> list[Line2D]:
    """Vertical lines at the timeline marks, labelled; legend handles, one per kind."""
    handles: dict[str, Line2D] = {}
    label_them = len(report.marks) <= MAX_MARK_LABELS
    for mark in sorted(report.marks, key=lambda m: m.t_s):
        colour = MARK_COLOURS.get(mark.kind, OTHER_MARK_COLOUR)
        axes.axvline(mark.t_s, color=colour, linestyle="--", linewidth=1.2, alpha=0.8)
        if label_them:
            axes.text(mark.t_s, 0.98, " " + _text(mark.label), transform=axes.get_xaxis_transform(),
                      rotation=90, va="top", ha="right", fontsize=8, color=colour, clip_on=True,
                      bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})
        if mark.kind not in handles:
            handles[mark.kind] = Line2D([], [], color=colour, linestyle="--", label=_text(mark.kind))
    return list(handles.values())


def _draw_late_spans(axes: Axes, report: Report) -> list[Any]:
    """Shade where the emulator itself ran late (release lateness above
    fidelity.LATE_SPAN_US, or an engine stall): the figures there bent.
    Legend handles, one per kind shown."""


    fidelity = report.fidelity or {}
    handles = []
    spans = fidelity.get("late_spans") or []
    for start, end, _worst in spans:
        axes.axvspan(start, end, color="tab:orange", alpha=0.15, linewidth=0)
    if spans:
        handles.append(Patch(color="tab:orange", alpha=0.3, label="engine late"))
    stalls = fidelity.get("stall_spans") or []
    for start, length_ms in stalls:
        axes.axvspan(start, start + max(length_ms / 1e3, 0.02), color="tab:red", alpha=0.25, linewidth=0)
    if stalls:
        handles.append(Patch(color="tab:red", alpha=0.4, label="engine stall"))
    return handles


def _finish(figure: Figure, axes: Axes, mark_handles: list[Line2D], path: str | Path) -> str:
    handles, labels = axes.get_legend_handles_labels()
    handles = [*handles, *mark_handles]
    if handles:   # a legend with nothing in it warns: only draw one when there is something
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _missing_glyphs_tolerated():
        figure.savefig(path, dpi=DPI, format="png")
    return str(path)


def plot_delay(report: Report, path: str | Path) -> str:
    """One-way delay over time per probe stream, timeline marks as vertical lines.

    Always drawn: without probe data the figure says so.
    """
    streams = _streams_with(report, "owd_ms")
    figure, axes = _figure(report, "one-way delay", "one-way delay (ms)")
    _draw_series(axes, streams)
    if not streams:
        axes.text(0.5, 0.5, "no probe data", transform=axes.transAxes, ha="center", va="center",
                  fontsize=14, color="grey")
    late = _draw_late_spans(axes, report)
    return _finish(figure, axes, _draw_marks(axes, report) + late, path)


def plot_throughput(report: Report, path: str | Path) -> str | None:
    """Throughput over time per tcp/udp stream; None (nothing written) without such series."""
    streams = _streams_with(report, "throughput_mbps")
    if not streams:
        return None
    factors = {report.stream_scale(name) for name in streams}
    factor = factors.pop() if len(factors) == 1 else None
    if factor is not None and factor != 1.0:
        # a replica: the left axis is what this machine carried, the right the real link's size
        figure, axes = _figure(report, "throughput", f"throughput on the replica (Mbit/s, scale x{factor:g})")
        scale = float(factor)

        def to_real(v: Any) -> Any:       # Mbit/s on the replica -> Tbit/s of the real link
            return v / scale / 1e6

        def to_replica(v: Any) -> Any:
            return v * scale * 1e6

        right = axes.secondary_yaxis("right", functions=(to_real, to_replica))
        right.set_ylabel("scaled back to the real link (Tbit/s)")
    else:
        label = "throughput (Mbit/s)" if factor == 1.0 else "throughput on the replicas (Mbit/s; streams at different scales)"
        figure, axes = _figure(report, "throughput", label)
    _draw_series(axes, streams)
    axes.set_ylim(bottom=0)
    return _finish(figure, axes, _draw_marks(axes, report), path)


def plot_loss(report: Report, path: str | Path) -> str | None:
    """Loss per measurement window per stream; None (nothing written) without such series."""
    streams = _streams_with(report, "loss_pct")
    if not streams:
        return None
    figure, axes = _figure(report, "loss per window", "loss (%)")
    _draw_series(axes, streams)
    peak = max((v for points in streams.values() for _, v in points if v is not None and math.isfinite(v)),
               default=0.0)
    axes.set_ylim(0, max(MIN_LOSS_TOP, peak * 1.05))
    return _finish(figure, axes, _draw_marks(axes, report), path)


def plot_queue(report: Report, path: str | Path) -> str | None:
    """Queue occupancy over time per link direction that queued (packets awaiting
    serialization, the most in each 100 ms); None (nothing written) when none did."""
    if not report.queues:
        return None
    figure, axes = _figure(report, "queue occupancy", "packets queued (max per 100 ms)")
    _draw_series(axes, report.queues)
    axes.set_ylim(bottom=0)
    return _finish(figure, axes, _draw_marks(axes, report), path)


def write_plots(report: Report, directory: str | Path) -> list[str]:
    """delay.png always; throughput.png, loss.png and queue.png when there is data; the paths written."""
    directory = Path(directory)
    written = [plot_delay(report, directory / PLOT_FILES["delay"]),
               plot_throughput(report, directory / PLOT_FILES["throughput"]),
               plot_loss(report, directory / PLOT_FILES["loss"]),
               plot_queue(report, directory / PLOT_FILES["queue"])]
    return [path for path in written if path is not None]
