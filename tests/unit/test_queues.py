"""Queue occupancy series (emulator.measure.queues) and their plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.measure.queues import queue_series
from emulator.report.plots import plot_queue
from emulator.report.report import Report
from tests.unit.test_report import make_report, png_size

T0 = 50_000_000_000


def test_only_directions_that_queued_get_a_series_timed_from_t0() -> None:
    engine = {"shards": [{"bin_epoch_ns": T0 - 200_000_000, "bin_ns": 100_000_000}],
              "queue_bins": {"l": {"a_to_b": [0, 3, 9, 0, 40], "b_to_a": [0, 0]}, "m": {"a_to_b": [], "b_to_a": []}}}
    series = queue_series(engine, T0, {"l": ("x", "y")})
    assert list(series) == ["l x>y"]
    # the two bins before t0 are left out; the rest are 100 ms apart from t0
    assert series["l x>y"] == [(pytest.approx(0.0), 9.0), (pytest.approx(0.1), 0.0), (pytest.approx(0.2), 40.0)]
    assert queue_series({"shards": []}, T0, {}) == {}


def test_queue_plot_and_round_trip(tmp_path: Path) -> None:
    report = make_report()
    assert plot_queue(report, tmp_path / "none.png") is None
    report.queues = {"aktau-sumgait aktau>sumgait": [(t / 10, float(t % 7)) for t in range(100)]}
    assert png_size(plot_queue(report, tmp_path / "queue.png")) == (1200, 600)
    again = Report.from_dict(report.to_dict())
    assert again.queues == report.queues
