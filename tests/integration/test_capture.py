"""Packet capture of an emulated link into pcapng, read back with tshark and scapy:
the counts equal the engine's counters and each frame's emulated delay equals
the configured one."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from emulator.errors import InputError
from tests.integration.conftest import requires_root, two_host_topology
from tests.integration.test_traffic import run_probes

pytestmark = [pytest.mark.root, requires_root,
              pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark (make test installs it)")]

IN, OUT = "left-right left>right in", "left-right left>right out"


def tshark_rows(path: Path) -> list[tuple[str, Decimal, str, str]]:
    """(interface name, epoch time, comment, UDP payload as hex or "") of every frame, as tshark reads them."""
    done = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|",
                           "-e", "frame.interface_name", "-e", "frame.time_epoch", "-e", "frame.comment",
                           "-e", "udp.payload"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = []
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 4 and parts[0]:
            rows.append((parts[0], Decimal(parts[1]), parts[2], parts[3]))
    return rows


def counters(testbed: Any) -> dict[str, int]:
    c = testbed.stats()["left-right"]["a_to_b"]
    return {"rx": c["rx_packets"], "tx": c["tx_packets"], "loss": c["drops"]["loss"]}


def test_capture_counts_and_delays_match_the_engine(make_testbed: Any, tmp_path: Path) -> None:
    testbed = make_testbed(two_host_topology("delay: 5ms\nloss: 20%"))
    path = tmp_path / "left-right.pcapng"
    before = counters(testbed)
    started = testbed.engine.capture_start([{"link": "left-right", "direction": "left"}], str(path))
    assert started["interfaces"] == [IN, OUT]
    run_probes(testbed, str(tmp_path), rate_pps=500, seconds=2, port=7300)
    summary = testbed.engine.capture_stop()
    after = counters(testbed)
    assert summary["complete"] and summary["lost"] == 0
    delta = {k: after[k] - before[k] for k in after}
    rows = tshark_rows(path)
    by_interface = Counter(name for name, _, _, _ in rows)
    # every frame into the direction recorded once at `in` (admitted or dropped), every frame out at `out`
    assert by_interface[IN] == delta["rx"] and by_interface[OUT] == delta["tx"], (by_interface, delta)
    drops = [row for row in rows if row[2]]
    assert len(drops) == delta["loss"] > 0, (len(drops), delta, by_interface)
    assert all(row[2] == "dropped: loss" and row[0] == IN for row in drops)
    assert summary["frames"] == len(rows)
    # each probe that left, matched by its payload (sequence number and send stamp:
    # unique) to its arrival: the link adds exactly its configured 5 ms (no rate
    # limit, no jitter: release = arrival + delay, both stamped in ns), so the two
    # stamps differ by 5 ms to the nanosecond
    arrivals = {payload: t for name, t, comment, payload in rows if name == IN and payload and not comment}
    delays = [t - arrivals[payload] for name, t, _, payload in rows if name == OUT and payload]
    assert len(delays) > 600 and set(delays) == {Decimal("0.005")}, Counter(delays).most_common(3)


def test_capture_stops_at_its_count_and_the_file_reads_in_scapy(make_testbed: Any, tmp_path: Path) -> None:
    from scapy.utils import rdpcap

    testbed = make_testbed(two_host_topology("delay: 1ms"))
    path = tmp_path / "ten.pcapng"
    testbed.engine.capture_start([{"link": "left-right"}], str(path), count=10)
    run_probes(testbed, str(tmp_path), rate_pps=500, seconds=1, port=7310)
    status = testbed.engine.capture_status()
    assert not status["running"] and status["frames"] == 10
    summary = testbed.engine.capture_stop()
    assert summary["frames"] == 10 and summary["complete"]
    packets = rdpcap(str(path))
    assert len(packets) == 10 and len(tshark_rows(path)) == 10


def test_capture_bad_input_is_one_clear_error(make_testbed: Any, tmp_path: Path) -> None:
    testbed = make_testbed(two_host_topology("delay: 1ms"))
    with pytest.raises(InputError, match="no link called 'left-rigth'|left-rigth"):
        testbed.engine.capture_start([{"link": "left-rigth"}], str(tmp_path / "x.pcapng"))
    with pytest.raises(InputError, match="cannot write the capture file"):
        testbed.engine.capture_start([{"link": "left-right"}], str(tmp_path / "no" / "such" / "x.pcapng"))
    with pytest.raises(InputError, match="no capture is running"):
        testbed.engine.capture_stop()
    assert not os.path.exists(tmp_path / "x.pcapng")


def test_one_file_per_link_each_numbering_its_own_interfaces(make_testbed: Any, tmp_path: Path) -> None:
    """Targets with their own `path` (a scenario's `capture:`): each file holds its
    link's interfaces from 0, and its frames are that link's."""
    from emulator.scenario.loader import parse_topology

    topology = parse_topology("name: cap3\nnodes: {left: {role: host}, mid: {role: router}, right: {role: host}}\n"
                              "links:\n  left-mid: {ends: [left, mid], delay: 1ms}\n"
                              "  mid-right: {ends: [mid, right], delay: 2ms}\n", source="c.yaml")
    testbed = make_testbed(topology)
    first, second = tmp_path / "left-mid.pcapng", tmp_path / "mid-right.pcapng"
    testbed.engine.capture_start([{"link": "left-mid", "path": str(first)},
                                  {"link": "mid-right", "path": str(second)}], str(first))
    sent = run_probes(testbed, str(tmp_path), rate_pps=200, seconds=1, port=7320)[0]["sent"]
    summary = testbed.engine.capture_stop()
    assert summary["complete"] and summary["lost"] == 0
    for path, link in ((first, "left-mid"), (second, "mid-right")):
        names = Counter(name for name, _, _, _ in tshark_rows(path))
        assert set(names) <= {f"{link} {a}>{b} {side}" for a, b in (link.split("-"), link.split("-")[::-1])
                              for side in ("in", "out")}, names
        assert sum(names.values()) == summary["files"][str(path)] > 0
    # every probe crosses both links left -> right: recorded in and out on each
    assert summary["files"][str(first)] >= 2 * sent and summary["files"][str(second)] >= 2 * sent


CAPTURED = """\
name: captured
duration: 2s
nodes:
  left: {role: host}
  right: {role: host}
links:
  left-right: {ends: [left, right], delay: 3ms}
traffic:
  probe: {kind: probe, from: left, to: right, rate_pps: 200pps}
capture: [left-right]
"""


def test_a_scenarios_capture_lands_in_the_report_directory(run_root: str, tmp_path: Path) -> None:
    import json
    import sys

    scenario = tmp_path / "captured.yaml"
    scenario.write_text(CAPTURED)
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "--state-root", run_root, "run", str(scenario),
                           "--report", str(tmp_path / "r")], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode in (0, 3), done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    path = tmp_path / "r" / "left-right.pcapng"
    rows = tshark_rows(path)
    # every probe in and out (and the stacks' own frames): what the report says it recorded
    assert report["captures"] == {str(path): len(rows)} and len(rows) >= 2 * report["metrics"]["probe.sent"]
    assert 'href="left-right.pcapng"' in (tmp_path / "r" / "index.html").read_text()


def test_caspian_capture_bad_input_is_one_line_exit_2(run_root: str, tmp_path: Path) -> None:
    import sys

    def caspian(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "emulator.cli", "--state-root", run_root, *args],
                              capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])

    for args, words in ((["capture", "x", "-c", "0"], "-c is 0"),
                        (["capture", "x", "-w", str(tmp_path / "no" / "f.pcapng")], "not a writable directory"),
                        (["capture", "x", "-w", str(tmp_path)], "is a directory")):
        done = caspian(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and words in lines[0], (args, done.stderr)
    assert not (tmp_path / "no").exists()


def test_caspian_capture_on_a_testbed_that_is_up(run_root: str, tmp_path: Path) -> None:
    import sys

    root = Path(__file__).resolve().parents[2]

    def caspian(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "emulator.cli", "--state-root", run_root, *args],
                              capture_output=True, text=True, timeout=timeout, cwd=root)

    topology = tmp_path / "pair.yaml"
    topology.write_text("name: capup\nnodes: {left: {role: host}, right: {role: host}}\n"
                        "links:\n  left-right: {ends: [left, right], delay: 2ms}\n")
    up = caspian("up", str(topology))
    assert up.returncode == 0, up.stderr
    try:
        wrong = caspian("capture", "left-rigth")
        assert wrong.returncode == 2 and "no link called 'left-rigth' (did you mean 'left-right'?" in wrong.stderr
        ping = subprocess.Popen([sys.executable, "-m", "emulator.cli", "--state-root", run_root, "exec", "left", "--",
                                 "ping", "-c", "100", "-i", "0.02", "right"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=root)
        try:
            out = tmp_path / "ten.pcapng"
            done = caspian("capture", "left-right", "--direction", "left", "-c", "10", "-w", str(out))
        finally:
            ping.wait(timeout=30)
        assert done.returncode == 0 and "10 frames" in done.stderr, done.stderr
        rows = tshark_rows(out)
        assert len(rows) == 10 and {name for name, _, _, _ in rows} <= {IN, OUT}
    finally:
        assert caspian("down").returncode == 0


def test_capture_stopped_by_a_signal_leaves_a_complete_file_and_stats_watch_draws(run_root: str, tmp_path: Path) -> None:
    """SIGTERM (as Ctrl-C) ends `caspian capture` with the file complete; `caspian stats
    --watch` draws its live table until interrupted."""
    import signal
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    base = [sys.executable, "-m", "emulator.cli", "--state-root", run_root]
    topology = tmp_path / "pair.yaml"
    topology.write_text("name: capsig\nnodes: {left: {role: host}, right: {role: host}}\n"
                        "links:\n  left-right: {ends: [left, right], delay: 2ms, rate: 10mbit}\n")
    assert subprocess.run([*base, "up", str(topology)], capture_output=True, timeout=60, cwd=root).returncode == 0
    procs: list[subprocess.Popen] = []
    try:
        ping = subprocess.Popen([*base, "exec", "left", "--", "ping", "-c", "300", "-i", "0.01", "right"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
        out = tmp_path / "signalled.pcapng"
        capture = subprocess.Popen([*base, "capture", "left-right", "-w", str(out)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=root)
        watch = subprocess.Popen([*base, "stats", "--watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=root, env={**os.environ, "COLUMNS": "160"})
        procs = [ping, capture, watch]
        # signal the capture once it said it runs; the table (drawn to a pipe only
        # when it ends) after a few of its one-second rounds
        assert capture.stderr is not None and "capturing" in capture.stderr.readline()

        def catches_sigterm(pid: int) -> bool:
            """The process has its SIGTERM handler in place (`stats --watch` sets one as its loop starts)."""
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
            return False

        deadline = time.monotonic() + 60
        while not catches_sigterm(watch.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)   # two of its one-second rounds
        capture.send_signal(signal.SIGTERM)
        watch.send_signal(signal.SIGINT)
        _, err = capture.communicate(timeout=60)
        shown, _ = watch.communicate(timeout=60)
        ping.wait(timeout=60)
        assert capture.returncode == 0 and "frames to" in err, err
        frames = int(err.split("caspian capture: ")[1].split()[0])
        # whole blocks only: tshark reads every frame the summary counts, no truncation warning
        assert frames > 0 and len(tshark_rows(out)) == frames
        assert watch.returncode == 0 and "left→right" in shown and "out rate" in shown, shown[-500:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
        assert subprocess.run([*base, "down"], capture_output=True, timeout=60, cwd=root).returncode == 0
