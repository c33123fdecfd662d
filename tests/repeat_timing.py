"""Run the integration tests that judge timing N times and count the verdicts (issue 9).

A timing test on a shared CI machine has three outcomes: it passes, it fails,
or it is skipped as *inconclusive* because the run's own fidelity figures say
the machine, not the network, could have moved the figure (docs/verdicts.md).
One green run proves little about a bound; this runs the same tests again and
again, some runs with `stress-ng --cpu 1` loading one core beside them, and
prints per run and per test how often each outcome came.

This is no pytest module: ten runs take over an hour. `make repeat` runs it
(`RUNS`, `STRESSED`). Each run's JUnit file is kept under `--out`, and a
summary is written as JSON there too.

stress-ng is started by this script, recorded by PID, and killed by that PID
after its run, never by name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the modules whose tests judge timing: every shipped scenario, failover with
#: BIRD and FRR, carrier cuts, the engine's delay, live changes and scheduled cuts,
#: the probes
TIMING_MODULES = (
    "tests/integration/test_scenarios.py",
    "tests/integration/test_failover.py",
    "tests/integration/test_frr.py",
    "tests/integration/test_carrier.py",
    "tests/integration/test_engine.py",
    "tests/integration/test_engine_scale.py",
    "tests/integration/test_traffic.py",
)


@dataclass
class RunResult:
    """One pytest run of the timing modules."""

    index: int
    stressed: bool
    seconds: float
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    inconclusive: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)   # skipped for another reason (no tool, ...)

    @property
    def outcome(self) -> str:
        """fail if any test failed, else inconclusive if any was, else pass."""
        if self.failed:
            return "fail"
        return "inconclusive" if self.inconclusive else "pass"


def read_junit(path: Path, result: RunResult) -> None:
    """Sort each test case of a pytest JUnit file into `result`."""
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            result.failed.append(name)
        elif skipped is not None:
            reason = skipped.get("message", "")
            if "inconclusive" in reason:
                result.inconclusive[name] = reason
            else:
                result.skipped[name] = reason
        else:
            result.passed.append(name)


def start_stress() -> subprocess.Popen[bytes]:
    """stress-ng on one CPU worker, in its own process group (killed by PID after the run)."""
    stress = shutil.which("stress-ng")
    if stress is None:
        raise SystemExit("repeat_timing: stress-ng is not installed: apt-get install stress-ng")
    return subprocess.Popen([stress, "--cpu", "1", "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop_stress(proc: subprocess.Popen[bytes]) -> None:
    """End the stress-ng this script started: its process group, by the PID recorded at start."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_once(index: int, stressed: bool, out: Path, extra: list[str]) -> RunResult:
    """One pytest run of TIMING_MODULES; its JUnit file is kept as out/run-N.xml."""
    junit = out / f"run-{index}.xml"
    stress = start_stress() if stressed else None
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={junit}", *TIMING_MODULES, *extra], cwd=ROOT, check=False)
    finally:
        if stress is not None:
            stop_stress(stress)
    result = RunResult(index=index, stressed=stressed, seconds=time.monotonic() - started)
    if junit.exists():
        read_junit(junit, result)
    else:
        result.failed.append("<pytest wrote no JUnit file>")
    return result


def summary_lines(results: list[RunResult]) -> list[str]:
    """The counts: per run, then every test that was not a plain pass."""
    lines = [f"{'run':>3}  {'stress':6}  {'time':>6}  {'outcome':12}  passed failed inconclusive"]
    for r in results:
        lines.append(f"{r.index:>3}  {'yes' if r.stressed else 'no':6}  {r.seconds:5.0f}s  {r.outcome:12}  "
                     f"{len(r.passed):>6} {len(r.failed):>6} {len(r.inconclusive):>12}")
    for stressed in (False, True):
        runs = [r for r in results if r.stressed == stressed]
        if runs:
            counts = {o: sum(r.outcome == o for r in runs) for o in ("pass", "inconclusive", "fail")}
            lines.append(f"{'stressed' if stressed else 'quiet'}: {len(runs)} runs: " +
                         ", ".join(f"{n} {o}" for o, n in counts.items()))
    for r in results:
        for name in r.failed:
            lines.append(f"run {r.index}: FAILED {name}")
        for name, reason in r.inconclusive.items():
            lines.append(f"run {r.index}: inconclusive {name}: {reason[:300]}")
    return lines


def stress_plan(runs: int, stressed: int) -> list[bool]:
    """Which runs get stress-ng: `stressed` of `runs`, spread evenly (alternating
    for half), so that a slow drift of the host's own load (a neighbour on the
    hypervisor) falls on quiet and stressed runs alike."""
    return [(i * stressed) // runs != ((i + 1) * stressed) // runs for i in range(runs)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="how many runs (default 10)")
    parser.add_argument("--stressed", type=int, default=5,
                        help="how many of them with stress-ng --cpu 1 beside (alternating; default 5)")
    parser.add_argument("--out", default="repeat-timing", help="directory for the JUnit files and summary.json")
    args, extra = parser.parse_known_args(argv)
    if args.runs < 1 or not 0 <= args.stressed <= args.runs:
        parser.error("--runs must be at least 1 and --stressed between 0 and --runs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = stress_plan(args.runs, args.stressed)
    results: list[RunResult] = []
    for index, stressed in enumerate(plan, start=1):
        print(f"repeat_timing: run {index} of {args.runs}{' with stress-ng --cpu 1' if stressed else ''}",
              flush=True)
        results.append(run_once(index, stressed, out, extra))
        (out / "summary.json").write_text(json.dumps([asdict(r) | {"outcome": r.outcome} for r in results],
                                                     indent=1))
        print("\n".join(summary_lines(results)), flush=True)
    return 0 if all(r.outcome != "fail" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
