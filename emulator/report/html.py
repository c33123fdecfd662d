"""One page per run: index.html in the report directory.

Self-contained: the style sheet, the topology drawings (inline SVG) and a
few lines of script are in the page; the plots are the PNGs beside it,
referenced by relative name, so the directory can be kept as a CI artifact
and opened anywhere without a network. Pure: `render` makes the text from a
Report; `write_html` writes it.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from emulator.report.report import Report, format_value, scale_lines
from emulator.report.topology_view import PATH_COLOURS, Highlight, Picture, svg

HTML_FILE = "index.html"
#: failover figures shown per step, in this order (emulator.routing.failover, .convergence)
FAILOVER_COLUMNS = (
    ("detected_by", "detected by"), ("detection_ms", "detection ms"), ("bfd_expected_ms", "BFD window ms"),
    ("first_route_ms", "first route ms"), ("convergence_ms", "convergence ms"), ("outage_ms", "outage ms"),
    ("loss_derived_ms", "loss-derived ms"), ("rate_derived_full_ms", "rate-derived ms"),
    ("reverts_on_restore", "reverts"),
)
#: plots in the order the page shows them (kind as in emulator.report.plots.PLOT_FILES)
PLOT_ORDER = ("delay", "throughput", "loss", "queue", "topology")

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em 1.5em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.verdict { display: inline-block; padding: 0.15em 0.6em; border-radius: 0.3em; color: #fff; font-weight: 600; }
.verdict.pass { background: #1a7f37; } .verdict.fail { background: #c62828; } .verdict.inconclusive { background: #9a6700; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fdecea; } tr.inconclusive td { background: #fff8e1; }
.meta { color: #555; font-size: 0.9em; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
svg.topology { width: 100%; height: auto; border: 1px solid #eee; background: #fcfcfc; }
svg .router { fill: #333; } svg .host { fill: #fff; stroke: #333; stroke-width: 2; }
svg .node-label { font-size: 13px; } svg .link-label { font-size: 10px; fill: #555; }
.steps { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 1em; }
.legend span { display: inline-block; margin-right: 1.2em; } .swatch { display: inline-block; width: 1.4em; height: 0.45em; vertical-align: middle; margin-right: 0.3em; }
img.plot { max-width: 100%; border: 1px solid #eee; }
"""

#: shows only the assertions that did not pass when the box is ticked
SCRIPT = """
document.addEventListener("DOMContentLoaded", function () {
  var box = document.getElementById("only-problems");
  if (!box) { return; }
  box.addEventListener("change", function () {
    var rows = document.querySelectorAll("#assertions tbody tr");
    for (var i = 0; i < rows.length; i++) {
      rows[i].hidden = box.checked && rows[i].classList.contains("pass");
    }
  });
});
"""


def render(report: Report, files: dict[str, str] | None = None) -> str:
    """The page's HTML. `files`: what write_all wrote (kind -> path); plots among
    them are shown by file name, relative to the page."""
    files = files or {}
    sections = [
        _header(report),
        _errors(report),
        _assertions(report),
        _fidelity(report),
        _failover(report),
        _topology(report),
        _plots(files),
        _captures(report),
        _timeline(report),
        _scenario_text(report),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>caspian: {escape(report.scenario)} {escape(report.verdict)}</title>\n"
            f"<style>{STYLE}</style>\n<script>{SCRIPT}</script>\n</head>\n<body>\n"
            + "\n".join(s for s in sections if s) + "\n</body>\n</html>\n")


def write_html(report: Report, directory: str | Path, files: dict[str, str] | None = None) -> str:
    """index.html into `directory`; its path."""
    path = Path(directory) / HTML_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report, files), encoding="utf-8")
    return str(path)


def _header(report: Report) -> str:
    versions = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in report.versions.items())
    return (f"<h1>{escape(report.scenario)} <span class=\"verdict {escape(report.verdict)}\">"
            f"{escape(report.verdict.upper())}</span></h1>\n"
            f"<p>{escape(report.summary())}</p>\n"
            f"<p class=\"meta\">{escape(report.source)} · seed {report.seed} · started {escape(report.started_at)} · "
            f"{report.duration_s:g} s scenario, {report.wall_s:.1f} s wall · {versions}</p>"
            # a replica's figures are not the real link's: say so where the numbers start
            + "".join(f"\n<p class=\"meta\"><strong>{escape(line)}</strong></p>" for line in scale_lines(report)))


def _errors(report: Report) -> str:
    if not report.errors:
        return ""
    items = "".join(f"<li>{escape(e)}</li>" for e in report.errors)
    return f"<h2>Errors</h2>\n<ul>{items}</ul>"


def _assertions(report: Report) -> str:
    if not report.assertions:
        return "<h2>Assertions</h2>\n<p>The scenario asserts nothing.</p>"
    rows = []
    for a in report.assertions:
        measured = "not measured" if a.measured is None else format_value(a.measured)
        result = a.verdict + (f": {a.reason}" if a.reason else "")
        rows.append(f"<tr class=\"{escape(a.verdict)}\"><td class=\"num\">{a.line or ''}</td>"
                    f"<td><code>{escape(a.metric)}</code></td><td>{escape(a.bound)}</td>"
                    f"<td class=\"num\">{escape(measured)}</td><td>{escape(result)}</td></tr>")
    return ("<h2>Assertions</h2>\n<label><input type=\"checkbox\" id=\"only-problems\"> only those that did not pass"
            "</label>\n<table id=\"assertions\"><thead><tr><th>line</th><th>metric</th><th>bound</th><th>measured</th>"
            f"<th>result</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _fidelity(report: Report) -> str:
    f = report.fidelity
    if not f:
        return ""
    problems = f.get("problems") or []
    if problems:
        said = "<ul>" + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul>"
    else:
        said = "<p>The run measured nothing that bent its figures.</p>"
    figures = [
        ("release lateness p50 / p99 / max µs",
         f"{_num(f.get('lateness_p50_us'))} / {_num(f.get('lateness_p99_us'))} / {_num(f.get('lateness_max_us'))}"),
        ("engine stalls (longest ms)", f"{f.get('stalls', 0)} ({_num(f.get('stall_max_ms'))})"),
        ("timeline application error max µs", _num(f.get("apply_error_max_us"))),
        ("host CPU steal % (worst interval)", f"{_num(f.get('steal_pct'))} ({_num(f.get('steal_max_pct'))})"),
        ("CPU pressure %", _num(f.get("pressure_pct"))),
        ("probe pacing: latest ms", _num(f.get("pacing_late_max_ms"))),
        ("engine scheduling", ", ".join(f.get("policies") or []) or "n/a"),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in figures)
    return (f"<h2>Fidelity: what bent this run</h2>\n{said}\n<table>{rows}</table>\n"
            "<p class=\"meta\">The rule that turns these into verdicts: docs/verdicts.md.</p>")


def _steps(report: Report) -> list[str]:
    """Routing step labels in the order their metrics appear (cut1, restore1 ...)."""
    labels: list[str] = []
    for key in report.metrics:
        parts = key.split(".")
        if parts[0] == "routing" and len(parts) == 3 and parts[1] != "start" and parts[1] not in labels:
            labels.append(parts[1])
    return labels


def _failover(report: Report) -> str:
    labels = _steps(report)
    if not labels:
        return ""
    head = "".join(f"<th>{escape(title)}</th>" for _, title in FAILOVER_COLUMNS)
    rows = []
    for label in labels:
        cells = []
        for name, _ in FAILOVER_COLUMNS:
            value = report.metrics.get(f"routing.{label}.{name}")
            text = "" if value is None else format_value(value)
            cells.append(f"<td class=\"{'num' if isinstance(value, (int, float)) and not isinstance(value, bool) else ''}\">"
                         f"{escape(text)}</td>")
        rows.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")
    return (f"<h2>Failover</h2>\n<table><thead><tr><th>step</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _cut_links(report: Report) -> list[str]:
    return sorted({str(e.get("link")) for e in report.timeline if e.get("kind") in ("cut", "flap") and e.get("link")})


def _topology(report: Report) -> str:
    data = report.topology
    if not data.get("nodes"):
        return ""
    picture = Picture.of(data)
    cut = _cut_links(report)
    streams = data.get("streams", {})
    marks = [Highlight(f"{name}: {' > '.join(nodes)}", list(nodes), PATH_COLOURS[i % len(PATH_COLOURS)])
             for i, (name, nodes) in enumerate(streams.items())]
    legend = "".join(f"<span><span class=\"swatch\" style=\"background:{m.colour}\"></span>{escape(m.label)}</span>"
                     for m in marks)
    if cut:
        legend += f"<span><span class=\"swatch\" style=\"background:#D55E00\"></span>cut in the timeline: {escape(', '.join(cut))}</span>"
    parts = ["<h2>Topology</h2>", svg(picture, cut=cut, highlights=marks, title=f"{report.scenario}: topology"),
             f"<p class=\"legend\">{legend}</p>"]
    steps = []
    for label in _steps(report):
        before = report.metrics.get(f"routing.{label}.path_before")
        after = report.metrics.get(f"routing.{label}.path_after")
        if not isinstance(before, list) and not isinstance(after, list):
            continue
        step_marks = []
        if isinstance(before, list):
            step_marks.append(Highlight(f"before {label}: {' > '.join(before)}", before, PATH_COLOURS[0]))
        if isinstance(after, list):
            step_marks.append(Highlight(f"after {label}: {' > '.join(after)}", after, PATH_COLOURS[1], dashed=True))
        words = " → ".join(" > ".join(p) for p in (before, after) if isinstance(p, list))
        steps.append(f"<figure>{svg(picture, cut=cut, highlights=step_marks, title=f'{label}: path before and after')}"
                     f"<figcaption><b>{escape(label)}</b>: before (solid) {escape(words)} (after dashed)</figcaption></figure>")
    if steps:
        parts.append("<h3>Paths before and after each step</h3>\n<div class=\"steps\">" + "".join(steps) + "</div>")
    return "\n".join(parts)


def _captures(report: Report) -> str:
    if not report.captures:
        return ""
    items = "".join(f"<li><a href=\"{escape(Path(path).name)}\">{escape(Path(path).name)}</a>: {frames} frames</li>"
                    for path, frames in report.captures.items())
    lost = (f"<p><b>{report.capture_lost} frames not recorded</b>: the capture ring was full "
            "(forwarding was not slowed; the files miss them).</p>" if report.capture_lost else "")
    return ("<h2>Captures</h2>\n<ul>" + items + "</ul>\n" + lost + "<p class=\"meta\">pcapng; each frame in at "
            "its arrival stamp and out at its emulated release time (docs/capture.md).</p>")


def _plots(files: dict[str, str]) -> str:
    images = [f"<p><img class=\"plot\" src=\"{escape(Path(files[kind]).name)}\" alt=\"{escape(kind)} plot\"></p>"
              for kind in PLOT_ORDER if kind in files]
    return "<h2>Plots</h2>\n" + "\n".join(images) if images else ""


def _timeline(report: Report) -> str:
    if not report.timeline:
        return ""
    rows = []
    for e in report.timeline:
        rows.append("<tr>" + "".join(f"<td>{escape(_plain(e.get(k)))}</td>" for k in
                                     ("label", "kind", "link", "direction", "scheduled_s", "applied_s", "apply_error_us"))
                    + "</tr>")
    return ("<h2>Timeline as applied</h2>\n<table><thead><tr><th>step</th><th>kind</th><th>link</th><th>direction</th>"
            "<th>scheduled s</th><th>applied s</th><th>error µs</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def _scenario_text(report: Report) -> str:
    if not report.scenario_text:
        return ""
    return f"<h2>Scenario</h2>\n<pre>{escape(report.scenario_text)}</pre>"


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
