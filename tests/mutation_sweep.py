"""The run-time half of the input contract (issue 14): every shipped scenario,
mutated one field at a time, is either refused by `caspian validate` (exit 2,
one line) or runs to a verdict (exit 0, 1 or 3) with no traceback and nothing
left behind. It never crashes, hangs or leaks at run time.

This is no pytest module: one sweep runs real testbeds for an hour or more, so
`make sweep` runs it (`SWEEP_BUDGET_S` caps the wall time). It prints the
counts and writes every case as a JSON line.

How a mutation is made: the file is composed by PyYAML (only to find where each
scalar sits), and the text of one scalar is replaced by a candidate value of
the same family (a time, a bit rate, a packet rate, a percentage, an integer,
a name...). Comments and layout are untouched, so each mutant is exactly the
shipped file with one field changed. Candidates are the edges of each field's
range and just beyond, where crashes live: zero, the smallest unit, the
engine's largest value, a negative one, a huge exponent.

Each (field, value) pair, with the link, node and stream names made generic,
is run once, in the cheapest scenario holding it; `validate` runs for every
mutant, as it is cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CASPIAN = [sys.executable, "-m", "emulator.cli"]

TIME = re.compile(r"^-?[0-9.]+(ns|us|µs|ms|s|m|h)$")
BITS = re.compile(r"^[0-9.]+\s*([kmgt]?bit|[kmgt]?bps)$", re.IGNORECASE)
PPS = re.compile(r"^[0-9.]+\s*k?pps$")
PERCENT = re.compile(r"^-?[0-9.]+%$")
INT = re.compile(r"^-?[0-9]+$")
FLOAT = re.compile(r"^-?[0-9]*\.[0-9]+$")

#: candidates per value family: range edges and just beyond them
CANDIDATES: dict[str, tuple[str, ...]] = {
    "time": ("0s", "1ns", "999ms", "1h", "1e9s", "-1s"),
    "bits": ("1bit", "1kbit", "10Tbit", "0bit"),
    "pps": ("1pps", "20kpps", "0pps"),
    "percent": ("0%", "100%", "-1%"),
    "int": ("0", "1", "-1", "65535", "4294967296"),
    "float": ("0", "1e308", "-0.5"),
    "bool": ("true", "false", "maybe"),
    "name": ("", "x", "aktau"),
}
#: a mutant whose duration is longer than this is validated only (a sweep of
#: hour-long runs proves nothing more than a short one and never ends)
MAX_RUN_DURATION_S = 40.0
#: wall time allowed beyond the scenario's duration: bring-up of the largest
#: shipped testbed with daemons (12 routers, converged in 4-8 s, 15 s under
#: load), the lead, teardown, report plots
RUN_SLACK_S = 150.0


@dataclass(frozen=True)
class Site:
    """One scalar of a scenario file: where its text is and what field it is."""

    path: str  # e.g. links.aktau-sumgait.rate
    generic: str  # e.g. links.*.rate
    start: int
    end: int
    text: str


def family(text: str) -> str:
    if text in ("true", "false"):
        return "bool"
    for name, pattern in (("time", TIME), ("bits", BITS), ("pps", PPS), ("percent", PERCENT),
                          ("int", INT), ("float", FLOAT)):
        if pattern.match(text):
            return name
    return "name"


def sites(text: str) -> list[Site]:
    """Every scalar value of the file with its character span (keys are not mutated)."""
    out: list[Site] = []

    def walk(node: yaml.Node, path: list[str], generic: list[str]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                # the names under these sections are the user's, not the format's
                generic_name = "*" if generic and generic[-1] in ("links", "nodes", "traffic") else name
                walk(value, [*path, name], [*generic, generic_name])
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, [*path, str(i)], [*generic, "[]"])
        elif isinstance(node, yaml.ScalarNode):
            start, end = node.start_mark.index, node.end_mark.index
            out.append(Site(".".join(path), ".".join(generic), start, end, text[start:end]))

    root = yaml.compose(text)
    if root is not None:
        walk(root, [], [])
    return out


def mutants(text: str) -> list[tuple[Site, str, str]]:
    """(site, new value, mutated text) for every site and candidate that changes it."""
    out = []
    for site in sites(text):
        if site.path == "name":
            continue  # the report directory's name: the slug rules are unit-tested
        for value in CANDIDATES[family(site.text.strip("'\""))]:
            if value == site.text:
                continue
            quoted = json.dumps(value) if value == "" else value
            out.append((site, value, text[: site.start] + quoted + text[site.end:]))
    return out


def scenario_cost(path: Path) -> float:
    """Seconds one run of the file takes, roughly: its duration, plus daemons' start-up."""
    text = path.read_text()
    match = re.search(r"^duration:\s*([0-9.]+)s", text, re.MULTILINE)
    duration = float(match.group(1)) if match else 10.0
    return duration + (15.0 if re.search(r"^routing:", text, re.MULTILINE) else 0.0)


def namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def duration_s(path: Path) -> float | None:
    from emulator.scenario.loader import load_scenario

    try:
        return load_scenario(path).duration_ns / 1e9
    except Exception:  # the mutant was accepted by validate: any failure here is reported as such
        return None


def one_line_problem(stdout: str, stderr: str) -> str | None:
    """Why the output breaks the contract (a traceback, an internal error), or None."""
    both = stdout + stderr
    if "Traceback (most recent call last)" in both:
        return "traceback"
    if "internal error" in both:
        return "internal error"
    return None


def node_names(text: str) -> set[str]:
    """The nodes a scenario file names (to tell its namespaces from other runs' on a shared machine)."""
    try:
        data = yaml.safe_load(text)
        return set(data.get("nodes", {})) | {"wire"}
    except (yaml.YAMLError, AttributeError, TypeError):
        return set()


def run_case(work: Path, state_root: Path, mutant: Path, timeout_s: float) -> dict:
    before = namespaces()
    nodes = node_names(mutant.read_text())
    start = time.monotonic()
    try:
        proc = subprocess.run([*CASPIAN, "--state-root", str(state_root), "run", str(mutant),
                               "--report", str(work / "report")], capture_output=True, text=True,
                              timeout=timeout_s, cwd=work, check=False)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = None, str(exc.stdout or ""), str(exc.stderr or "")
    wall = time.monotonic() - start
    # namespaces are PREFIX-NODE: only this file's nodes count (other runs may share the machine)
    left = sorted(ns for ns in namespaces() - before if not nodes or ns.split("-", 1)[-1] in nodes)
    records = [p.name for p in state_root.iterdir()] if state_root.exists() else []
    problems = []
    if rc is None:
        problems.append(f"hang (> {timeout_s:.0f} s)")
    elif rc not in (0, 1, 3):
        problems.append(f"exit {rc}")
    if (why := one_line_problem(stdout, stderr)) is not None:
        problems.append(why)
    if left:
        problems.append(f"left namespaces {left[:3]}")
    if records:
        problems.append(f"left records {records[:3]}")
    if left or records:  # leave the machine clean for the next case
        subprocess.run([*CASPIAN, "--state-root", str(state_root), "down", "--all"], capture_output=True, check=False)
    tail = (stderr.strip().splitlines() or [""])[-1][:300]
    return {"rc": rc, "wall_s": round(wall, 1), "problems": problems, "stderr_tail": tail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=sorted((ROOT / "scenarios").glob("*.yaml")))
    parser.add_argument("--budget-s", type=float, default=float(os.environ.get("SWEEP_BUDGET_S", 3600)))
    parser.add_argument("--out", type=Path, default=Path("sweep.jsonl"))
    parser.add_argument("--validate-only", action="store_true")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    files = sorted(args.files, key=scenario_cost)
    counts = {"mutants": 0, "refused": 0, "accepted": 0, "validate_broken": 0, "run": 0,
              "run_ok": 0, "run_broken": 0, "run_skipped_long": 0, "run_skipped_seen": 0,
              "run_skipped_budget": 0}
    exits: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory(prefix="caspian-sweep-") as tmp, args.out.open("w") as out:
        tmpdir = Path(tmp)
        for path in files:
            text = path.read_text()
            for site, value, mutated in mutants(text):
                counts["mutants"] += 1
                work = tmpdir / "case"
                work.mkdir(exist_ok=True)
                mutant = work / path.name
                mutant.write_text(mutated)
                # a trace file named by a relative path resolves beside the scenario
                if (ROOT / "scenarios" / "traces").exists() and not (work / "traces").exists():
                    (work / "traces").symlink_to(ROOT / "scenarios" / "traces")
                case = {"file": path.name, "field": site.path, "from": site.text, "to": value}
                check = subprocess.run([*CASPIAN, "validate", str(mutant)], capture_output=True, text=True,
                                       timeout=60, cwd=work, check=False)
                lines = [line for line in check.stderr.splitlines() if line.strip()]
                case["validate_rc"] = check.returncode
                if check.returncode == 2 and len(lines) == 1 and one_line_problem(check.stdout, check.stderr) is None:
                    counts["refused"] += 1
                    case["validate"] = lines[0][:300]
                elif check.returncode == 0:
                    counts["accepted"] += 1
                else:
                    counts["validate_broken"] += 1
                    case["problems"] = [f"validate exit {check.returncode}, {len(lines)} stderr lines"]
                    case["validate"] = check.stderr[-600:]
                if check.returncode == 0 and not args.validate_only:
                    key = (site.generic, value)
                    seconds = duration_s(mutant)
                    if key in seen:
                        counts["run_skipped_seen"] += 1
                    elif seconds is None or seconds > MAX_RUN_DURATION_S:
                        counts["run_skipped_long"] += 1
                    elif time.monotonic() + seconds + RUN_SLACK_S > deadline:
                        counts["run_skipped_budget"] += 1
                    else:
                        seen.add(key)
                        counts["run"] += 1
                        result = run_case(work, tmpdir / "state", mutant, seconds + RUN_SLACK_S)
                        case.update(result)
                        exits[str(result["rc"])] = exits.get(str(result["rc"]), 0) + 1
                        counts["run_broken" if result["problems"] else "run_ok"] += 1
                        print(f"{path.name} {site.path}: {site.text} -> {value}: exit {result['rc']} "
                              f"{result['wall_s']} s {'; '.join(result['problems'])}", flush=True)
                out.write(json.dumps(case) + "\n")
                out.flush()
    print(json.dumps({"counts": counts, "run_exits": exits}))
    return 1 if counts["validate_broken"] or counts["run_broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
