"""`caspian` as a user runs it: bad input, a testbed left up, crashes and cleanup.

Every command runs as `python -m emulator.cli --state-root ROOT ...` in a
subprocess, ROOT being this test's private state root, so nothing here can
touch a real run under /run/caspian. Tests that bring a testbed up always
run `caspian down --all` in `finally` and check that nothing of its prefix
is left.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from emulator.network import kernel, processes
from emulator.network.state import RunState
from tests.integration.conftest import netns_leftovers, pids_mentioning, requires_root

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60


def caspian(root: str, *args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run the command line with a private state root; its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "emulator.cli", "--state-root", root, *args],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def run_dirs(root: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "csp*")))


def assert_all_gone(root: str, prefixes: list[str], pids: list[int]) -> None:
    """No namespace, run directory or process of these runs is left."""
    for prefix in prefixes:
        assert netns_leftovers(prefix) == [], f"namespaces left: {netns_leftovers(prefix)}"
    assert run_dirs(root) == [], f"run directories left: {run_dirs(root)}"
    for pid in pids:
        assert not processes.running(pid), f"pid {pid} still runs"
    assert pids_mentioning(root) == [], f"processes of this root still run: {pids_mentioning(root)}"


# ------------------------------------------------------------------ bad input (no root needed)

GOOD_HEAD = "name: t\nnodes:\n  left: {role: host}\n  right: {role: host}\nlinks:\n  left-right:\n    ends: [left, right]\n"

BAD_FILES = {
    # file stem: (text, the field path the message must name)
    "unknown_key": (GOOD_HEAD + "    delya: 5ms\n", "links.left-right.delya"),
    "negative_delay": (GOOD_HEAD + "    delay: -5ms\n", "links.left-right.delay"),
    "loss_150": (GOOD_HEAD + "    loss: 150%\n", "links.left-right.loss"),
    "unknown_unit": (GOOD_HEAD + "    delay: 5parsecs\n", "links.left-right.delay"),
    "missing_node": (GOOD_HEAD.replace("[left, right]", "[left, middle]"), "links.left-right.ends"),
    "duplicate_node": (GOOD_HEAD.replace("  right: {role: host}\n", "  left: {role: router}\n  right: {role: host}\n"),
                       "nodes.left"),
}


@pytest.mark.parametrize("stem", sorted(BAD_FILES))
def test_validate_rejects_bad_file_with_one_line(stem: str, tmp_path: Path) -> None:
    text, field = BAD_FILES[stem]
    path = tmp_path / f"{stem}.yaml"
    path.write_text(text)
    root = str(tmp_path / "state")
    result = caspian(root, "validate", str(path))
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{stem}.yaml" in lines[0] and field in lines[0], lines[0]
    assert result.stdout == ""
    assert not os.path.exists(root), "validate created state"


@pytest.mark.root
@requires_root
@pytest.mark.parametrize("stem", ["unknown_key", "missing_node"])
def test_up_with_bad_file_creates_nothing(stem: str, tmp_path: Path) -> None:
    text, field = BAD_FILES[stem]
    path = tmp_path / f"{stem}.yaml"
    path.write_text(text)
    root = str(tmp_path / "state")
    before = set(os.listdir(kernel.NETNS_RUN_DIR)) if os.path.isdir(kernel.NETNS_RUN_DIR) else set()
    result = caspian(root, "up", str(path))
    after = set(os.listdir(kernel.NETNS_RUN_DIR)) if os.path.isdir(kernel.NETNS_RUN_DIR) else set()
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(result.stderr.splitlines()) == 1 and field in result.stderr, result.stderr
    # The file is validated before any state: not even the root is made, and a
    # namespace is never made without its run directory under the root first.
    assert not os.path.exists(root)
    # Other processes on this machine may make namespaces meanwhile; none of
    # them may carry a prefix that this root knows (it has none).
    assert not any(name.split("-")[0] in run_dirs(root) for name in after - before)


# ------------------------------------------------------------------ a testbed left up


@pytest.fixture
def cli_testbed(run_root: str) -> Iterator[dict[str, Any]]:
    """`caspian up` (the default topology); `caspian down --all` and leftover checks after."""
    up = caspian(run_root, "up")
    runs = RunState.all(run_root)
    prefixes = [run.prefix for run in runs]
    pids = [int(r["pid"]) for run in runs for r in run.of_kind("process")]
    try:
        assert up.returncode == 0, (up.stdout, up.stderr)
        assert len(runs) == 1
        yield {"root": run_root, "prefix": prefixes[0], "up": up}
    finally:
        down = caspian(run_root, "down", "--all")
        assert down.returncode == 0, (down.stdout, down.stderr)
        assert_all_gone(run_root, prefixes, pids)


@pytest.mark.root
@requires_root
def test_exec_link_and_stats_on_a_testbed_left_up(cli_testbed: dict[str, Any]) -> None:
    root = cli_testbed["root"]
    assert f"testbed {cli_testbed['prefix']} is up" in cli_testbed["up"].stdout

    addr = caspian(root, "exec", "europe", "--", "ip", "-br", "addr")
    assert addr.returncode == 0, addr.stderr
    names = {line.split()[0].split("@")[0] for line in addr.stdout.splitlines() if line.strip()}
    assert names == {"lo", "sumgait"}, addr.stdout  # europe's one link, named after its peer
    assert "198.18." in addr.stdout and "2001:2:" in addr.stdout

    pinged = caspian(root, "exec", "europe", "--", "ping", "-c1", "-W", "2", "asia")
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    assert "1 received" in pinged.stdout

    show = caspian(root, "link", "show")
    assert show.returncode == 0, show.stderr
    for a, b in (("europe", "sumgait"), ("aktau", "sumgait"), ("aktau", "asia")):
        assert f"  {a} -> {b} [up]: " in show.stdout and f"  {b} -> {a} [up]: " in show.stdout, show.stdout

    # a one-way cut is shown on its direction only (options may follow the link's name)
    assert caspian(root, "link", "cut", "aktau-sumgait", "--direction", "aktau").returncode == 0
    show = caspian(root, "link", "show", "aktau-sumgait")
    assert "  aktau -> sumgait [CUT]: " in show.stdout and "  sumgait -> aktau [up]: " in show.stdout, show.stdout
    assert caspian(root, "link", "restore", "aktau-sumgait").returncode == 0
    one_way_carrier = caspian(root, "link", "cut", "aktau-sumgait", "--carrier", "--direction", "aktau")
    assert one_way_carrier.returncode == 2 and len(one_way_carrier.stderr.splitlines()) == 1, one_way_carrier.stderr
    assert "both" in one_way_carrier.stderr

    changed = caspian(root, "link", "set", "aktau-sumgait", "delay", "5ms")
    assert changed.returncode == 0, changed.stderr
    show = caspian(root, "link", "show", "aktau-sumgait")
    lines = [line for line in show.stdout.splitlines() if line.startswith("  ") and " -> " in line]
    assert len(lines) == 2 and all("delay 5ms" in line for line in lines), show.stdout
    # only the delay changed: the preset's loss is still in force
    assert all("loss 0.001%" in line for line in lines), show.stdout

    bogus = caspian(root, "link", "set", "aktau-sumgait", "bogus", "5")
    assert bogus.returncode == 2
    assert len(bogus.stderr.splitlines()) == 1, bogus.stderr
    # the message names the bad word and suggests the valid ones
    assert "bogus" in bogus.stderr and "delay" in bogus.stderr and "loss" in bogus.stderr, bogus.stderr
    unchanged = caspian(root, "link", "show", "aktau-sumgait")
    assert unchanged.stdout == show.stdout

    stats = caspian(root, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert set(data) == {"europe-sumgait", "aktau-sumgait", "aktau-asia"}
    for name, entry in data.items():
        for direction in ("a_to_b", "b_to_a"):
            c = entry[direction]
            assert c["rx_packets"] + c["duplicated"] == c["tx_packets"] + sum(c["drops"].values()) + c["in_flight"], (
                name, direction, c)
    # the ping crossed the cable both ways
    assert data["aktau-sumgait"]["a_to_b"]["tx_packets"] >= 1 and data["aktau-sumgait"]["b_to_a"]["tx_packets"] >= 1


# ------------------------------------------------------------------ crashes


def engine_pid(run: RunState) -> int:
    recorded = [int(r["pid"]) for r in run.of_kind("process") if r.get("role") == "engine"]
    assert len(recorded) == 1, run.records
    meta = run.get_meta("engine")
    assert meta and int(meta["pid"]) == recorded[0], meta
    return recorded[0]


@pytest.mark.root
@requires_root
def test_down_all_cleans_up_after_engine_sigkill(run_root: str) -> None:
    prefixes: list[str] = []
    pids: list[int] = []
    try:
        up = caspian(run_root, "up")
        runs = RunState.all(run_root)
        prefixes = [run.prefix for run in runs]
        assert up.returncode == 0, up.stderr
        (run,) = runs
        pid = engine_pid(run)
        pids.append(pid)
        assert processes.running(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while processes.running(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not processes.running(pid)
        # the namespaces are still there: nothing cleaned up behind our back
        assert netns_leftovers(run.prefix)
        # The engine is gone: commands that need it fail cleanly (exit 2, one line).
        stats = caspian(run_root, "stats")
        assert stats.returncode == 2 and len(stats.stderr.splitlines()) == 1, stats.stderr
    finally:
        down = caspian(run_root, "down", "--all")
    assert down.returncode == 0, (down.stdout, down.stderr)
    assert_all_gone(run_root, prefixes, pids)


#: when to SIGKILL `caspian up`: as soon as its run has recorded...
KILL_TRIGGERS = {
    # ...its first namespace: the build has just begun
    "first-netns": lambda records: any(r["kind"] == "netns" for r in records),
    # ...the engine's config file: namespaces, veths, addresses and routes are
    # done and the engine process is being started (the kill lands around
    # the fork, before or after its PID is recorded)
    "engine-config": lambda records: any(r["kind"] == "file" and r["path"].endswith(".json") for r in records),
}


@pytest.mark.root
@requires_root
@pytest.mark.parametrize("trigger", sorted(KILL_TRIGGERS))
def test_down_all_cleans_up_after_cli_sigkill_mid_build(trigger: str, run_root: str) -> None:
    """SIGKILL `caspian up` itself while it builds; `down --all` removes what it made."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "--state-root", run_root, "up"],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    fired = KILL_TRIGGERS[trigger]
    killed_at: list[dict[str, Any]] = []
    prefixes: list[str] = []
    pids: list[int] = []
    try:
        # Poll the run's records every 2 ms (the build takes ~0.3 s; the brief
        # says "after ~0.3 s", a trigger on the records is mid-build by
        # construction). No trigger within 5 s fails the test.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            runs = RunState.all(run_root)
            if runs and fired(runs[0].records):
                killed_at = runs[0].records
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        runs = RunState.all(run_root)
        prefixes = [run.prefix for run in runs]
        pids = [int(r["pid"]) for run in runs for r in run.of_kind("process")]
        assert runs and killed_at, f"the build never reached {trigger} within 5 s"
        assert proc.returncode == -signal.SIGKILL  # killed, not finished
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        down = caspian(run_root, "down", "--all")
    assert down.returncode == 0, (down.stdout, down.stderr)
    assert_all_gone(run_root, prefixes, pids)


# ------------------------------------------------------------------ every input gets a clear answer


@pytest.mark.root
@requires_root
def test_up_refuses_addresses_in_the_loopback_range_at_once(tmp_path: Path) -> None:
    """Link addresses covering the loopback ranges: one line, exit 2, nothing made (it used to search forever)."""
    path = tmp_path / "collide.yaml"
    path.write_text(GOOD_HEAD + '    addresses: {left: [198.18.0.1/29, "2001:2:0:ffff::1/64"]}\n')
    root = str(tmp_path / "state")
    started = time.monotonic()
    result = caspian(root, "up", str(path), timeout=30)
    assert time.monotonic() - started < 20
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "no IPv6 loopback address is left" in result.stderr and "links.left-right.addresses" in result.stderr
    assert not os.path.exists(root)  # planned before any state is made


@pytest.mark.root
@requires_root
def test_live_set_beyond_the_engine_range_is_one_line(cli_testbed: dict[str, Any]) -> None:
    """A delay the engine cannot hold is refused with the value named; the engine keeps running."""
    root = cli_testbed["root"]
    refused = caspian(root, "link", "set", "aktau-sumgait", "delay", "100000000000s")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "Traceback" not in refused.stderr and "delay" in refused.stderr and "100000000000" in refused.stderr
    show = caspian(root, "link", "show", "aktau-sumgait")
    assert show.returncode == 0 and show.stdout.count("delay 1.91") == 2, show.stdout + show.stderr  # unchanged


def run_scenario_file(root: str, text: str, tmp_path: Path, *args: str, cwd: Path | None = None,
                      timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`caspian run FILE ARGS...` from `cwd` (default: the repository)."""
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "emulator.cli", "--state-root", root, "run", str(path), *args],
                          cwd=cwd or REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


SHORT_PROBE_RUN = """\
name: {name}
duration: 2s
nodes:
  left: {{role: host}}
  right: {{role: host}}
links:
  left-right: {{ends: [left, right], delay: 1ms}}
traffic:
  probe: {{kind: probe, from: left, to: right, rate_pps: 200pps}}
  probe6: {{kind: probe, from: left, to: right, rate_pps: 200pps, ipv6: true}}
timeline:
  - {{at: 500ms, set: left-right, netem: "{netem}"}}
assertions:
  - {{metric: probe.loss_pct, at_most: 100}}
"""


@pytest.mark.root
@requires_root
def test_report_dir_of_an_escaping_name_stays_under_reports(run_root: str, tmp_path: Path) -> None:
    """`name: ../../escaped-report` writes to ./reports/escaped-report, nowhere above."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    text = SHORT_PROBE_RUN.format(name="../../escaped-report", netem="delay 1ms")
    done = run_scenario_file(run_root, text, tmp_path, cwd=work)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert (work / "reports" / "escaped-report" / "report.json").is_file()
    assert not (tmp_path / "escaped-report").exists() and sorted(os.listdir(tmp_path / "a")) == ["b"]
    assert_all_gone(run_root, [], [])


@pytest.mark.root
@requires_root
def test_duplicate_corrupt_and_reorder_at_100_percent_run_to_the_end(run_root: str, tmp_path: Path) -> None:
    """They used to crash the probe receiver (a corrupted sequence number overflowed its records)."""
    text = SHORT_PROBE_RUN.format(name="all-at-100", netem="duplicate 100% corrupt 100% reorder 100% jitter 1ms")
    report_dir = tmp_path / "report"
    done = run_scenario_file(run_root, text, tmp_path, "--report", str(report_dir))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    report = json.loads((report_dir / "report.json").read_text())
    assert report["errors"] == [], report["errors"]
    metrics, counters = report["metrics"], report["links"]["left-right"]["a_to_b"]
    assert counters["corrupted"] > 0 and counters["duplicated"] > 0
    for stream in ("probe", "probe6"):
        # after the set every original is corrupted and its duplicate intact: nothing lost
        assert metrics[f"{stream}.received"] == metrics[f"{stream}.sent"] > 0, metrics
    assert_all_gone(run_root, [], [])
