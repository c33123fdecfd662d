"""The scale benchmark's pure parts: iproute2 batch text, steal and pressure from recorded /proc text. No root."""

from __future__ import annotations

import pytest

from emulator.bench.grid import grid_topology
from emulator.bench.hostload import describe
from emulator.measure.host import CpuSample, parse_cpu_line, parse_pressure_some_us, steal_pct
from emulator.bench.scale import (
    floor_create_batch,
    floor_delete_batch,
    floor_links_up_batch,
    floor_netns,
    star_topology,
)
from emulator.network.plan import network_plan

PREFIX = "csp1a2b3"

# /proc/stat of a 2-vCPU VM, two snapshots ~1 s apart (trimmed after `ctxt`)
STAT_BEFORE = """\
cpu  47479 0 15570 155915 3792 0 3493 688 0 0
cpu0 16816 0 5214 88034 602 0 2722 307 0 0
cpu1 30663 0 10355 67880 3189 0 771 380 0 0
intr 4431871 0 9 0 0 0 0 0 0 0
ctxt 9826243
"""
STAT_AFTER = """\
cpu  47599 0 15610 155935 3792 0 3513 706 0 0
cpu0 16876 0 5234 88044 602 0 2742 316 0 0
cpu1 30723 0 10376 67891 3189 0 771 390 0 0
intr 4433001 0 9 0 0 0 0 0 0 0
ctxt 9829001
"""
PRESSURE = """\
some avg10=3.25 avg60=1.24 avg300=5.37 total=62313573
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
"""


def test_steal_from_recorded_proc_stat():
    before, after = parse_cpu_line(STAT_BEFORE), parse_cpu_line(STAT_AFTER)
    assert before == (47479 + 15570 + 155915 + 3792 + 3493 + 688, 688)
    # 706 - 688 = 18 of the 218 ticks between the snapshots were stolen
    share = steal_pct(CpuSample(0, *before, None), CpuSample(1, *after, None))
    assert share == pytest.approx(100 * 18 / 218)
    assert parse_pressure_some_us(PRESSURE) == 62313573


def test_describe_host_load():
    assert describe(None) == "steal n/a"
    assert describe({"steal_pct": 8.26, "cpu_pressure_some_pct": None}) == "steal 8.3 %"
    assert describe({"steal_pct": 0.0, "cpu_pressure_some_pct": 12.0}) == "steal 0.0 %, cpu pressure 12.0 %"


def test_floor_batches_make_the_plans_namespaces_and_veths():
    plan = network_plan(grid_topology(2, 2), PREFIX)
    text = floor_create_batch(plan)
    lines = text.splitlines()
    adds = [line for line in lines if line.startswith("netns add ")]
    assert adds == [f"netns add {PREFIX}-b-{ns.name[len(PREFIX) + 1:]}" for ns in plan.namespaces]
    assert adds[0] == f"netns add {PREFIX}-b-wire"
    veths = [line for line in lines if line.startswith("link add ")]
    assert len(veths) == len(plan.veths) == 2 * len(grid_topology(2, 2).links)
    first = plan.veths[0]
    assert veths[0] == (
        f"link add {first.ifname} netns {PREFIX}-b-h1 address {first.mac} mtu 1500 up "
        f"type veth peer name l0a netns {PREFIX}-b-wire address {first.wire_mac} mtu 9000"
    )
    # every namespace is added before any link names it
    assert lines.index(veths[0]) == len(adds)
    # nothing of a run's own names: only the floor's prefix
    assert all(f" {PREFIX}-b-" in line for line in lines)


def test_floor_links_up_is_the_plans_links_up_of_one_namespace():
    plan = network_plan(grid_topology(1, 2), PREFIX)
    wire = floor_links_up_batch(plan, plan.wire_netns).splitlines()
    assert wire[0] == "link set dev lo up"
    assert wire[1:] == [f"link set dev {v.wire_ifname} up" for v in sorted(plan.veths, key=lambda v: v.wire_ifindex)]
    node = floor_links_up_batch(plan, f"{PREFIX}-h1")
    assert node == "link set dev lo up\n"


def test_floor_delete_batch_and_names():
    plan = network_plan(grid_topology(1, 2), PREFIX)
    assert floor_netns(plan, plan.wire_netns) == f"{PREFIX}-b-wire"
    with pytest.raises(ValueError):
        floor_netns(plan, "cspffff0-wire")
    assert floor_delete_batch(["a", "b"]) == "netns delete a\nnetns delete b\n"


def test_star_with_pair_has_the_idle_links_apart_from_the_pair():
    topology = star_topology(180, with_pair=True)
    assert len(topology.links) == 181
    assert topology.links[0].nodes == ("src", "dst")
    assert all("src" not in link.nodes and "dst" not in link.nodes for link in topology.links[1:])
    assert len(star_topology(0, with_pair=True).links) == 1


def test_ten_by_ten_grid_has_182_links():
    assert len(grid_topology(10, 10).links) == 182
