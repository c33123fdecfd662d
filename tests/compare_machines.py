"""The corridor on two simulated machines against the corridor on one (issue 11's target).

Runs `scenarios/corridor_two_hosts.yaml` and `scenarios/europe_asia_corridor.yaml`
alternately, N times each, and prints per delay figure the median over the
runs of each, their ratio, and the host's CPU steal and run-queue figures
beside them (the run's own fidelity section). The target: the two-machine
RTTs within 2 % of the one-machine run's, the underlay's delay taken off.

This is no pytest module: a pair of runs takes over a minute. Usage:
    .venv/bin/python tests/compare_machines.py --runs 3 [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIR = {"one machine": ROOT / "scenarios" / "europe_asia_corridor.yaml",
        "two machines": ROOT / "scenarios" / "corridor_two_hosts.yaml"}
FIGURES = ("routing.cut1.rtt_before_ms", "routing.cut1.rtt_after_ms", "probe.owd_median_ms", "probe.owd_min_ms",
           "probe6.owd_min_ms", "probe.longest_gap_ms")


def run_once(path: Path, out: Path) -> dict:
    """One `caspian run`; its report.json."""
    with tempfile.TemporaryDirectory(prefix="caspian-compare-") as state:
        subprocess.run([sys.executable, "-m", "emulator.cli", "--state-root", state, "run", str(path),
                        "--report", str(out)], cwd=ROOT, capture_output=True, check=False, timeout=600)
    return json.loads((out / "report.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each scenario (default 3)")
    parser.add_argument("--out", default=None, help="keep each run's report here")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="caspian-compare-"))
    values: dict[str, dict[str, list[float]]] = {label: {f: [] for f in FIGURES} for label in PAIR}
    for k in range(args.runs):
        for label, path in PAIR.items():
            report = run_once(path, out / f"{label.replace(' ', '-')}-{k + 1}")
            fidelity = report.get("fidelity", {})
            print(f"run {k + 1} {label}: {report['verdict']}, steal max {fidelity.get('steal_max_pct')} %, "
                  f"run-queue pressure {fidelity.get('pressure_pct')} %, "
                  + ", ".join(f"{f.split('.', 1)[1]} {report['metrics'].get(f)}" for f in FIGURES), flush=True)
            for figure in FIGURES:
                value = report["metrics"].get(figure)
                if isinstance(value, (int, float)):
                    values[label][figure].append(float(value))
    print(f"{'figure':32} {'one machine':>12} {'two machines':>13} {'two / one':>10}")
    for figure in FIGURES:
        one, two = (values[label][figure] for label in PAIR)
        if one and two:
            a, b = statistics.median(one), statistics.median(two)
            print(f"{figure:32} {a:12.3f} {b:13.3f} {b / a:10.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
