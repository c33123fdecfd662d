"""Live link statistics (emulator.report.live): rates between two snapshots."""

from __future__ import annotations

import io

from emulator.report.live import format_bps, rates, table, watch


def snapshot(rx: int, tx: int, tx_bytes: int, loss: int, queued: int, cut: bool = False) -> dict:
    direction = {"rx_packets": rx, "tx_packets": tx, "tx_bytes": tx_bytes, "in_flight": queued + 3, "queued": queued,
                 "drops": {"outage": 0, "loss": loss, "queue": 0}}
    idle = {"rx_packets": 0, "tx_packets": 0, "tx_bytes": 0, "in_flight": 0, "queued": 0,
            "drops": {"outage": 0, "loss": 0, "queue": 0}}
    return {"aktau-sumgait": {"ends": ["aktau", "sumgait"], "cut": cut, "a_to_b": direction, "b_to_a": idle}}


def test_rates_per_second_between_snapshots() -> None:
    rows = rates(snapshot(1000, 900, 900_000, 10, 0), snapshot(3000, 2800, 3_750_000, 30, 7), 2.0)
    forward, back = rows
    assert (forward.sender, forward.receiver) == ("aktau", "sumgait")
    assert (forward.rx_pps, forward.tx_pps, forward.tx_bps) == (1000.0, 950.0, 11_400_000.0)
    assert forward.drops_per_s == {"loss": 10.0} and (forward.queued, forward.in_flight) == (7, 10)
    assert back.rx_pps == 0 and back.drops_per_s == {}
    # a link that appears between snapshots starts from zero rates, never negative ones
    assert rates({}, snapshot(5, 5, 500, 0, 0), 1.0)[0].rx_pps == 0.0


def test_table_and_watch_draw_rows() -> None:
    from rich.console import Console

    assert format_bps(11_400_000) == "11.4 Mbit/s" and format_bps(1.24e9) == "1.24 Gbit/s" and format_bps(12) == "12 bit/s"
    out = io.StringIO()
    console = Console(file=out, width=140, force_terminal=False)
    console.print(table(rates(snapshot(0, 0, 0, 0, 0), snapshot(10, 10, 1000, 0, 2, cut=True), 1.0)))
    assert "aktau-sumgait [CUT]" in out.getvalue() and "aktau→sumgait" in out.getvalue()
    reads = iter([snapshot(0, 0, 0, 0, 0), snapshot(100, 100, 10_000, 0, 0), snapshot(200, 200, 20_000, 0, 0)])
    assert watch(lambda: next(reads), interval_s=0.01, rounds=2, console=Console(file=io.StringIO())) == 2
