"""The HTML page and the topology picture (emulator.report.html, .topology_view): pure parts."""

from __future__ import annotations

import math
import re
from pathlib import Path

from emulator.report.html import render
from emulator.report.topology_view import Highlight, Picture, layout, svg, topology_data
from emulator.report.writers import write_all
from emulator.scenario.loader import parse_topology
from tests.unit.test_report import make_report, png_size

CORRIDOR = """\
nodes: {fra: {role: host}, frankfurt: {role: router}, moscow: {role: router}, istanbul: {role: router}, baku: {role: router},
        aktau: {role: router}, almaty: {role: router}, urumqi: {role: host}}
links:
  fra-frankfurt: {ends: [fra, frankfurt], delay: 50us}
  frankfurt-istanbul: {ends: [frankfurt, istanbul], delay: 10ms, rate: 1gbit}
  istanbul-baku: {ends: [istanbul, baku], delay: 8ms}
  baku-aktau: {ends: [baku, aktau], preset: aktau-sumgait}
  aktau-almaty: {ends: [aktau, almaty], delay: 9ms}
  frankfurt-moscow: {ends: [frankfurt, moscow], delay: 9ms}
  moscow-almaty: {ends: [moscow, almaty], delay: 15ms}
  almaty-urumqi: {ends: [almaty, urumqi], delay: 5ms}
"""


def corridor_report():
    report = make_report()
    report.scenario = "corridor <b>&"
    report.topology = topology_data(parse_topology(CORRIDOR, source="c.yaml"))
    report.topology["streams"] = {"probe": ["fra", "frankfurt", "istanbul", "baku", "aktau", "almaty", "urumqi"]}
    report.timeline = [{"label": "cut1", "kind": "cut", "link": "baku-aktau", "direction": "both",
                        "scheduled_s": 3.0, "applied_s": 3.000001, "apply_error_us": 1.2}]
    report.metrics["routing.cut1.path_before"] = ["fra", "frankfurt", "istanbul", "baku", "aktau", "almaty", "urumqi"]
    report.metrics["routing.cut1.path_after"] = ["fra", "frankfurt", "moscow", "almaty", "urumqi"]
    return report


def test_layout_is_deterministic_inside_the_unit_square_and_keeps_a_chain_straight() -> None:
    names = [f"n{i}" for i in range(8)]
    chain = list(zip(names, names[1:]))
    first, again = layout(names, chain), layout(names, chain)
    assert first == again
    assert all(0 <= x <= 1 and 0 <= y <= 1 for x, y in first.values())
    # linked neighbours sit closer than the chain's ends
    ends = math.dist(first["n0"], first["n7"])
    assert all(math.dist(first[a], first[b]) < ends / 3 for a, b in chain)
    assert layout([], []) == {} and layout(["solo"], []) == {"solo": (0.5, 0.5)}


def test_svg_draws_every_node_and_link_marks_cuts_and_paths() -> None:
    report = corridor_report()
    picture = Picture.of(report.topology)
    drawn = svg(picture, cut=["baku-aktau"], highlights=[Highlight("probe", ["fra", "frankfurt", "moscow"])])
    assert drawn.count("<line ") == 8 and drawn.count('class="router"') == 6 and drawn.count('class="host"') == 2
    assert drawn.count("stroke-dasharray") == 1 and "(cut in the timeline)" in drawn
    assert "<polyline" in drawn and "delay 1.911787ms" in drawn


def test_page_holds_verdict_assertions_failover_topology_and_is_escaped() -> None:
    report = corridor_report()
    page = render(report, {"delay": "/x/delay.png"})
    assert "<script>alert" not in page and "corridor &lt;b&gt;&amp;" in page
    assert 'class="verdict pass"' in page and page.count('<tr class="pass">') == 3
    assert "<h2>Failover</h2>" in page and "bfd sumgait 198.18.0.9 down" in page
    # the main picture plus one per routing step with a path
    assert page.count("<svg ") == 2 and "before cut1: fra &gt; frankfurt" in page
    assert '<img class="plot" src="delay.png"' in page and "nodes:\n  europe: {role: host}" in page
    assert re.search(r"<td>baku-aktau</td>", page)


def test_write_all_adds_the_page_and_the_topology_png(tmp_path: Path) -> None:
    files = write_all(corridor_report(), tmp_path)
    assert Path(files["html"]).name == "index.html" and png_size(files["topology"])[0] > 500
    assert 'src="topology.png"' in Path(files["html"]).read_text(encoding="utf-8")


def test_a_streams_drawn_path_is_the_traced_one_under_dynamic_routing() -> None:
    from emulator.run import report_topology
    from emulator.scenario.loader import parse_scenario

    scenario = parse_scenario(CORRIDOR + "duration: 5s\ntraffic:\n  probe: {kind: probe, from: fra, to: urumqi}\n",
                              source="c.yaml")
    # static routes: the least-delay path, via Moscow (29.05 ms against 33.96)
    assert report_topology(scenario)["streams"]["probe"] == ["fra", "frankfurt", "moscow", "almaty", "urumqi"]
    # dynamic routing chose the Caspian before the cut: that is the path drawn
    caspian = ["fra", "frankfurt", "istanbul", "baku", "aktau", "almaty", "urumqi"]
    traced = {"routing.cut1.path_before": caspian, "routing.cut1.path_after": ["fra", "frankfurt", "moscow"]}
    assert report_topology(scenario, traced)["streams"]["probe"] == caspian


def test_a_replica_says_so_at_the_top_of_its_page() -> None:
    report = corridor_report()
    assert "replica" not in render(report, {})
    report.scale = {"links": {"aktau-sumgait": {"factor": 5e-7, "lit_mbps": 409.6e6, "design_mbps": 409.6e6,
                                                "emulated_mbps": 204.8}}, "streams": {}}
    page = render(report, {})
    assert "aktau-sumgait is a replica at x5e-07: 409.6 Tbit/s lit of 409.6 design -&gt; 204.8 Mbit/s here" in page
    assert page.index("replica at x5e-07") < page.index("<table")   # before any figure
