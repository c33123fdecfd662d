"""An operator's failover test with the caspian pytest plugin (emulator/pytest_plugin.py).

Run as root with BIRD 2 installed:  .venv/bin/python -m pytest -q examples/
(`make test` collects only tests/; this file is an example, not part of the suite.)
"""

from pathlib import Path

CORRIDOR = Path(__file__).resolve().parents[1] / "scenarios" / "europe_asia_corridor.yaml"


def test_cable_cut_fails_over_via_moscow_and_back(caspian_testbed):
    tb = caspian_testbed(CORRIDOR)
    assert tb.path("fra-host", "urumqi-host") == [
        "fra-host", "frankfurt", "istanbul", "tbilisi", "baku", "sumgait", "aktau", "almaty", "urumqi", "urumqi-host"]
    assert {s["state"] for s in tb.bfd_sessions("aktau")} == {"Up"}

    tb.cut("aktau-sumgait")
    path = tb.wait_path("fra-host", "urumqi-host", through="moscow", timeout_s=5)
    assert "aktau" not in path
    rtt = tb.trace("fra-host", "urumqi-host")["rtt_ms"]
    assert 75.5 <= min(rtt) <= 78   # 2 x 37.78 ms configured via Moscow, + stacks
    assert tb.probe("fra-host", "urumqi-host", seconds=1, rate=200)["loss_pct"] == 0

    tb.restore("aktau-sumgait")
    # BIRD re-originates its router-LSA at most every 5 s (docs/routing.md)
    tb.wait_path("fra-host", "urumqi-host", through="sumgait", avoiding="moscow", timeout_s=12)
    assert any(n["state"] == "Full" for n in tb.ospf_neighbours("aktau") if n["interface"])
