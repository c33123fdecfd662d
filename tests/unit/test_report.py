"""The report layer: JSON, JUnit XML, PNG plots and the console, from a Report built by hand."""

from __future__ import annotations

import io
import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from emulator.report import AssertionResult, Report, TimelineMark, collect_versions, utc_now
from emulator.report.console import print_report
from emulator.report.plots import plot_delay, plot_loss, plot_throughput, write_plots
from emulator.report.writers import write_all, write_json, write_junit
from emulator.scenario.scenario import Assertion

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: str | Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (checks the signature and chunk type)."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def links() -> dict:
    def direction(rx: int, tx: int, outage: int, loss: int) -> dict:
        return {"rx_packets": rx, "tx_packets": tx, "duplicated": 0, "corrupted": 0, "in_flight": 0,
                "kernel_drops": 0, "drops": {"outage": outage, "loss": loss, "queue": 0, "overflow": 0,
                                             "malformed": 0, "send_error": 0}}
    return {"aktau-sumgait": {"ends": ["aktau", "sumgait"], "cut": False,
                              "a_to_b": direction(1000, 795, 200, 5), "b_to_a": direction(900, 900, 0, 0)}}


def make_report(*, failing: bool = False, errors: list[str] | None = None) -> Report:
    """A 10 s run: a probe with a 2 s cut in its delay series, a tcp stream, a udp stream with loss."""
    probe = [(i / 100, 1.91 + (i % 5) / 1000) for i in range(1000) if not 300 <= i < 500]
    assertions = [
        AssertionResult("probe.owd_median_ms", "between [1.9, 2.3]", 1.912, True, line=21, low=1.9, high=2.3),
        AssertionResult("bulk.throughput_mbps", ">= 90", 94.1, True, line=22, low=90.0),
        AssertionResult.from_assertion(Assertion("probe.loss_outside_events_pct", high=0.5 if not failing else 0.1,
                                                 description="<= 0.5" if not failing else "<= 0.1", line=23), 0.25),
    ]
    return Report(
        scenario="aktau-sumgait", source="scenarios/cut.yaml", seed=42, started_at=utc_now(),
        duration_s=10.0, wall_s=13.5, versions=collect_versions(tools=()),
        metrics={"probe.sent": 1000.0, "probe.received": 795.0, "probe.loss_pct": 20.5,
                 "probe.loss_outside_events_pct": 0.25, "probe.owd_median_ms": 1.912, "probe.owd_p99_ms": 1.915,
                 "bulk.throughput_mbps": 94.1, "bulk.retransmits": 12.0, "voice.loss_pct": 1.5,
                 "events.cut_total_ms": 2000.0, "routing.cut1.detection_ms": 223.5,
                 "routing.cut1.detected_by": "bfd sumgait 198.18.0.9 down",
                 "routing.cut1.path_after": ["fra", "moscow"], "routing.cut1.path_changed": True},
        assertions=assertions,
        marks=[TimelineMark(3.0, "cut", "aktau-sumgait"), TimelineMark(5.0, "restore", "aktau-sumgait"),
               TimelineMark(7.0, "set", "aktau-sumgait", "delay 10ms"), TimelineMark(8.0, "route", "sumgait", "via b"),
               TimelineMark(7.5, "bfd", "sumgait", "bfd sumgait 198.18.0.9 down")],
        series={"probe": {"owd_ms": probe},
                "bulk": {"throughput_mbps": [(float(t), 94.0 if not 3 <= t < 5 else 0.0) for t in range(10)]},
                "voice": {"throughput_mbps": [(float(t), 1.0) for t in range(10)],
                          "loss_pct": [(float(t), 100.0 if 3 <= t < 5 else 0.0) for t in range(10)]}},
        links=links(), scenario_text="nodes:\n  europe: {role: host}\n", errors=list(errors or []),
    )


def test_passing_report_exit_code() -> None:
    report = make_report()
    assert report.passed and report.exit_code == 0
    assert report.summary() == "PASS (3/3 assertions)"


def test_failed_assertion_exit_code_1() -> None:
    report = make_report(failing=True)
    assert not report.passed and report.exit_code == 1
    assert [a.metric for a in report.failed] == ["probe.loss_outside_events_pct"]
    assert report.failed[0].message() == "measured 0.25, expected <= 0.1"


def test_errors_fail_the_run() -> None:
    report = make_report(errors=["iperf3 in europe exited 1: unable to connect"])
    assert all(a.passed for a in report.assertions)
    assert report.exit_code == 1
    assert report.summary() == "FAIL (3/3 assertions, 1 error)"


def test_not_measured_fails() -> None:
    result = AssertionResult.from_assertion(Assertion("probe.jitter_ms", low=0.0, high=1.0), None)
    assert not result.passed
    assert result.bound == "between [0, 1]"
    assert result.message() == "not measured, expected between [0, 1]"


def test_write_all(tmp_path: Path) -> None:
    report = make_report(failing=True)
    files = write_all(report, tmp_path / "out")
    assert set(files) == {"json", "junit", "delay", "throughput", "loss", "html"}
    for path in files.values():
        assert Path(path).parent == tmp_path / "out" and Path(path).stat().st_size > 0


def test_json_round_trip(tmp_path: Path) -> None:
    report = make_report(failing=True)
    path = write_json(report, tmp_path / "report.json")
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    assert data["scenario"] == "aktau-sumgait" and data["seed"] == 42 and data["source"] == "scenarios/cut.yaml"
    assert data["passed"] is False and data["exit_code"] == 1
    assert data["metrics"] == report.metrics
    assert data["versions"]["caspian"] and data["versions"]["python"]
    assert data["scenario_text"] == report.scenario_text
    by_metric = {a["metric"]: a for a in data["assertions"]}
    assert set(by_metric) == {a.metric for a in report.assertions}
    for result in report.assertions:
        entry = by_metric[result.metric]
        assert entry["measured"] == result.measured
        assert entry["bound"] == result.bound and entry["low"] == result.low and entry["high"] == result.high
        assert entry["passed"] == result.passed and entry["line"] == result.line
    assert by_metric["probe.loss_outside_events_pct"] == {
        "metric": "probe.loss_outside_events_pct", "description": "<= 0.1", "bound": "<= 0.1",
        "low": None, "high": 0.1, "measured": 0.25, "passed": False, "line": 23,
        "verdict": "fail", "reason": "", "tolerance": None}
    assert len(data["series"]["probe"]["owd_ms"]) == len(report.series["probe"]["owd_ms"])
    assert Report.from_dict(data) == report


def test_json_has_no_nan(tmp_path: Path) -> None:
    report = make_report()
    report.metrics["probe.jitter_ms"] = float("nan")
    report.series["probe"]["owd_ms"].append((9.99, float("inf")))
    data = json.loads(Path(write_json(report, tmp_path / "r.json")).read_text(encoding="utf-8"))
    assert data["metrics"]["probe.jitter_ms"] is None
    assert data["series"]["probe"]["owd_ms"][-1] == [9.99, None]


def test_junit(tmp_path: Path) -> None:
    report = make_report(failing=True)
    root = ET.parse(write_junit(report, tmp_path / "junit.xml")).getroot()
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "aktau-sumgait"
    assert suite.get("tests") == "4" and suite.get("failures") == "1"   # 3 assertions + "errors"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["seed"] == "42" and properties["source"] == "scenarios/cut.yaml"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "probe.owd_median_ms between [1.9, 2.3]", "bulk.throughput_mbps >= 90",
        "probe.loss_outside_events_pct <= 0.1", "errors"]
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["probe.loss_outside_events_pct <= 0.1"]
    assert failed[0].find("failure").get("message") == "measured 0.25, expected <= 0.1"


def test_junit_errors_case(tmp_path: Path) -> None:
    report = make_report(errors=["iperf3 failed\x1b[0m: no route", "probe lost its socket"])
    suite = ET.parse(write_junit(report, tmp_path / "junit.xml")).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "1"
    errors = [c for c in suite.findall("testcase") if c.get("name") == "errors"][0]
    failure = errors.find("failure")
    assert failure is not None and "iperf3 failed" in failure.get("message")
    assert "probe lost its socket" in failure.text


def test_plots(tmp_path: Path) -> None:
    report = make_report()
    paths = write_plots(report, tmp_path)
    assert [Path(p).name for p in paths] == ["delay.png", "throughput.png", "loss.png"]
    for path in paths:
        assert Path(path).stat().st_size > 1000
        assert png_size(path) == (1200, 600)


def test_plots_skipped_without_series(tmp_path: Path) -> None:
    report = make_report()
    report.series = {}
    report.marks = []
    assert plot_throughput(report, tmp_path / "t.png") is None
    assert plot_loss(report, tmp_path / "l.png") is None
    assert not (tmp_path / "t.png").exists() and not (tmp_path / "l.png").exists()
    delay = plot_delay(report, tmp_path / "d.png")   # always drawn, with a note
    assert png_size(delay) == (1200, 600)
    assert write_plots(report, tmp_path / "only") == [str(tmp_path / "only" / "delay.png")]


@pytest.mark.parametrize("name", ["cost $5 link", "日本-link", "a_b^c"])
def test_plots_awkward_names(tmp_path: Path, name: str) -> None:
    """Names with mathtext characters or glyphs the font lacks still give a figure."""
    report = make_report()
    report.scenario = name
    report.marks.append(TimelineMark(6.0, "cut", name))
    assert png_size(plot_delay(report, tmp_path / "d.png")) == (1200, 600)


def test_many_marks(tmp_path: Path) -> None:
    report = make_report()
    report.marks = [TimelineMark(i * 0.1, "cut" if i % 2 == 0 else "restore", "aktau-sumgait") for i in range(100)]
    assert png_size(plot_delay(report, tmp_path / "d.png")) == (1200, 600)


def render(report: Report, files: dict[str, str] | None = None) -> str:
    buffer = io.StringIO()
    print_report(report, Console(file=buffer), files=files)
    return buffer.getvalue()


def test_console_pass(tmp_path: Path) -> None:
    report = make_report()
    files = write_all(report, tmp_path)
    out = render(report, files)
    lines = out.strip().splitlines()
    assert lines[-1] == "caspian: PASS (3/3 assertions)"
    assert "FAIL" not in out and out.count("PASS") == 4
    assert "probe.owd_median_ms" in out and "between [1.9, 2.3]" in out and "1.912" in out
    assert "200 outage, 5 loss" in out             # drops by reason
    assert "94.1" in out and "cut_total_ms" in out  # key metrics per stream
    for path in files.values():
        assert path in out


def test_console_fail() -> None:
    report = make_report(failing=True, errors=["iperf3 in europe exited 1"])
    out = render(report)
    assert out.strip().splitlines()[-1] == "caspian: FAIL (2/3 assertions, 1 error)"
    assert "iperf3 in europe exited 1" in out
    row = [line for line in out.splitlines() if "probe.loss_outside_events_pct" in line and "0.25" in line]
    assert row and "FAIL" in row[0]


def test_console_failover_table_and_lines() -> None:
    report = make_report()
    report.metrics["routing.start.convergence_s"] = 7.42
    out = render(report)
    assert "failover (routing converged 7.42 s after start)" in out
    # texts and paths print whole, one line per step, after the table (no cell folding)
    assert "  cut1 detected by bfd sumgait 198.18.0.9 down; path after: fra > moscow" in out.splitlines()
    row = [line for line in out.splitlines() if line.lstrip("│┃ ").startswith("cut1")]
    assert row and "223.5" in row[0]
