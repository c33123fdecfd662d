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
import shutil
from typing import Any

from emulator.network import kernel, processes
from emulator.network.signals import shielded
from emulator.network.state import DEFAULT_ROOT, RunState


def _stop_process(entry: dict[str, Any], timeout_s: float) -> str | None:
    """Stop the recorded process (`processes.stop_recorded`); a problem message or None."""
    return processes.stop_recorded(int(entry["pid"]), int(entry["starttime"]), timeout_s,
                                   entry.get("role", "process"))


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
        starttime = processes.process_starttime(pid)
        stopped.add(pid)
        if starttime is not None:
            problem = _stop_process({"pid": pid, "starttime": starttime, "role": "unrecorded engine"}, timeout_s)
            if problem:
                problems.append(problem)

    namespaces = list(reversed(run.of_kind("netns")))
    # one scan of /proc for all namespaces, not one per namespace
    residents = processes.pids_by_netns([entry["name"] for entry in namespaces])
    for entry in namespaces:
        name = entry["name"]
        for pid in residents.get(name, []):
            if pid == os.getpid() or pid in stopped:
                continue
            starttime = processes.process_starttime(pid)
            if processes.parent_pid(pid) == os.getpid() and starttime is not None:
                stopped.add(pid)
                # Started by this very process into this run's namespace, and
                # not recorded: a signal landed between its start and its
                # record (a daemon, a traffic tool). Ours, so stopped like the
                # recorded ones; left running it would keep the namespace alive.
                problem = _stop_process({"pid": pid, "starttime": starttime,
                                         "role": f"unrecorded {processes.command_name(pid)}"}, timeout_s)
                if problem:
                    problems.append(problem)
                continue
            # Report (never kill) processes this run did not start that keep the
            # namespace alive: the veths inside live on until they exit.
            problems.append(
                f"process {pid} ({processes.command_name(pid)}) still runs in namespace {name}; "
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
    problems: list[str] = []
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
    return processes.pids_with_argument(configs, "emulator.engine.daemon", recorded | {os.getpid()})
