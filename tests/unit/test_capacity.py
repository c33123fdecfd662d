"""The capacity model (emulator/model/capacity.py), its loader fields and timeline events, and the
SHRiNK scaling invariance checked on the engine's pipeline in offline mode (docs/capacity.md)."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.errors import InputError
from emulator.model.capacity import (
    FIT_BUDGET_BPS,
    Capacity,
    CapacityError,
    LinkCapacity,
    Lit,
    Outage,
    fit_scale,
    scaled_limit_bytes,
    scaled_rate_bps,
)
from emulator.model.linkparams import LinkParams
from emulator.model.presets import get_preset
from emulator.run.collect import capacity_windows, scale_summary
from emulator.run.plan import compile_run
from emulator.scenario.loader import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_FILE = ROOT.parent / "shared" / "reference" / "trans_caspian.yaml"
SUPPLEMENT_FILE = ROOT / "docs" / "reference" / "capacity.yaml"
G = 1_000_000_000
S = 1_000_000_000
CABLE = Capacity(fiber_pairs=8, waves_per_pair=128, wave_rate_bps=400 * G)


# ------------------------------------------------------------------ the pure model


def test_design_lit_and_scaled_rates() -> None:
    link = LinkCapacity(CABLE, Lit(8, 128), scale=5e-7)
    assert CABLE.design_bps == 409_600 * G                       # 8 x 128 x 400 Gbit/s
    assert link.lit_bps() == CABLE.design_bps
    assert link.emulated_bps() == 204_800_000
    one_pair = link.after(Outage(), fiber_pairs=1)
    assert link.share(one_pair) == 7 / 8 and link.emulated_bps(one_pair) == 179_200_000
    eight_waves = link.after(one_pair, waves=8)                 # 7 x 128 - 8 waves in service
    assert link.lit_bps(eight_waves) == (7 * 128 - 8) * 400 * G
    assert link.after(eight_waves, fiber_pairs=1, repair=True) == Outage(0, 8)
    partly = LinkCapacity(CABLE, Lit(2, 64), scale=1e-5)
    assert partly.lit_bps() == 51_200 * G and partly.emulated_bps() == 512_000_000


@pytest.mark.parametrize(("fail", "message"), [
    ({"fiber_pairs": 8}, "failure of 8 fiber pair(s) when 8 of the 8 lit are in service"),
    ({"fiber_pairs": 9}, "failure of 9 fiber pair(s)"),
    ({"waves": 1024}, "failure of 1024 wave(s) when 1024 are lit"),
])
def test_failing_everything_or_more_is_refused(fail: dict[str, int], message: str) -> None:
    with pytest.raises(CapacityError) as caught:
        LinkCapacity(CABLE, Lit(8, 128)).after(Outage(), **fail)
    assert message in str(caught.value) and "cut event" in str(caught.value)


def test_repairing_more_than_failed_is_refused() -> None:
    with pytest.raises(CapacityError, match="repair at most fiber_pairs: 1"):
        LinkCapacity(CABLE, Lit(8, 128)).after(Outage(1, 0), fiber_pairs=2, repair=True)


def test_lit_above_capacity_and_bad_scales_are_refused() -> None:
    with pytest.raises(CapacityError, match="lit.fiber_pairs 9 is above the capacity's 8"):
        LinkCapacity(CABLE, Lit(9, 128))
    for scale in (0, -1e-6, 1.5, math.inf):
        with pytest.raises(CapacityError, match="scale"):
            LinkCapacity(CABLE, Lit(8, 128), scale=scale)
    with pytest.raises(CapacityError, match="below the engine's 1000 bit/s"):
        scaled_rate_bps(1e6, 1e-6)


def test_fit_chooses_a_readable_factor_within_the_budget() -> None:
    assert fit_scale(CABLE.design_bps) == 5e-7                   # 204.8 Mbit/s <= 300 Mbit/s
    assert fit_scale(100_000_000) == 1.0
    for lit in (1 * G, 7 * G, 16_000 * G, 409_600 * G):
        factor = fit_scale(lit)
        assert lit * factor <= FIT_BUDGET_BPS * (1 + 1e-9)
        assert lit * factor > FIT_BUDGET_BPS / 2.5                  # 1-2-5 steps lose at most 2.5x
        assert f"{factor:.0e}"[0] in "125"


def test_byte_limits_scale_and_refuse_less_than_a_frame() -> None:
    assert scaled_limit_bytes(0, 1e-6) == 0
    assert scaled_limit_bytes(500 * 2**30, 5e-7) == 268_435
    with pytest.raises(CapacityError, match="less than one 1514 B frame"):
        scaled_limit_bytes(1_000_000, 1e-6)


def test_380_km_preset_is_the_2025_figure() -> None:
    assert get_preset("aktau-sumgait-380").length_km == 380
    assert get_preset("aktau-sumgait").length_km == 370           # the default stays the seed's


def test_reference_decomposition_matches_the_model() -> None:
    if not REFERENCE_FILE.exists():
        pytest.skip(f"reference file {REFERENCE_FILE} is absent (CI places shared/ beside the clone)")
    cable = yaml.safe_load(REFERENCE_FILE.read_text(encoding="utf-8"))["trans_caspian_cable"]
    d = cable["capacity_decomposition"]
    # the project's supplement: figures derived from the reference (docs/reference/capacity.yaml)
    ours = yaml.safe_load(SUPPLEMENT_FILE.read_text(encoding="utf-8"))["capacity"]
    assert d["waves_per_pair_c_band"] * d["wave_rate_gbps"] / 1000 == pytest.approx(d["tbps_per_pair_c_band"])
    assert ours["waves_per_pair_c_plus_l"] * d["wave_rate_gbps"] / 1000 == pytest.approx(d["tbps_per_pair_c_plus_l"])
    assert ours["waves_per_pair_c_plus_l"] == 2 * d["waves_per_pair_c_band"]   # C+L: twice the C band's spectrum
    replica = ours["design_replica"]
    assert (replica["fiber_pairs"], replica["waves_per_pair"], replica["wave_rate_gbps"] * G) == (
        CABLE.fiber_pairs, CABLE.waves_per_pair, CABLE.wave_rate_bps)
    assert CABLE.design_bps / 1e12 == pytest.approx(replica["tbps"])
    assert replica["tbps"] >= cable["design_capacity_tbps"]           # at least the published ceiling
    assert ours["sources"] and ours["disagreements"]


# ------------------------------------------------------------------ the loader

BASE = """nodes: {a: {role: host}, r1: {role: router}, r2: {role: router}, b: {role: host}}
links:
  a-r1: {ends: [a, r1], delay: 50us}
  cable:
    ends: [r1, r2]
    preset: aktau-sumgait
    capacity: {fiber_pairs: 8, waves_per_pair: 128, wave_rate: 400gbit}
LINK
  r2-b: {ends: [r2, b], delay: 50us}
duration: 20s
"""


def parse(link: str = "    scale: 5.0e-7", extra: str = "") -> Any:
    return parse_scenario(BASE.replace("LINK", link) + extra, source="s.yaml")


def error(link: str = "    scale: 5.0e-7", extra: str = "") -> str:
    with pytest.raises(InputError) as caught:
        parse(link, extra)
    return str(caught.value)


def test_loader_scales_rate_limits_and_traffic() -> None:
    scenario = parse("    scale: 1e-6\n    limit_bytes: 500g",
                     "traffic:\n  u: {kind: udp, from: a, to: b, rate_bps: 10gbit}\n  t: {kind: tcp, from: b, to: a}\n")
    cable = scenario.topology.link("cable")
    assert cable.a_to_b.rate_bps == cable.b_to_a.rate_bps == 409_600_000
    assert cable.a_to_b.limit_bytes == round(500 * 2**30 * 1e-6)
    assert cable.a_to_b.delay_ns == get_preset("aktau-sumgait").delay_ns   # delays unchanged
    udp = next(t for t in scenario.traffic if t.name == "u")
    assert udp.rate_bps == 10_000 and udp.scale == 1e-6
    summary = scale_summary(scenario)
    assert summary["links"]["cable"]["factor"] == 1e-6 and summary["streams"] == {"u": 1e-6, "t": 1e-6}


def test_fit_and_lit_are_read() -> None:
    cable = parse("    fit: true\n    lit: {fiber_pairs: 2, waves: 64}").topology.link("cable")
    assert cable.capacity is not None and cable.capacity.fitted
    assert cable.scale == fit_scale(51_200 * G) and cable.a_to_b.rate_bps <= FIT_BUDGET_BPS


@pytest.mark.parametrize(("link", "extra", "expected"), [
    ("    lit: {fiber_pairs: 9}\n    scale: 1e-6", "",
     "s.yaml:8: links.cable.lit.fiber_pairs: lit.fiber_pairs 9 is above the capacity's 8 fiber pairs"),
    ("    lit: {waves: 200}\n    scale: 1e-6", "", "links.cable.lit.waves: lit.waves 200 is above"),
    ("    scale: 0", "", "s.yaml:8: links.cable.scale: scale 0 is not in (0, 1]"),
    ("    scale: 2", "", "links.cable.scale: scale 2 is not in (0, 1]"),
    ("    scale: 1e-6\n    fit: true", "", "links.cable.fit: both scale and fit"),
    ("    scale: 1e-6\n    rate: 1gbit", "", "links.cable.rate: rate and capacity both set the link's rate"),
    ("    scale: 1e-6", "timeline:\n  - {at: 5s, fail: {link: cable, fiber_pairs: 9}}\n",
     "s.yaml:12: timeline[0].fail: failure of 9 fiber pair(s) when 8 of the 8 lit are in service"),
    ("    scale: 1e-6", "timeline:\n  - {at: 5s, repair: {link: cable, waves: 8}}\n",
     "timeline[0].repair: repair of 8 wave(s) when 0 have failed"),
    ("    scale: 1e-6", "timeline:\n  - {at: 5s, fail: {link: a-r1, fiber_pairs: 1}}\n",
     "timeline[0].fail.link: link 'a-r1' declares no capacity"),
    ("    scale: 1e-6", "timeline:\n  - {at: 5s, fail: {link: cable}}\n", "a fail event needs fiber_pairs or waves"),
    ("    scale: 1e-6", "timeline:\n  - {at: 5s, fail: cable}\n", "a fail event names the link"),
    ("    scale: 1e-6", "timeline:\n  - {at: 5s, fail: {link: cable, fiber_pairs: 1}, direction: both}\n",
     "'direction' does not apply to a fail event"),
])
def test_bad_input_is_one_line_naming_the_field_and_fix(link: str, extra: str, expected: str) -> None:
    message = error(link, extra)
    assert expected in message and "\n" not in message and "(" in message   # the fix in parentheses


def test_failures_compile_to_set_steps_in_time_order() -> None:
    scenario = parse("    scale: 5.0e-7", "timeline:\n"
                     "  - {at: 12s, repair: {link: cable, fiber_pairs: 1, waves: 8}}\n"
                     "  - {at: 4s, fail: {link: cable, fiber_pairs: 1}}\n"
                     "  - {at: 8s, fail: {link: cable, waves: 8}}\n")
    steps = compile_run(scenario).steps
    assert [(s.kind, s.event, s.label) for s in steps] == [("set", "fail", "fail1"), ("set", "fail", "fail2"),
                                                           ("set", "repair", "repair1")]
    rates = [s.params["rate_bps"] for s in steps]
    assert rates == [179_200_000, round((7 * 128 - 8) * 400 * G * 5e-7), 204_800_000]
    assert all(s.params == s.params_b_to_a for s in steps)
    windows = capacity_windows(scenario, "cable")
    assert windows["before"] == (0, 4 * S, 1.0) and windows["after"] == (12 * S, 20 * S, 1.0)
    assert windows["during"][:2] == (4 * S, 12 * S) and windows["during"][2] == pytest.approx((7 * 128 - 8) / 1024)


def test_shipped_scenario_loads_at_design_capacity() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "cable_capacity.yaml")
    cable = scenario.topology.link("aktau-sumgait")
    assert cable.capacity is not None and cable.capacity.design_bps == 409_600 * G
    assert cable.a_to_b.rate_bps <= FIT_BUDGET_BPS                     # what a 2-vCPU machine forwards
    assert [e.share for e in scenario.timeline] == [7 / 8, 1.0]


# ------------------------------------------------------------------ SHRiNK invariance, offline

engine = pytest.importorskip("emulator._engine")

MS = 1_000_000
#: the real link: a 1 Tbit/s direction, 1.912 ms of fiber, a 10 ms byte buffer, and Poisson
#: traffic from many flows offering 80 % of it; a failure takes 25 % of the capacity at 0.5 s
REAL_BPS, DELAY_NS, BUFFER_S, LOAD, FAIL_AT, END, FRAME = 10**12, 1_911_787, 0.010, 0.8, 500 * MS, 1_500 * MS, 1500
WIRE_BITS = (FRAME + 24) * 8


def _replica(scale: float, seed: int) -> dict[str, Any]:
    """Run the replica at `scale`: capacity, buffer and offered traffic x scale (flows sampled:
    a Poisson aggregate thinned by `scale` is Poisson at `scale` x the rate), delay unchanged."""
    rate = scaled_rate_bps(REAL_BPS, scale)
    limit = scaled_limit_bytes(int(REAL_BPS * BUFFER_S / 8), scale)
    params = LinkParams(delay_ns=DELAY_NS, rate_bps=rate, limit_packets=0, limit_bytes=limit)
    rng = random.Random(seed)
    mean_gap_ns = WIRE_BITS / (LOAD * rate) * 1e9
    arrivals, t = [], 0.0
    while t < END:
        t += rng.expovariate(1.0 / mean_gap_ns)
        arrivals.append(int(t))
    failed = params.replace(rate_bps=round(rate * 0.75)).to_engine()
    result = engine.offline_run(params.to_engine(), arrivals, [FRAME] * len(arrivals), seed,
                                changes=[(FAIL_AT, failed)])
    release = dict(zip(result["delivered_id"], result["release_ns"]))
    delays = {i: release[i] - arrivals[i] for i in release}
    full = sorted(d for i, d in delays.items() if 1_000 * MS <= arrivals[i] < END - 100 * MS)
    calm = sorted(d for i, d in delays.items() if arrivals[i] < FAIL_AT)
    offered = sum(1 for a in arrivals if a >= FAIL_AT)
    dropped = sum(1 for i, a in enumerate(arrivals) if a >= FAIL_AT and i not in release)
    return {"full_median_ms": full[len(full) // 2] / 1e6, "calm_p99_ms": calm[int(0.99 * len(calm))] / 1e6,
            "loss": dropped / offered, "offered": offered, "frame_ms": WIRE_BITS / (rate * 0.75) * 1e3,
            "limit_frames": limit // FRAME}


def test_scaling_by_two_factors_keeps_delay_and_loss() -> None:
    """SHRiNK on the pipeline: the same link at 1e-3 and 5e-4 of its size (1 Gbit/s and 500 Mbit/s).

    Fluid prediction (the part SHRiNK carries over): 80 % load, and the failure leaves 75 % of
    the capacity C. The queue grows at λ - C' = 0.05 C and fills the buffer B = 10 ms x C in
    B / 0.05 C = 200 ms, then stays full: one-way delay = 1.912 ms + B / C' = 1.912 + 13.333 ms,
    and 1 - C'/λ = 1 - 0.75/0.8 = 6.25 % of arrivals are dropped while full: 0.8 s of the 1 s
    after the failure, so 0.8 x 6.25 = 5.0 % of what arrived after it.
    """
    big, small = _replica(1e-3, seed=7), _replica(5e-4, seed=8)
    fluid_ms = DELAY_NS / 1e6 + BUFFER_S * 1e3 / 0.75
    for r in (big, small):
        # full: the buffer holds limit_bytes // 1500 frames, each WIRE_BITS at C' (the limit counts
        # frame bytes, the rate also the 24 B overhead: + 1.6 %). Poisson arrivals leave it a few
        # frames short: the room below the limit behaves like an M/D/1 queue at load 0.75/0.8 =
        # 0.9375 (arrivals and departures change roles), mean 0.9375^2 / (2 x 0.0625) = 7 frames,
        # so the median lies within 20 frame times below full (frame times at the replica's rate)
        full_ms = DELAY_NS / 1e6 + r["limit_frames"] * r["frame_ms"]
        assert full_ms - 20 * r["frame_ms"] <= r["full_median_ms"] <= full_ms + r["frame_ms"]
        assert abs(r["full_median_ms"] / fluid_ms - 1) <= 0.05            # the fluid figure, within 5 %
        # loss: drops = arrivals - departures while full; arrivals are Poisson, so the count's sd
        # is sqrt(arrivals while full) <= sqrt(offered); 3.29 sd (99.9 %) around the fluid 5 %,
        # plus 0.5 pp for the fill time's own Poisson wobble (a few ms of 200)
        sd = math.sqrt(r["offered"]) / r["offered"]
        assert abs(r["loss"] - 0.05) <= 3.29 * sd + 0.005
    # the two replicas agree: delays within the smaller's 20 frame times (0.65 ms of 15.2), loss within both sds
    assert abs(big["full_median_ms"] - small["full_median_ms"]) <= 20 * small["frame_ms"]
    sd_both = math.hypot(math.sqrt(big["offered"]) / big["offered"], math.sqrt(small["offered"]) / small["offered"])
    assert abs(big["loss"] - small["loss"]) <= 3.29 * sd_both + 0.005
    # SHRiNK's limit: the packet-scale queue does NOT scale back (frames keep their size, so they
    # take 1/scale longer): before the failure, at 80 % load, M/D/1 waits are a few frame times,
    # twice as long on the smaller replica, and far below the fluid part either way
    for r in (big, small):
        assert r["calm_p99_ms"] - DELAY_NS / 1e6 <= 30 * r["frame_ms"] * 0.75
    assert small["calm_p99_ms"] > big["calm_p99_ms"]
