"""SIGTERM (and Ctrl-C) at every stage of a run: everything the run made goes, within 15 s.

Each test starts `caspian up` or `caspian run` as a subprocess with a private
state root, watches the run's records (RunState) until the stage it wants,
sends the signal and checks: the command is gone within SIGNAL_EXIT_S, it
printed no traceback (one line saying how it stopped), and no namespace of
the run's prefix, no run directory and no process it recorded is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from emulator.network import processes
from emulator.network.state import RunState
from tests.integration.conftest import netns_leftovers, pids_mentioning, requires_root

pytestmark = [pytest.mark.root, requires_root]

REPO = Path(__file__).resolve().parents[2]
#: the bound the issue sets: from the signal to everything removed
SIGNAL_EXIT_S = 15.0
#: how long a stage may take to come (a 40-node chain is up in ~2.5 s here)
STAGE_TIMEOUT_S = 20.0

Records = list[dict[str, Any]]


def chain(n: int) -> str:
    """A chain of n nodes: host, n - 2 routers, host; 1 ms links."""
    names = ["h0", *(f"r{i}" for i in range(1, n - 1)), f"h{n - 1}"]
    lines = [f"name: chain{n}", "nodes:"]
    lines += [f"  {name}: {{role: {'host' if name.startswith('h') else 'router'}}}" for name in names]
    lines.append("links:")
    lines += [f"  {a}-{b}: {{ends: [{a}, {b}], delay: 1ms}}" for a, b in zip(names, names[1:])]
    return "\n".join(lines) + "\n"


PAIR_WITH_TRAFFIC = """\
name: signal-pair
duration: 4s
nodes:
  left: {role: host}
  right: {role: host}
links:
  left-right: {ends: [left, right], delay: 1ms}
traffic:
  probe: {kind: probe, from: left, to: right, rate_pps: 200pps}
assertions:
  - {metric: probe.loss_pct, at_most: 100}
"""

OSPF_RING = """\
name: signal-ospf
routing: {protocol: ospf}
nodes:
  h1: {role: host}
  r1: {role: router}
  r2: {role: router}
  r3: {role: router}
  h2: {role: host}
links:
  h1-r1: {ends: [h1, r1], delay: 1ms}
  r1-r2: {ends: [r1, r2], delay: 1ms}
  r2-r3: {ends: [r2, r3], delay: 1ms}
  r3-r1: {ends: [r3, r1], delay: 5ms}
  r3-h2: {ends: [r3, h2], delay: 1ms}
"""


@dataclass
class Outcome:
    """What happened to one signalled command."""

    returncode: int
    stderr: str
    exit_s: float                      # from the signal to the command's exit
    prefixes: list[str]                # every run it recorded
    pids: list[int] = field(default_factory=list)   # every process those runs recorded
    signalled: bool = True             # False: the command had ended before the stage came


def records_of(root: str) -> tuple[list[str], Records]:
    """The prefixes and all records of the runs under `root` now."""
    runs = RunState.all(root) if os.path.isdir(root) else []
    return [run.prefix for run in runs], [record for run in runs for record in run.records]


def signal_at(root: str, argv: list[str], stage: Callable[[Records], bool], *, delay_s: float = 0.0,
              sig: int = signal.SIGTERM) -> Outcome:
    """Start `caspian --state-root ROOT ARGV...`, wait for `stage(records)`, wait `delay_s`, send `sig`."""
    proc = subprocess.Popen([sys.executable, "-m", "emulator.cli", "--state-root", root, *argv], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    prefixes: set[str] = set()
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + STAGE_TIMEOUT_S
        reached = False
        while proc.poll() is None and time.monotonic() < deadline:
            found, records = records_of(root)
            prefixes.update(found)
            pids.update(int(r["pid"]) for r in records if r["kind"] == "process")
            if found and stage(records):
                reached = True
                break
            time.sleep(0.002)
        assert reached, f"the stage never came within {STAGE_TIMEOUT_S:g} s (exit {proc.poll()})"
        time.sleep(delay_s)
        found, records = records_of(root)
        prefixes.update(found)
        pids.update(int(r["pid"]) for r in records if r["kind"] == "process")
        signalled = proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=SIGNAL_EXIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"still running {SIGNAL_EXIT_S:g} s after the signal") from None
        return Outcome(proc.returncode, err, time.monotonic() - sent, sorted(prefixes), sorted(pids), signalled)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def assert_clean(root: str, outcome: Outcome) -> None:
    """Nothing of the signalled runs is left, and the command said so in one line."""
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.exit_s < SIGNAL_EXIT_S
    for prefix in outcome.prefixes:
        assert netns_leftovers(prefix) == [], f"namespaces left: {netns_leftovers(prefix)}"
    assert RunState.all(root) == [] if os.path.isdir(root) else True, "run directories left"
    for pid in outcome.pids:
        assert not processes.running(pid), f"recorded pid {pid} still runs"
    assert pids_mentioning(root) == [], f"processes of this root still run: {pids_mentioning(root)}"


def assert_stopped_line(outcome: Outcome, words: str = "stopped by SIGTERM") -> None:
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"caspian: {words}"), outcome.stderr
    assert outcome.returncode == (130 if "interrupted" in words else 143), outcome


@pytest.fixture
def root(run_root: str) -> Iterator[str]:
    """This test's state root; `caspian down --all` on it afterwards, whatever happened."""
    try:
        yield run_root
    finally:
        subprocess.run([sys.executable, "-m", "emulator.cli", "--state-root", run_root, "down", "--all"],
                       cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


def topology_file(tmp_path: Path, text: str, name: str = "topology.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def has_kind(kind: str, **fields: str) -> Callable[[Records], bool]:
    """A stage: some record of `kind` whose fields contain the given text."""
    def stage(records: Records) -> bool:
        return any(r["kind"] == kind and all(text in str(r.get(k, "")) for k, text in fields.items())
                   for r in records)
    return stage


def test_sigterm_right_after_the_run_record_appears(root: str, tmp_path: Path) -> None:
    outcome = signal_at(root, ["up", topology_file(tmp_path, chain(40))], lambda records: True)
    assert_clean(root, outcome)
    assert_stopped_line(outcome)


def test_sigterm_while_the_namespaces_are_made(root: str, tmp_path: Path) -> None:
    """The build's namespace helper thread must be done before teardown looks."""
    outcome = signal_at(root, ["up", topology_file(tmp_path, chain(40))], has_kind("netns"))
    assert_clean(root, outcome)
    assert_stopped_line(outcome)


def test_sigterm_while_links_addresses_and_routes_are_set(root: str, tmp_path: Path) -> None:
    # the namespaces are made in ~0.1 s; the 39 links' veths, addresses and
    # ~6000 routes take a second more: 0.2 s later the build is among them
    outcome = signal_at(root, ["up", topology_file(tmp_path, chain(40))], has_kind("netns"), delay_s=0.2)
    assert_clean(root, outcome)
    assert_stopped_line(outcome)


def test_sigterm_while_the_engine_starts(root: str, tmp_path: Path) -> None:
    outcome = signal_at(root, ["up", topology_file(tmp_path, chain(40))], has_kind("file", path=".json"))
    assert_clean(root, outcome)
    assert_stopped_line(outcome)


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed (apt-get install bird2)")
def test_sigterm_while_the_routing_daemons_start(root: str, tmp_path: Path) -> None:
    """The kill lands among the daemons' starts: one may be running but not yet recorded."""
    outcome = signal_at(root, ["up", topology_file(tmp_path, OSPF_RING)], has_kind("process", role="bird"))
    assert_clean(root, outcome)
    assert_stopped_line(outcome)


def test_sigterm_during_traffic(root: str, tmp_path: Path) -> None:
    outcome = signal_at(root, ["run", topology_file(tmp_path, PAIR_WITH_TRAFFIC), "--report", str(tmp_path / "r")],
                        has_kind("process", role="probe sender"), delay_s=1.0)
    assert_clean(root, outcome)
    assert_stopped_line(outcome)


def test_ctrl_c_during_traffic(root: str, tmp_path: Path) -> None:
    outcome = signal_at(root, ["run", topology_file(tmp_path, PAIR_WITH_TRAFFIC), "--report", str(tmp_path / "r")],
                        has_kind("process", role="probe sender"), delay_s=0.5, sig=signal.SIGINT)
    assert_clean(root, outcome)
    assert_stopped_line(outcome, "interrupted")


def test_sigterm_during_teardown(root: str, tmp_path: Path) -> None:
    """`caspian down` holds a signal back until the run is removed (it then dies of it)."""
    up = subprocess.run([sys.executable, "-m", "emulator.cli", "--state-root", root, "up",
                         topology_file(tmp_path, chain(40))], cwd=REPO, stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    (run,) = RunState.all(root)

    def engine_forgotten(records: Records) -> bool:
        # teardown forgets the processes first, then removes the namespaces
        return not any(r["kind"] == "process" for r in records)

    engine = [int(r["pid"]) for r in run.of_kind("process")]
    outcome = signal_at(root, ["down", "--all"], engine_forgotten)
    outcome.prefixes, outcome.pids = [run.prefix], engine
    assert_clean(root, outcome)
    # killed by the signal once the teardown was done, or done before it came
    assert outcome.returncode in (-signal.SIGTERM, 0), outcome


def test_teardown_stops_a_process_started_but_not_yet_recorded(run_state: RunState) -> None:
    """The window a signal can hit: started in a node, not recorded. A child of the
    tearing-down process in the run's namespace is stopped; any other is reported, never killed."""
    from emulator.network.network import Network
    from tests.integration.conftest import two_host_topology

    network = Network.build(two_host_topology(), run_state)
    child = network.popen("left", ["sleep", "300"])
    # teardown only once it runs `sleep` in the node: a child still entering the
    # namespace when that goes away fails to enter it (exit 125), as it should
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{child.pid}/comm").read_text().strip() == "sleep":
                break
        except OSError:
            break
        time.sleep(0.01)
    # a process of the node that is not our child (its parent, the shell, has exited)
    orphan_pid = int(network.popen("right", ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
                                   stdout=subprocess.PIPE, text=True).communicate(timeout=10)[0])
    try:
        problems = network.teardown()
        assert child.wait(timeout=SIGNAL_EXIT_S) == -signal.SIGTERM
        assert len(problems) == 1 and f"process {orphan_pid} (sleep)" in problems[0], problems
        assert processes.running(orphan_pid)  # left alone
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while processes.running(orphan_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert network.teardown() == []  # the orphan gone, its namespace goes too
