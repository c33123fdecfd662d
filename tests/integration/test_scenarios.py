"""Every shipped scenario runs green; a false assertion fails the run and is named in JUnit."""

from __future__ import annotations

import glob
import json
import time
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import requires_root

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(glob.glob(str(ROOT / "scenarios" / "*.yaml")))

pytestmark = [pytest.mark.root, requires_root]


def _caspian(run_root: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emulator.cli", "--state-root", run_root, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _failed_assertions(report_dir: Path) -> str:
    """The report's false assertions and errors, one line each (the console tables are long)."""
    try:
        report = json.loads((report_dir / "report.json").read_text())
    except (OSError, ValueError) as exc:
        return f"(no report.json: {exc})"
    lines = [f"line {a['line']}: {a['metric']} {a['bound']}: measured {a['measured']}"
             for a in report["assertions"] if not a["passed"]]
    return "; ".join(lines + report.get("errors", [])) or "(every assertion held)"


def _inconclusive(report_dir: Path) -> str:
    """The report's inconclusive assertions with their reasons, one line each."""
    try:
        report = json.loads((report_dir / "report.json").read_text())
    except (OSError, ValueError) as exc:
        return f"(no report.json: {exc})"
    return "; ".join(f"line {a['line']}: {a['metric']}: {a['reason']}" for a in report["assertions"]
                     if a.get("verdict") == "inconclusive")


@pytest.mark.parametrize("path", SCENARIOS, ids=[os.path.basename(p) for p in SCENARIOS])
def test_shipped_scenario_runs_green(path: str, run_root: str, tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    # inconclusive (the machine, not the network, could have flipped an assertion:
    # docs/verdicts.md): skipped, with why. No second run: on a loaded CI machine
    # the repeats took minutes of the suite's 15 and were mostly inconclusive again.
    done = _caspian(run_root, "run", path, "--report", str(report_dir), timeout=480)
    if done.returncode == 3:
        pytest.skip(f"inconclusive: {_inconclusive(report_dir)}")
    assert done.returncode == 0, f"{os.path.basename(path)} failed: {_failed_assertions(report_dir)}\n" \
                                 f"{done.stderr[-2000:]}\n{done.stdout[-3000:]}"
    for name in ("report.json", "junit.xml", "delay.png", "topology.png", "index.html"):
        assert (report_dir / name).stat().st_size > 0
    if "\nunderlay:" in Path(path).read_text():
        # machines simulated here: where each node ran and how the crossing links were carried
        placement = json.loads((report_dir / "report.json").read_text())["placement"]
        assert len(placement["machines"]) == 2 and placement["crossing"], placement
        assert placement["underlay"]["measured_delay_ms"] >= placement["underlay"]["simulated"]["delay_ms"]
    assert not os.path.exists(run_root) or not os.listdir(run_root), "a run directory was left behind"


FALSE_ASSERTION = """\
name: false-assertion
duration: 3s
nodes:
  left: {role: host}
  right: {role: host}
links:
  left-right: {ends: [left, right], delay: 20ms}
traffic:
  probe: {kind: probe, from: left, to: right, rate_pps: 500pps}
assertions:
  - {metric: probe.owd_median_ms, between: [19.9, 25]}
  # false on purpose, by 19 ms: more than any timing error of the run could explain
  # (so the verdict is a plain fail, never inconclusive)
  - {metric: probe.owd_median_ms, at_most: 1.0}
"""


def test_false_assertion_exits_1_and_is_named_in_junit(run_root: str, tmp_path: Path) -> None:
    scenario = tmp_path / "false.yaml"
    scenario.write_text(FALSE_ASSERTION)
    junit = tmp_path / "out.xml"
    done = _caspian(run_root, "run", str(scenario), "--report", str(tmp_path / "r"), "--junit", str(junit))
    assert done.returncode == 1, done.stdout + done.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["probe.owd_median_ms at most 1.0"], failed
    assert "FAIL" in done.stdout


def test_scenario_with_bad_event_time_exits_2_and_creates_nothing(run_root: str, tmp_path: Path) -> None:
    scenario = tmp_path / "late.yaml"
    scenario.write_text(FALSE_ASSERTION.replace("assertions:", "timeline:\n  - {at: 9s, cut: left-right}\nassertions:"))
    done = _caspian(run_root, "run", str(scenario))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "late.yaml:" in lines[0] and "timeline[0].at" in lines[0], lines
    assert not os.path.exists(run_root), "validation must fail before any run state is made"


def test_same_seed_reproduces_the_same_drops(make_testbed: Any, tmp_path: Path) -> None:
    """Two testbeds with seed 11 lose exactly the same probes; seed 12 loses others."""
    from tests.integration.conftest import two_host_topology
    from tests.integration.test_traffic import run_probes

    import difflib

    lost: list[list[int]] = []
    for i, seed in enumerate((11, 11, 12)):
        testbed = make_testbed(two_host_topology("delay: 1ms\nloss: 5%"), seed=seed)
        # after the interfaces' own IPv6 chatter (MLD reports within ~1 s of
        # coming up), so that, as a rule, only probes cross the lossy direction
        time.sleep(2.0)
        summary, records, _ = run_probes(testbed, str(tmp_path), rate_pps=1000, seconds=2, port=7100 + i)
        lost.append(sorted(set(range(summary["sent"])) - set(records.seq)))
        testbed.stop()
    # The k-th frame into a direction takes the k-th draw of its seeded
    # stream, so the same seed loses the same probes, whatever the timing;
    # except that a frame of the kernel's own (an MLD report retransmitted late
    # on a busy machine) ahead of or amid the probes shifts the later draws by
    # one. So compare the gaps between consecutive losses: a shift changes one
    # gap, the rest stay in order. Two independent streams share almost no run
    # of equal gaps (each ~geometric with mean 20: P(equal) ~ 1/39), so their
    # matching ratio is ~0.05; the same stream with a couple of shifts is > 0.9.
    def gaps(seqs: list[int]) -> list[int]:
        return [b - a for a, b in zip(seqs, seqs[1:])]

    same = difflib.SequenceMatcher(None, gaps(lost[0]), gaps(lost[1]), autojunk=False).ratio()
    other = difflib.SequenceMatcher(None, gaps(lost[0]), gaps(lost[2]), autojunk=False).ratio()
    assert len(lost[0]) > 50 and same > 0.9, (same, lost[0][:20], lost[1][:20])
    assert other < 0.5, (other, lost[0][:20], lost[2][:20])


STALLED = """\
name: stalled-engine
duration: 6s
nodes:
  left: {role: host}
  right: {role: host}
links:
  left-right: {ends: [left, right], delay: 2ms}
traffic:
  probe: {kind: probe, from: left, to: right, rate_pps: 1000pps}
assertions:
  # 1 ms spacing: without a stall the longest gap is a few ms
  - {metric: probe.longest_gap_ms, at_most: 50}
"""


def test_engine_stall_during_a_scenario_gives_exit_3_naming_the_stall(run_root: str, tmp_path: Path) -> None:
    """The engine frozen for 300 ms (SIGSTOP/SIGCONT) while probes flow: the gap it
    makes is the emulator's, not the network's, so the verdict is inconclusive."""
    import signal

    from emulator.network.state import RunState

    scenario = tmp_path / "stalled.yaml"
    scenario.write_text(STALLED)
    junit = tmp_path / "out.xml"
    proc = subprocess.Popen([sys.executable, "-m", "emulator.cli", "--state-root", run_root, "run", str(scenario),
                             "--report", str(tmp_path / "r"), "--junit", str(junit)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        engine = None
        deadline = time.monotonic() + 60
        while engine is None and time.monotonic() < deadline and proc.poll() is None:
            for run in RunState.all(run_root) if os.path.isdir(run_root) else []:
                meta = run.get_meta("engine")
                if meta:
                    engine = int(meta["pid"])
            time.sleep(0.05)
        assert engine is not None, "the engine never started"
        time.sleep(4.0)              # into the probe stream (1 s lead, then 6 s of probes)
        os.kill(engine, signal.SIGSTOP)
        time.sleep(0.3)
        os.kill(engine, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, out[-3000:] + err[-2000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["verdict"] == "inconclusive"
    (gap,) = report["assertions"]
    assert gap["verdict"] == "inconclusive" and "stall" in gap["reason"], gap
    assert report["fidelity"]["stall_max_ms"] >= 250, report["fidelity"]
    # Frames keep their kernel arrival stamps through the stall, so those due in it
    # leave in one burst at its end, late by S (the stall) down to ~0 in 1 ms steps:
    # the sum of lateness changes gains ~2S (at least the one jump of S), while the
    # mean lateness gains S^2 / 2 ms over ~6000 releases (~7.5 ms for S = 300 ms)
    # and the changes per pair ~2S / 6000 (~0.1 ms): the bound the mean jitter is
    # judged on is the smaller by far.
    path = report["fidelity"]["paths"]["probe"]
    stall_us = report["fidelity"]["stall_max_ms"] * 1000
    assert path["lateness_change_sum_us"] >= stall_us - 2000, path     # less the 2 ms of delay in flight
    assert 10 * path["lateness_change_per_pair_us"] < 2 * path["lateness_mean_us"], path
    assert any("stalled" in p for p in report["fidelity"]["problems"])
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("skipped") == "1"
    skipped = [case for case in suite.iter("testcase") if case.find("skipped") is not None]
    assert len(skipped) == 1 and "stall" in (skipped[0].find("skipped").get("message") or "")
    assert "INCONCLUSIVE" in out


TAPPED = """\
name: tapped-streams
duration: 5s
nodes:
  left: {role: host}
  mid: {role: router}
  right: {role: host}
  far: {role: host}
links:
  left-mid: {ends: [left, mid], delay: 1ms}
  mid-right: {ends: [mid, right], delay: 2ms}
  mid-far: {ends: [mid, far], delay: 3ms}
traffic:
  # four probe streams share link directions (left's uplink: early, v6, late;
  # right's downlink: early, v6, cross): the engine must keep their stamps apart
  # (by destination port). late and cross start 2 s after early, so if a stream
  # took another's stamps of equal sequence numbers (the earliest copy of each
  # counts), late's network delay would read ~2 s too long and cross's ~2 s negative
  early: {kind: probe, from: left, to: right, rate_pps: 500pps}
  v6: {kind: probe, from: left, to: right, rate_pps: 500pps, ipv6: true, start: 1s}
  late: {kind: probe, from: left, to: far, rate_pps: 200pps, start: 2s}
  cross: {kind: probe, from: far, to: right, rate_pps: 200pps, start: 2s}
"""


def test_every_probe_stream_gets_its_own_engine_stamps(run_root: str, tmp_path: Path) -> None:
    """Several probe streams over the same link directions each get net_owd_* from
    the engine's stamps at the first and last link, none mixed with another's."""
    scenario = tmp_path / "tapped.yaml"
    scenario.write_text(TAPPED)
    done = _caspian(run_root, "run", str(scenario), "--report", str(tmp_path / "r"))
    assert done.returncode in (0, 3), done.stdout[-3000:] + done.stderr[-2000:]
    metrics = json.loads((tmp_path / "r" / "report.json").read_text())["metrics"]
    for name, configured_ms in (("early", 3.0), ("v6", 3.0), ("late", 4.0), ("cross", 5.0)):
        low, high = metrics[f"{name}.net_owd_min_ms"], metrics[f"{name}.net_owd_max_ms"]
        # the engine never releases early and the router's stack only adds: the
        # network's delay is at least the configured path delay
        assert low is not None and low >= configured_ms, (name, low)
        # each probe's network delay is part of its end-to-end delay, give or take
        # the sendmmsg batch the release stamp is taken after (64 frames of ~2 µs,
        # < 1 ms); another stream's stamps would be ~2000 ms off
        assert high <= metrics[f"{name}.owd_max_ms"] + 1.0, (name, high, metrics[f"{name}.owd_max_ms"])
