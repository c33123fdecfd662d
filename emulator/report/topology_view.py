"""The topology drawn: a deterministic layout, an SVG for the HTML page, a PNG.

The report carries the topology as plain data (`topology_data`): node names
and roles, links with their ends and parameters in words. Nodes have no
coordinates in a scenario file, so `layout` places them with a
force-directed layout (Fruchterman and Reingold, "Graph drawing by
force-directed placement", Software: Practice and Experience 21(11), 1991)
started from a circle in file order: the same topology always gets the same
picture. Pure functions, except `write_png`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Iterable

#: the picture's size in SVG user units (the page scales it to its width)
WIDTH, HEIGHT, MARGIN = 960.0, 540.0, 60.0
#: link labels are drawn up to this many links; beyond, a tooltip per link carries them
LABELLED_LINKS = 40
#: colours of highlighted paths, in order (colour-blind safe: Okabe and Ito, 2008)
PATH_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
CUT_COLOUR = "#D55E00"
TOPOLOGY_PNG = "topology.png"


def topology_data(topology: Any) -> dict[str, Any]:
    """A scenario.Topology as report data: {"nodes": [{name, role}], "links":
    [{name, a, b, a_to_b, b_to_a, preset, length_km}]} with parameters in words."""
    return {
        "nodes": [{"name": n.name, "role": n.role} for n in topology.nodes],
        "links": [{"name": l.name, "a": l.a.node, "b": l.b.node, "a_to_b": l.a_to_b.describe(),
                   "b_to_a": l.b_to_a.describe(), "preset": l.preset, "length_km": l.length_km}
                  for l in topology.links],
    }


def layout(nodes: list[str], edges: Iterable[tuple[str, str]], *, iterations: int = 0) -> dict[str, tuple[float, float]]:
    """Positions in [0, 1]² for `nodes`, by force-directed placement from a circle.

    Deterministic: no random start. A chain or a ring comes out as a line or
    a circle, a grid as a grid (bent a little), a corridor with a detour as
    the two paths side by side.
    """
    n = len(nodes)
    if n == 0:
        return {}
    if n == 1:
        return {nodes[0]: (0.5, 0.5)}
    index = {name: i for i, name in enumerate(nodes)}
    pairs = sorted({(min(index[a], index[b]), max(index[a], index[b])) for a, b in edges if a != b})
    x = [0.5 + 0.4 * math.cos(2 * math.pi * i / n) for i in range(n)]
    y = [0.5 + 0.4 * math.sin(2 * math.pi * i / n) for i in range(n)]
    k = math.sqrt(1.0 / n)                     # the ideal edge length in the unit square
    rounds = iterations or (300 if n <= 60 else 120)
    temperature = 0.1
    for step in range(rounds):
        dx = [0.0] * n
        dy = [0.0] * n
        for i in range(n):                     # every pair repels: k² / d
            for j in range(i + 1, n):
                ex, ey = x[i] - x[j], y[i] - y[j]
                d2 = ex * ex + ey * ey or 1e-9
                f = k * k / d2
                dx[i] += ex * f; dy[i] += ey * f
                dx[j] -= ex * f; dy[j] -= ey * f
        for i, j in pairs:                     # linked nodes attract: d² / k
            ex, ey = x[i] - x[j], y[i] - y[j]
            d = math.sqrt(ex * ex + ey * ey) or 1e-9
            f = d / k
            dx[i] -= ex * f; dy[i] -= ey * f
            dx[j] += ex * f; dy[j] += ey * f
        for i in range(n):                     # move at most `temperature`, cooling linearly
            d = math.sqrt(dx[i] * dx[i] + dy[i] * dy[i]) or 1e-9
            move = min(d, temperature)
            x[i] += dx[i] / d * move
            y[i] += dy[i] / d * move
        temperature = 0.1 * (1 - (step + 1) / rounds) + 0.002
    lo_x, hi_x, lo_y, hi_y = min(x), max(x), min(y), max(y)
    span = max(hi_x - lo_x, hi_y - lo_y) or 1.0
    return {name: ((x[i] - lo_x) / span, (y[i] - lo_y) / span) for name, i in index.items()}


@dataclass
class Highlight:
    """A path drawn over the topology: node names in order, its label, its colour."""

    label: str
    nodes: list[str]
    colour: str = PATH_COLOURS[0]
    dashed: bool = False


@dataclass
class Picture:
    """A topology with its layout, ready to draw."""

    data: dict[str, Any]
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Picture:
        names = [n["name"] for n in data.get("nodes", [])]
        return cls(data, layout(names, [(l["a"], l["b"]) for l in data.get("links", [])]))

    def point(self, node: str) -> tuple[float, float]:
        """The node's place in SVG user units (y down)."""
        px, py = self.positions.get(node, (0.5, 0.5))
        width, height = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
        # keep the aspect: a square layout centred in the wide picture
        side = min(width, height * 1.6)
        return (MARGIN + (width - side) / 2 + px * side, MARGIN + py * height)


def svg(picture: Picture, *, cut: Iterable[str] = (), highlights: Iterable[Highlight] = (),
        title: str = "") -> str:
    """The topology as an inline SVG: nodes (routers as squares, hosts as
    circles), links (labelled with their parameters; `cut` links dashed in
    orange-red), and each highlight as a thick line along its path."""
    cut = set(cut)
    highlights = list(highlights)
    links = picture.data.get("links", [])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" role="img" '
             f'class="topology" aria-label="{escape(title or "topology")}">']
    if title:
        parts.append(f"<title>{escape(title)}</title>")
    for offset, mark in enumerate(highlights):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (picture.point(n) for n in mark.nodes if n in picture.positions))
        dash = ' stroke-dasharray="10 6"' if mark.dashed else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{mark.colour}" stroke-width="{9 - 2 * min(offset, 3)}" '
                     f'stroke-linecap="round" stroke-linejoin="round" opacity="0.55"{dash}>'
                     f"<title>{escape(mark.label)}</title></polyline>")
    for link in links:
        (x1, y1), (x2, y2) = picture.point(link["a"]), picture.point(link["b"])
        is_cut = link["name"] in cut
        style = f'stroke="{CUT_COLOUR}" stroke-width="3" stroke-dasharray="6 5"' if is_cut else 'stroke="#555" stroke-width="1.6"'
        words = f'{link["name"]}: {link["a"]}→{link["b"]} {link["a_to_b"]}; {link["b"]}→{link["a"]} {link["b_to_a"]}'
        if link.get("length_km"):
            words += f'; {link["length_km"]:g} km'
        if is_cut:
            words += " (cut in the timeline)"
        parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" {style}>'
                     f"<title>{escape(words)}</title></line>")
        if len(links) <= LABELLED_LINKS:
            label = link["a_to_b"] if link["a_to_b"] == link["b_to_a"] else f'{link["a_to_b"]} / {link["b_to_a"]}'
            parts.append(f'<text x="{(x1 + x2) / 2:.1f}" y="{(y1 + y2) / 2 - 4:.1f}" class="link-label" '
                         f'text-anchor="middle">{escape(_short(label))}{" ✂" if is_cut else ""}</text>')
    for node in picture.data.get("nodes", []):
        x, y = picture.point(node["name"])
        if node["role"] == "router":
            shape = f'<rect x="{x - 9:.1f}" y="{y - 9:.1f}" width="18" height="18" rx="3" class="router"/>'
        else:
            shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" class="host"/>'
        parts.append(f'<g><title>{escape(node["name"])} ({escape(node["role"])})</title>{shape}'
                     f'<text x="{x:.1f}" y="{y + 24:.1f}" text-anchor="middle" class="node-label">'
                     f'{escape(node["name"])}</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def _short(words: str, limit: int = 38) -> str:
    return words if len(words) <= limit else words[: limit - 1] + "…"


def write_png(picture: Picture, path: str | Path, *, cut: Iterable[str] = (),
              highlights: Iterable[Highlight] = ()) -> str:
    """The same picture as a PNG (matplotlib), for CI systems that show images."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    cut = set(cut)
    figure, axes = pyplot.subplots(figsize=(WIDTH / 100, HEIGHT / 100), dpi=100)
    try:
        axes.set_xlim(0, WIDTH)
        axes.set_ylim(HEIGHT, 0)
        axes.axis("off")
        for offset, mark in enumerate(highlights):
            xs, ys = zip(*(picture.point(n) for n in mark.nodes if n in picture.positions)) if mark.nodes else ((), ())
            axes.plot(xs, ys, color=mark.colour, linewidth=7 - 1.5 * min(offset, 3), alpha=0.5,
                      linestyle="--" if mark.dashed else "-", label=mark.label, solid_capstyle="round")
        for link in picture.data.get("links", []):
            (x1, y1), (x2, y2) = picture.point(link["a"]), picture.point(link["b"])
            if link["name"] in cut:
                axes.plot([x1, x2], [y1, y2], color=CUT_COLOUR, linewidth=2.5, linestyle=(0, (4, 3)))
            else:
                axes.plot([x1, x2], [y1, y2], color="#555555", linewidth=1.2)
        for node in picture.data.get("nodes", []):
            x, y = picture.point(node["name"])
            axes.plot([x], [y], marker="s" if node["role"] == "router" else "o", markersize=10,
                      color="#333333" if node["role"] == "router" else "#ffffff", markeredgecolor="#333333")
            axes.annotate(node["name"], (x, y + 22), ha="center", fontsize=8)
        if any(True for _ in axes.get_legend_handles_labels()[0]):
            axes.legend(loc="lower right", fontsize=8, frameon=False)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    finally:
        pyplot.close(figure)
    return str(path)
