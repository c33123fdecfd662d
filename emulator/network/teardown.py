"""Undo a run: remove exactly what its state records, nothing else.

Order: processes (newest first, so a daemon goes before the engine it talks
through), then namespaces (deleting a namespace destroys its veths), then
files, then the run directory. Every step tolerates objects that are already
gone, so teardown is idempotent and `caspian down` can finish what a killed
run left. A process is signalled only while its PID still has the start
time that was recorded, so a recycled PID is never hit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from typing import Any

from emulator.network import kernel
from emulator.network.state import DEFAULT_ROOT, RunState

_POLL_S = 0.02


def _same_process(entry: dict[str, Any]) -> bool:
    """True while the recorded process is alive and is the one recorded (not a reused PID).

    A zombie counts as gone: it has exited, and its parent (perhaps the
    caller, holding a Popen) collects its status; reaping it here would
    steal that status.
    """
    starttime = kernel.process_starttime(int(entry["pid"]))
    if starttime is None or starttime != int(entry["starttime"]):
        return False
    return kernel.process_state(int(entry["pid"])) not in (None, "Z", "X")


def _wait_gone(entry: dict[str, Any], deadline: float) -> bool:
    while True:
        if not _same_process(entry):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def _stop_process(entry: dict[str, Any], timeout_s: float) -> str | None:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL; a problem message or None."""
    pid = int(entry["pid"])
    role = entry.get("role", "process")
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, timeout_s)):
        if not _same_process(entry):
            return None
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return None
        except PermissionError:
            return f"{role} (pid {pid}) cannot be signalled: permission denied"
        if _wait_gone(entry, time.monotonic() + wait_s):
            return None
    return f"{role} (pid {pid}) survived SIGKILL for {timeout_s:g}s"


def teardown(run: RunState, *, timeout_s: float = 5) -> list[str]:
    """Remove every object `run` recorded; return the problems found (empty = clean).

    Never raises for objects that are already gone. Records of removed
    objects are dropped as it goes; the run directory is removed only when
    nothing recorded is left, so a second call (or `caspian down`) can retry
    whatever failed.
    """
    problems: list[str] = []
    if not os.path.isdir(run.dir):
        return problems
    with contextlib.suppress(FileNotFoundError):
        run.reload()  # another process may have recorded more since `run` was loaded

    def done(entry: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            run.forget(entry)

    for entry in reversed(run.of_kind("process")):
        problem = _stop_process(entry, timeout_s)
        if problem:
            problems.append(problem)
        else:
            done(entry)

    # An engine whose builder was killed between starting it and recording
    # its PID: it is identified by its argv naming a config file this run
    # recorded (written before the engine starts), never by a name guessed.
    for pid in _unrecorded_engines(run):
        starttime = kernel.process_starttime(pid)
        if starttime is not None:
            problem = _stop_process({"pid": pid, "starttime": starttime, "role": "unrecorded engine"}, timeout_s)
            if problem:
                problems.append(problem)

    for entry in reversed(run.of_kind("netns")):
        name = entry["name"]
        # Report (never kill) processes this run did not record that keep the
        # namespace alive: the veths inside live on until they exit.
        for pid in kernel.pids_in_netns(name):
            if pid == os.getpid():
                continue
            problems.append(
                f"process {pid} ({_comm(pid)}) still runs in namespace {name}; "
                "it was not started by this run, so it was left alone (its interfaces live until it exits)"
            )
        try:
            kernel.remove_netns(name)
        except OSError as exc:
            problems.append(f"cannot remove namespace {name}: {exc.strerror}")
            continue
        done(entry)

    for entry in reversed(run.of_kind("file")):
        try:
            os.unlink(entry["path"])
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"cannot remove {entry['path']}: {exc.strerror}")
            continue
        done(entry)

    leftover = [r for r in run.records if r["kind"] in ("process", "netns", "file")]
    if not leftover:
        # everything in the directory is the run's own bookkeeping
        shutil.rmtree(run.dir, ignore_errors=True)
        if os.path.exists(run.dir):
            problems.append(f"cannot remove run directory {run.dir}")
    return problems


def down_all(root: str = DEFAULT_ROOT, *, timeout_s: float = 5) -> list[str]:
    """Tear down every run recorded under `root`; return all problems, each naming its run."""
    problems = []
    for run in RunState.all(root):
        problems.extend(f"{run.prefix}: {p}" for p in teardown(run, timeout_s=timeout_s))
    return problems


def _unrecorded_engines(run: RunState) -> list[int]:
    """PIDs of `python -m emulator.engine.daemon CONFIG` whose CONFIG is a file `run` recorded."""
    configs = {entry["path"] for entry in run.of_kind("file")}
    if not configs:
        return []
    recorded = {int(entry["pid"]) for entry in run.of_kind("process")}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in recorded or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "emulator.engine.daemon" in argv and configs.intersection(argv):
            found.append(int(entry))
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"
