"""The timing repeat tool's pure parts: which runs are stressed, how a JUnit file is sorted."""

from __future__ import annotations

from pathlib import Path

from tests.repeat_timing import RunResult, read_junit, stress_plan, summary_lines

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.integration.test_a" name="test_ok" time="1.0"/>
<testcase classname="tests.integration.test_a" name="test_bad" time="1.0"><failure message="assert 2 &lt; 1"/></testcase>
<testcase classname="tests.integration.test_b" name="test_loaded" time="1.0">
  <skipped type="pytest.skip" message="inconclusive: probe.owd_median_ms: steal 9 %"/></testcase>
<testcase classname="tests.integration.test_b" name="test_no_tool" time="1.0">
  <skipped type="pytest.skip" message="iperf3 is not installed"/></testcase>
</testsuite></testsuites>
"""


def test_stress_plan_spreads_the_stressed_runs_evenly() -> None:
    assert stress_plan(10, 5) == [False, True] * 5
    assert stress_plan(4, 0) == [False] * 4
    assert stress_plan(3, 3) == [True] * 3
    for runs in range(1, 12):
        for stressed in range(runs + 1):
            assert sum(stress_plan(runs, stressed)) == stressed


def test_junit_cases_are_sorted_into_pass_fail_inconclusive_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "run.xml"
    path.write_text(JUNIT)
    result = RunResult(index=1, stressed=False, seconds=1.0)
    read_junit(path, result)
    assert result.passed == ["tests.integration.test_a::test_ok"]
    assert result.failed == ["tests.integration.test_a::test_bad"]
    assert list(result.inconclusive) == ["tests.integration.test_b::test_loaded"]
    assert list(result.skipped) == ["tests.integration.test_b::test_no_tool"]
    assert result.outcome == "fail"
    result.failed.clear()
    assert result.outcome == "inconclusive"
    assert any("inconclusive tests.integration.test_b::test_loaded" in line for line in summary_lines([result]))
    result.inconclusive.clear()
    assert result.outcome == "pass"
