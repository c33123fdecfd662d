"""Undo a run: remove exactly what its state records, nothing else.

Order: processes (newest first, so a daemon goes before the engine it talks
through), then namespaces (deleting a namespace destroys its veths; a child
of the calling process found inside one was started for the run but not yet
recorded, and is stopped first), then
files, then the run directory. Every step tolerates objects that are already
gone, so teardown is idempotent and `caspian down` can finish what a killed
run left. A process is signalled only while its PID still has the start
time that was recorded, so a recycled PID is never hit. SIGINT/SIGTERM/SIGHUP
that arrive during a teardown are held back until it is done
(`emulator.network.signals.shielded`): a teardown cut short half-way is what
leaves namespaces behind.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import time
from typing import Any

from emulator.network import kernel
from emulator.network.signals import shielded
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


def _wait_gone(entry: dict[str, Any], deadline: float, pidfd: int | None = None) -> bool:
    """Wait until the recorded process is gone or `deadline` passes; True if gone.

    With a pidfd the wait ends the moment the process exits (the pidfd
    becomes readable); polling /proc every _POLL_S cost at least 20 ms per
    process, seconds for a testbed with a daemon per router.
    """
    while True:
        if not _same_process(entry):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.poll(max(1, int(left * 1000)))
        else:
            time.sleep(min(_POLL_S, left))


def _open_pidfd(entry: dict[str, Any]) -> int | None:
    """A pidfd for the recorded process, or None (gone, reused PID, or no pidfd support).

    Opened first and checked after: if the start time still matches once the
    pidfd is open, the pidfd names the recorded process and no later one.
    """
    try:
        pidfd = os.pidfd_open(int(entry["pid"]))
    except (OSError, AttributeError):
        return None
    if not _same_process(entry):
        os.close(pidfd)
        return None
    return pidfd


def _stop_process(entry: dict[str, Any], timeout_s: float) -> str | None:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL; a problem message or None."""
    pid = int(entry["pid"])
    role = entry.get("role", "process")
    if not _same_process(entry):
        return None
    pidfd = _open_pidfd(entry)
    try:
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, timeout_s)):
            if not _same_process(entry):
                return None
            try:
                if pidfd is not None:
                    signal.pidfd_send_signal(pidfd, sig)  # cannot hit a reused PID
                else:
                    os.kill(pid, sig)
            except ProcessLookupError:
                return None
            except PermissionError:
                return f"{role} (pid {pid}) cannot be signalled: permission denied"
            if _wait_gone(entry, time.monotonic() + wait_s, pidfd):
                return None
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return f"{role} (pid {pid}) survived SIGKILL for {timeout_s:g}s"


def teardown(run: RunState, *, timeout_s: float = 5) -> list[str]:
    """Remove every object `run` recorded; return the problems found (empty = clean).

    Never raises for objects that are already gone. Records of removed
    objects are dropped after each step (processes, namespaces, files) with
    one write of the state file; a teardown killed within a step leaves
    records of objects already gone, which the next one skips. The run
    directory is removed only when nothing recorded is left, so a second
    call (or `caspian down`) can retry whatever failed. A signal that arrives
    meanwhile is delivered once it is done.
    """
    with shielded():
        return _teardown(run, timeout_s)


def _teardown(run: RunState, timeout_s: float) -> list[str]:
    problems: list[str] = []
    if not os.path.isdir(run.dir):
        return problems
    with contextlib.suppress(FileNotFoundError):
        run.reload()  # another process may have recorded more since `run` was loaded

    gone: list[dict[str, Any]] = []

    def forget_gone() -> None:
        # one state write per step: writing it per object (fsync included)
        # cost more than removing the objects
        with contextlib.suppress(Exception):
            run.forget_all(gone)
        gone.clear()

    # every PID signalled once at most: one that survived SIGKILL is reported
    # once, not waited for again as a resident of a namespace below
    stopped: set[int] = set()
    for entry in reversed(run.of_kind("process")):
        stopped.add(int(entry["pid"]))
        problem = _stop_process(entry, timeout_s)
        if problem:
            problems.append(problem)
        else:
            gone.append(entry)
    forget_gone()

    # An engine whose builder was killed between starting it and recording
    # its PID: it is identified by its argv naming a config file this run
    # recorded (written before the engine starts), never by a name guessed.
    for pid in _unrecorded_engines(run):
        starttime = kernel.process_starttime(pid)
        stopped.add(pid)
        if starttime is not None:
            problem = _stop_process({"pid": pid, "starttime": starttime, "role": "unrecorded engine"}, timeout_s)
            if problem:
                problems.append(problem)

    namespaces = list(reversed(run.of_kind("netns")))
    # one scan of /proc for all namespaces, not one per namespace
    residents = kernel.pids_by_netns([entry["name"] for entry in namespaces])
    for entry in namespaces:
        name = entry["name"]
        for pid in residents.get(name, []):
            if pid == os.getpid() or pid in stopped:
                continue
            starttime = kernel.process_starttime(pid)
            if _parent_pid(pid) == os.getpid() and starttime is not None:
                stopped.add(pid)
                # Started by this very process into this run's namespace, and
                # not recorded: a signal landed between its start and its
                # record (a daemon, a traffic tool). Ours, so stopped like the
                # recorded ones; left running it would keep the namespace alive.
                problem = _stop_process({"pid": pid, "starttime": starttime,
                                         "role": f"unrecorded {_comm(pid)}"}, timeout_s)
                if problem:
                    problems.append(problem)
                continue
            # Report (never kill) processes this run did not start that keep the
            # namespace alive: the veths inside live on until they exit.
            problems.append(
                f"process {pid} ({_comm(pid)}) still runs in namespace {name}; "
                "it was not started by this run, so it was left alone (its interfaces live until it exits)"
            )
        try:
            kernel.remove_netns(name)
        except OSError as exc:
            problems.append(f"cannot remove namespace {name}: {exc.strerror}")
            continue
        gone.append(entry)
    forget_gone()

    for entry in reversed(run.of_kind("file")):
        try:
            os.unlink(entry["path"])
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"cannot remove {entry['path']}: {exc.strerror}")
            continue
        gone.append(entry)
    forget_gone()

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
    with shielded():  # one signal must not leave the later runs up
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


def _parent_pid(pid: int) -> int | None:
    """The parent of `pid` (field 4 of /proc/PID/stat), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # the command name (field 2) may hold spaces and parentheses: split after its last ")"
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"
