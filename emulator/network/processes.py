"""Process supervision: naming a process for good, and stopping it.

A PID alone does not name a process: once it exits the kernel hands the
number to a later one. The pair (PID, start time) does, so a run records
both (`state.json`'s `pid` and `starttime`) and nothing here signals a PID
whose start time is no longer the recorded one.

The start time is recorded as /proc/PID/stat's `starttime`, clock ticks
since boot, as caspian has always written it: records written before psutil
was used here still name their processes (`caspian down --all`).
`process_starttime` converts psutil's `create_time` (seconds since the
epoch, computed by psutil from the same field plus the boot time) back to
those ticks.

psutil reads the process table (identity, state, parent, name, command
line). Signals and waits for a recorded process go through a pidfd where
the kernel has one: a pidfd opened while the start time still matched
names that process and no later one, so `pidfd_send_signal` cannot hit a
recycled PID (psutil checks the identity and then calls kill(2), which
leaves a window); and polling a pidfd ends the wait the moment the process
exits without reaping it (psutil's `wait` reaps children of the caller,
stealing the status a Popen holder waits for).

Children started here with subprocess.Popen are stopped by `stop_children`:
terminate, wait, kill, wait, one timeout each.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from typing import Iterable

import psutil

from emulator.network.kernel import netns_path

#: the unit of /proc/PID/stat's `starttime`
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: how often a wait without a pidfd looks again
_POLL_S = 0.02


def process_starttime(pid: int) -> int | None:
    """Start time of process `pid` in clock ticks since boot (/proc's `starttime`), None if it is gone.

    Together with the PID this names one process for good: a PID reused by a
    later process has a different start time.
    """
    try:
        return _ticks(psutil.Process(pid))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _ticks(proc: psutil.Process) -> int:
    # psutil's create_time is starttime / CLOCK_TICKS + the boot time (both
    # read from /proc): rounding gives the ticks back exactly
    return round((proc.create_time() - psutil.boot_time()) * CLOCK_TICKS)


def running(pid: int, starttime: int | None = None) -> bool:
    """True while process `pid` runs (and, given `starttime`, is the one that started then).

    A zombie counts as gone: it has exited, and its parent (perhaps the
    caller, holding a Popen) collects its status; reaping it here would
    steal that status.
    """
    try:
        proc = psutil.Process(pid)
        if starttime is not None and _ticks(proc) != int(starttime):
            return False
        return proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def parent_pid(pid: int) -> int | None:
    """The parent of `pid`, or None if it is gone."""
    try:
        return psutil.Process(pid).ppid()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def command_name(pid: int) -> str:
    """The command name of `pid` (/proc/PID/comm), `?` if it is gone."""
    try:
        return psutil.Process(pid).name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"


def pids_with_argument(words: set[str], program: str, exclude: set[int]) -> list[int]:
    """PIDs (not in `exclude`) whose argv holds `program` and one of `words`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid in exclude:
            continue
        argv = proc.info["cmdline"] or []
        if program in argv and words.intersection(argv):
            found.append(proc.pid)
    return found


def pids_by_netns(names: list[str]) -> dict[str, list[int]]:
    """PIDs of the processes in each named network namespace of `names`, from one pass over the process table.

    The pass costs the same for one namespace as for a hundred. A namespace
    is told by the device and inode of its file, which /proc/PID/ns/net
    shares (psutil does not read namespaces).
    """
    targets: dict[tuple[int, int], str] = {}
    for name in names:
        try:
            st = os.stat(netns_path(name))
        except FileNotFoundError:
            continue
        targets[(st.st_dev, st.st_ino)] = name
    found: dict[str, list[int]] = {name: [] for name in names}
    if not targets:
        return found
    for pid in psutil.pids():
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue  # gone meanwhile, or a kernel thread we may not inspect
        owner = targets.get((st.st_dev, st.st_ino))
        if owner is not None:
            found[owner].append(pid)
    return found


def pids_in_netns(name: str) -> list[int]:
    """PIDs of processes whose network namespace is the named one (read-only)."""
    return pids_by_netns([name])[name]


def _open_pidfd(pid: int, starttime: int) -> int | None:
    """A pidfd for the recorded process, or None (gone, reused PID, or no pidfd support).

    Opened first and checked after: if the start time still matches once the
    pidfd is open, the pidfd names the recorded process and no later one.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None
    if not running(pid, starttime):
        os.close(pidfd)
        return None
    return pidfd


def _wait_gone(pid: int, starttime: int, deadline: float, pidfd: int | None) -> bool:
    """Wait until the recorded process is gone or `deadline` passes; True if gone.

    With a pidfd the wait ends the moment the process exits (the pidfd
    becomes readable); polling every _POLL_S costs at least 20 ms per
    process, seconds for a testbed with a daemon per router.
    """
    while True:
        if not running(pid, starttime):
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


def stop_recorded(pid: int, starttime: int, timeout_s: float, role: str = "process") -> str | None:
    """SIGTERM the process (`pid`, `starttime`), wait up to `timeout_s`, then SIGKILL and wait again.

    Only while it is the recorded process: one already gone, or a PID now
    held by another process, is left alone. Returns a problem message, or
    None once it is gone.
    """
    if not running(pid, starttime):
        return None
    pidfd = _open_pidfd(pid, starttime)
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not running(pid, starttime):
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
            if _wait_gone(pid, starttime, time.monotonic() + timeout_s, pidfd):
                return None
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return f"{role} (pid {pid}) survived SIGKILL for {timeout_s:g}s"


def _collect(proc: subprocess.Popen, timeout_s: float) -> None:
    """Wait up to `timeout_s` for `proc`, reading its pipes meanwhile if they are still open.

    A child writing to a pipe nobody reads would block instead of exiting.
    TimeoutExpired if it (or a grandchild holding its pipes) is not done by then.
    """
    pipes = [f for f in (proc.stdin, proc.stdout, proc.stderr) if f is not None]
    if pipes and not any(f.closed for f in pipes):
        proc.communicate(timeout=timeout_s)
    else:
        proc.wait(timeout=timeout_s)


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def stop_children(procs: Iterable[subprocess.Popen], timeout_s: float, *,
                  sig: int = signal.SIGTERM) -> list[subprocess.Popen]:
    """Stop children this process started: `sig` to each still running, wait `timeout_s`, kill, wait.

    All are signalled before any is waited for, so they stop in parallel;
    their pipes are read meanwhile and closed at the end. Returns those that
    had to be killed. Raises subprocess.TimeoutExpired if one outlives
    SIGKILL by `timeout_s` (still closing sockets in the kernel: it exits
    when that is done).
    """
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    killed = []
    for proc in procs:
        try:
            _collect(proc, timeout_s)
        except subprocess.TimeoutExpired:
            # a grandchild may hold the pipes open after the child exited:
            # only the child itself is waited for from here on
            if proc.poll() is None:
                proc.kill()
                killed.append(proc)
                proc.wait(timeout=timeout_s)
        finally:
            _close_pipes(proc)
    return killed
