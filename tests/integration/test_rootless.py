"""Rootless runs (docs/rootless.md): `caspian` started by an unprivileged user.

Each command runs as uid 65534 (nobody) through `setpriv`, with no
capabilities and no groups, its runtime directory a fresh one of that uid,
so what works here works for any CI runner without root. The test itself
is root only to switch to that user and to look from the host's side:
the host's `ip netns list` must never show the sandbox's namespaces, and
when the last run is gone the sandbox's holder must be too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from emulator.network import processes
from tests.integration.conftest import requires_root
from tests.integration.test_frr import frr_skip_reason
from tests.integration.test_routing import RING, bird_skip_reason

pytestmark = [pytest.mark.root, requires_root]

REPO = Path(__file__).resolve().parents[2]
UID = 65534
CLI_TIMEOUT_S = 120
AS_USER = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--inh-caps=-all"]


def _user_env(home: Path) -> dict[str, str]:
    """The unprivileged user's environment: the project and its venv's packages
    importable, HOME and XDG_RUNTIME_DIR its own."""
    paths = [str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home / "runtime"), "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
            "LANG": "C.UTF-8"}


def _interpreter(env: dict[str, str]) -> tuple[str | None, str]:
    """A Python of this version that uid 65534 can run with the project importable
    (the venv's own may live under a root-only directory such as /root/.pyenv),
    or None and why not."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    why = ""
    for exe in (sys.executable, f"/usr/bin/python{version}"):
        # the interpreter must start itself again as that user (the engine, the
        # trampolines and the holder are `sys.executable -m ...`): setpriv's own
        # exec can reach a path that the user's later ones cannot
        check = "import subprocess, sys; subprocess.run([sys.executable, '-c', " \
                "'import emulator._engine, scapy, pyroute2, psutil, yaml'], check=True)"
        probe = subprocess.run([*AS_USER, exe, "-c", check], env=env, cwd="/", capture_output=True, text=True,
                               timeout=60)
        if probe.returncode == 0:
            return exe, ""
        why = f"{exe}: {(probe.stderr.strip().splitlines() or ['exit ' + str(probe.returncode)])[-1]}"
    return None, why


@pytest.fixture
def user(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A home of uid 65534 (world-traversable, under /tmp), its env and interpreter;
    afterwards any holder it left is stopped by its recorded PID and the home removed."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    home = Path(tempfile.mkdtemp(prefix="caspian-rootless-"))
    try:
        os.chmod(home, 0o755)
        (home / "runtime").mkdir(mode=0o700)
        os.chown(home, UID, UID)
        os.chown(home / "runtime", UID, UID)
        env = _user_env(home)
        exe, why = _interpreter(env)
        if exe is None:
            pytest.skip(f"no Python uid {UID} can run with the project importable ({why})")
        yield {"home": home, "env": env, "exe": exe, "sandbox": home / "runtime" / "caspian"}
    finally:
        holder = _holder(home / "runtime" / "caspian")
        if holder is not None:
            processes.stop_recorded(holder[0], holder[1], 5.0, role="leftover holder")
        shutil.rmtree(home, ignore_errors=True)


def _holder(sandbox: Path) -> tuple[int, int] | None:
    try:
        data = json.loads((sandbox / "sandbox.json").read_text())
        return int(data["pid"]), int(data["starttime"])
    except (OSError, ValueError, KeyError):
        return None


def caspian(user: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    """`caspian ARGS` as uid 65534."""
    return subprocess.run([*AS_USER, str(user["exe"]), "-m", "emulator.cli", *args], env=user["env"],  # type: ignore[arg-type]
                          cwd=str(user["home"]), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S)


def host_netns() -> list[str]:
    """The host's named namespaces (`ip netns list` reads /run/netns)."""
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def assert_sandbox_gone(user: dict[str, object], pids: list[int]) -> None:
    sandbox = Path(str(user["sandbox"]))
    assert _holder(sandbox) is None, "the holder is still recorded"
    assert sorted(os.listdir(sandbox / "runs")) == [], "a run is still recorded"
    for pid in pids:
        assert not processes.running(pid), f"pid {pid} still runs"


def test_up_exec_link_stats_down_as_an_unprivileged_user(user: dict[str, object]) -> None:
    home = Path(str(user["home"]))
    topology = home / "pair.yaml"
    topology.write_text("name: pair\nnodes:\n  left: {role: host}\n  right: {role: host}\n"
                        "links:\n  left-right: {ends: [left, right], delay: 2ms}\n")
    topology.chmod(0o644)
    up = caspian(user, "up", str(topology))
    assert up.returncode == 0, (up.stdout, up.stderr)
    prefix = up.stdout.split("testbed ", 1)[1].split()[0]
    engine_pid = int(up.stdout.split("engine pid ", 1)[1].split(",")[0])
    holder = _holder(Path(str(user["sandbox"])))
    assert holder is not None and processes.running(*holder)
    try:
        # the nodes' namespaces live in the sandbox's own /run: the host sees none of them
        assert [n for n in host_netns() if n.startswith(prefix + "-")] == []
        assert os.path.isdir(Path(str(user["sandbox"])) / "runs" / prefix)   # records in the user's runtime dir

        def rtt_ms() -> float:
            ping = caspian(user, "exec", "left", "--", "ping", "-c", "3", "-i", "0.2", "-q", "right")
            assert ping.returncode == 0, (ping.stdout, ping.stderr)
            return float(ping.stdout.rsplit("=", 1)[1].split("/")[0])   # min of min/avg/max/mdev

        # 2 ms each way: never below 4 ms (the engine cannot release early)
        assert rtt_ms() >= 4.0
        changed = caspian(user, "link", "set", "left-right", "delay", "5ms")
        assert changed.returncode == 0, changed.stderr
        assert rtt_ms() >= 10.0
        stats = caspian(user, "stats", "--json")
        assert stats.returncode == 0, stats.stderr
        counters = json.loads(stats.stdout)
        assert counters["left-right"]["a_to_b"]["tx_packets"] >= 6
    finally:
        down = caspian(user, "down", "--all")
    assert down.returncode == 0, (down.stdout, down.stderr)
    assert_sandbox_gone(user, [engine_pid, holder[0]])


def test_a_host_that_forbids_user_namespaces_gets_one_line_and_exit_2(user: dict[str, object]) -> None:
    """`caspian up` where unprivileged user namespaces are forbidden (their count
    limited to 0 in a user namespace of the test's own: the host's setting is
    left alone): one line saying what to do, exit 2, nothing left behind."""
    home = Path(str(user["home"]))
    topology = home / "pair.yaml"
    topology.write_text("name: pair\nnodes:\n  left: {role: host}\n  right: {role: host}\n"
                        "links:\n  left-right: {ends: [left, right], delay: 2ms}\n")
    topology.chmod(0o644)
    before = host_netns()
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("no_userns.py")), *AS_USER, str(user["exe"]),
                           "-m", "emulator.cli", "up", str(topology)], env=user["env"],  # type: ignore[arg-type]
                          cwd=str(home), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "user namespace" in lines[0] and "max_user_namespaces" in lines[0], lines
    assert "Traceback" not in done.stderr
    assert _holder(Path(str(user["sandbox"]))) is None
    runs = Path(str(user["sandbox"])) / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    assert host_netns() == before


# FRR, whose daemons drop privileges (-u root -g frrvty) and so test the sandbox's
# id mapping hardest; BIRD ran the same scenario rootless by hand (22 s more of a
# suite that must stay under 15 minutes): add "bird" to run both
@pytest.mark.parametrize("daemon", ["frr"])
def test_a_failover_scenario_runs_rootless_with_daemons_probes_and_iperf3(user: dict[str, object],
                                                                        daemon: str) -> None:
    skip = bird_skip_reason() if daemon == "bird" else frr_skip_reason()
    if skip:
        pytest.skip(skip)
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 is not installed")
    home = Path(str(user["home"]))
    ring = RING.replace("hello: 1s}", f"hello: 1s, daemon: {daemon}}}")
    scenario = home / "ring.yaml"
    scenario.write_text(ring + """\
duration: 8s
traffic:
  probe: {kind: probe, from: left, to: right, rate_pps: 200pps}
  bulk: {kind: tcp, from: right, to: left}
timeline:
  - {at: 3s, cut: ra-rb}
assertions:
  # the daemons' own failover: the probes find the path via rc again
  - {metric: probe.loss_pct, at_most: 30}
""")
    scenario.chmod(0o644)
    report_dir = home / "report"
    runs = Path(str(user["sandbox"])) / "runs"
    proc = subprocess.Popen([*AS_USER, str(user["exe"]), "-m", "emulator.cli", "run", str(scenario), "--report",
                             str(report_dir)], env=user["env"], cwd=str(home), stdin=subprocess.DEVNULL,  # type: ignore[arg-type]
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # while it runs: the run's prefix (its record in the user's runtime directory)
    # must never show among the host's namespaces
    prefixes: set[str] = set()
    seen_on_host: set[str] = set()
    try:
        while proc.poll() is None:
            if runs.is_dir():
                prefixes.update(os.listdir(runs))
            seen_on_host.update(n for n in host_netns() if any(n.startswith(p + "-") for p in prefixes))
            time.sleep(0.2)
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert prefixes, "the run was never recorded in the user's runtime directory"
    assert seen_on_host == set(), f"the host's ip netns list showed the sandbox's namespaces: {seen_on_host}"
    # no real-time priority in a user namespace: pass, or inconclusive when the
    # engine's own figures say the machine could have moved a bound, never a failure
    assert proc.returncode in (0, 3), (out[-3000:], err)
    report = json.loads((report_dir / "report.json").read_text())
    assert report["verdict"] in ("pass", "inconclusive"), report["assertions"]
    m = report["metrics"]
    assert m["probe.received"] > 0 and m["bulk.throughput_mbps"] > 0
    assert m["routing.cut1.detection_ms"] is not None and m["routing.cut1.detected_by"].startswith("bfd ")
    # the fidelity section says what the sandbox could not give
    assert any("SCHED_FIFO refused" in policy for policy in report["fidelity"]["policies"])
    assert_sandbox_gone(user, [])
