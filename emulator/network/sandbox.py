"""Rootless runs: an unprivileged user's own sandbox of user, network and mount namespaces.

A user without root cannot make network namespaces or veth pairs on the
host, but can inside a user namespace of their own (user_namespaces(7)),
mapped so that they are root there. So a rootless `caspian` command first
joins its user's *sandbox*, and from then on works exactly as it does as
root, on namespaces owned by that user namespace:

- one **holder** process per user keeps the sandbox alive between commands
  (`caspian up`, then `exec`, `link`, `stats`, `down`): it makes a user
  namespace (uid and gid mapped to 0), a network namespace (the sandbox's
  "host", where nothing else lives) and a private mount namespace with a
  fresh tmpfs on /run, then sleeps. The nodes' named namespaces are
  bind-mounted on that private /run/netns, so the host's `ip netns list`
  never shows them.
- each command joins the holder's namespaces with setns(2) (allowed: the
  user owns them) before it starts any thread or process, so everything it
  starts (the engine, the daemons, probes, iperf3) lives in the sandbox.
- the run records live in the user's runtime directory
  (`$XDG_RUNTIME_DIR/caspian/runs`, else `/tmp/caspian-UID/runs`), which the
  holder makes visible inside again when it lies under /run.
- when a command leaves no run behind (`caspian run` ends, `caspian down`),
  it stops the holder: by its recorded PID and start time, nothing else.

What a user namespace cannot give: real-time priority (SCHED_FIFO needs
CAP_SYS_NICE on the host); the engine then runs at normal priority, and the
report's fidelity section says so (`policies`). Everything else (AF_PACKET,
sysctls of the nodes' namespaces, ethtool offloads, BIRD and FRR) works.

The holder is this module run as a program: `python -m emulator.network.sandbox
hold DIR`. It imports only the standard library and `emulator.network.kernel`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Iterator

from emulator.errors import EnvironmentProblem
from emulator.network.kernel import (CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, MS_BIND, MS_PRIVATE, MS_REC,
                                     NETNS_RUN_DIR, mount, setns, unshare)

HOLDER_FILE = "sandbox.json"
LOCK_FILE = "sandbox.lock"
RUNS_DIR = "runs"
#: how long a new holder may take to say it is ready
READY_TIMEOUT_S = 10.0
#: the identity map of the initial user namespace: a process there is not sandboxed
_INITIAL_UID_MAP = ["0", "0", "4294967295"]


@dataclass(frozen=True)
class Sandbox:
    """A user's sandbox: its directory and the holder process (PID and start time)."""

    dir: str
    pid: int
    starttime: int

    @property
    def runs_root(self) -> str:
        """Where this sandbox's runs are recorded (the state root of its commands)."""
        return os.path.join(self.dir, RUNS_DIR)


def needed() -> bool:
    """True when this process cannot build a testbed itself: not root, and not yet in a sandbox."""
    return os.geteuid() != 0


def in_user_namespace() -> bool:
    """True when this process runs in a user namespace other than the host's
    (a sandbox, a rootless container): its uid map is not the identity."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as fh:
            return not is_identity_map(fh.read())
    except OSError:
        return False


def is_identity_map(uid_map: str) -> bool:
    """True for the text of the initial user namespace's /proc/PID/uid_map (all ids as themselves)."""
    return uid_map.split() == _INITIAL_UID_MAP


def user_dir() -> str:
    """The user's caspian directory: `$XDG_RUNTIME_DIR/caspian` when that is an
    absolute directory of theirs, else `/tmp/caspian-UID`; made mode 0700 and
    checked to be a real directory owned by the user (/tmp is shared)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and os.path.isdir(runtime) and os.stat(runtime).st_uid == os.getuid():
        path = os.path.join(runtime, "caspian")
    else:
        path = f"/tmp/caspian-{os.getuid()}"
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot make the rootless run directory {path}: {exc.strerror}") from exc
    if not os.path.isdir(path) or os.path.islink(path) or info.st_uid != os.getuid():
        raise EnvironmentProblem(f"{path} is not a directory of uid {os.getuid()}: remove it, or set "
                                 "XDG_RUNTIME_DIR to a directory of yours")
    return path


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """Serialize commands of one user that start, join or stop the holder."""
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _recorded(directory: str) -> Sandbox | None:
    """The holder recorded in `directory`, if it still runs (same PID and start time)."""
    from emulator.network.processes import running

    try:
        with open(os.path.join(directory, HOLDER_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
        sandbox = Sandbox(directory, int(data["pid"]), int(data["starttime"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sandbox if running(sandbox.pid, sandbox.starttime) else None


def enter() -> Sandbox:
    """Join the user's sandbox, starting its holder if none runs; the sandbox.

    Call it first thing in a single-threaded process: setns(2) into a user
    namespace refuses a process with threads. Afterwards this process is
    root in the sandbox (os.geteuid() == 0) and its cwd is where it was.
    Raises EnvironmentProblem when the host allows no user namespaces.
    """
    directory = user_dir()
    os.makedirs(os.path.join(directory, RUNS_DIR), mode=0o700, exist_ok=True)
    with _locked(directory):
        sandbox = _recorded(directory) or _start_holder(directory)
        _join(sandbox.pid)
    return sandbox


def _start_holder(directory: str) -> Sandbox:
    """Start a holder for `directory`, wait for its `ready PID` line, record it."""
    from emulator.network.processes import process_starttime

    proc = subprocess.Popen([sys.executable, "-m", "emulator.network.sandbox", "hold", directory],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd="/", env=_holder_env(), start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
    line = proc.stdout.readline().decode(errors="replace").split() if ready else []
    try:
        proc.wait(timeout=READY_TIMEOUT_S)   # the first process exits once its child holds the sandbox
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    why = proc.stderr.read().decode(errors="replace").strip().splitlines()
    proc.stdout.close()
    proc.stderr.close()
    if len(line) != 2 or line[0] != "ready" or not line[1].isdigit():
        reason = why[-1] if why else f"the holder exited with {proc.returncode}"
        raise EnvironmentProblem(
            f"a rootless run needs a user namespace and this host gave none ({reason}): run as root, or "
            "allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0; on Ubuntu also "
            "kernel.apparmor_restrict_unprivileged_userns=0)")
    pid = int(line[1])
    starttime = process_starttime(pid)
    if starttime is None:
        raise EnvironmentProblem(f"the rootless sandbox's holder (pid {pid}) exited at once: {' '.join(why)}")
    sandbox = Sandbox(directory, pid, starttime)
    record = os.path.join(directory, HOLDER_FILE)
    with open(record + ".tmp", "w", encoding="utf-8") as fh:
        json.dump({"pid": pid, "starttime": starttime, "created": time.time()}, fh)
    os.replace(record + ".tmp", record)
    return sandbox


def _holder_env() -> dict[str, str]:
    """The holder's environment: this one, with the project importable from anywhere."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _join(pid: int) -> None:
    """Move this process into the holder's user, mount and network namespaces (in that order:
    the user namespace gives the rights the other two need), keeping its cwd."""
    cwd = os.getcwd()
    fds = {flag: os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
           for name, flag in (("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS), ("net", CLONE_NEWNET))}
    try:
        for flag, fd in fds.items():
            try:
                setns(fd, flag)
            except OSError as exc:
                raise EnvironmentProblem(f"cannot join the rootless sandbox (holder pid {pid}): {exc.strerror}"
                                         " (a command with threads cannot change its user namespace)") from exc
    finally:
        for fd in fds.values():
            os.close(fd)
    os.chdir(cwd)   # joining a mount namespace moves the cwd to its root


def release_if_idle(sandbox: Sandbox) -> str | None:
    """Stop the holder when no run is recorded in the sandbox any more; a problem or None.

    A command that leaves a testbed up (`caspian up`) leaves the holder too.
    """
    from emulator.network.processes import stop_recorded

    with _locked(sandbox.dir):
        try:
            if os.listdir(sandbox.runs_root):
                return None
        except FileNotFoundError:
            pass
        problem = stop_recorded(sandbox.pid, sandbox.starttime, 5.0, role="rootless sandbox holder")
        if problem is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(sandbox.dir, HOLDER_FILE))
        return problem


# ---------------------------------------------------------------- the holder


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def hold(directory: str) -> int:
    """The holder: make the sandbox's namespaces, say `ready PID` on stdout, sleep until SIGTERM."""
    uid, gid = os.getuid(), os.getgid()
    keep = os.open(directory, os.O_PATH | os.O_DIRECTORY)   # reachable after /run is covered
    try:
        unshare(CLONE_NEWUSER)
        # an unprivileged process may map only its own ids, and only once
        # setgroups(2) is denied (user_namespaces(7))
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1\n")
        _write("/proc/self/gid_map", f"0 {gid} 1\n")
        unshare(CLONE_NEWNET | CLONE_NEWNS)
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        # a private /run: the nodes' named namespaces (/run/netns) and the
        # daemons' default run directories stay inside the sandbox
        mount("tmpfs", "/run", "tmpfs", 0)
        os.makedirs(NETNS_RUN_DIR, mode=0o755)
        if os.path.realpath(directory).startswith("/run/"):
            os.makedirs(directory, mode=0o700)
            mount(f"/proc/self/fd/{keep}", directory, None, MS_BIND | MS_REC)
    except OSError as exc:
        print(f"cannot make the sandbox: {exc}", file=sys.stderr)
        return 1
    finally:
        os.close(keep)
    child = os.fork()
    if child:
        # the parent exits so the command that started it can collect it; the
        # child, now an orphan in its own session, holds the namespaces
        print(f"ready {child}", flush=True)
        return 0
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a Ctrl-C in the terminal that started it is not for it
    while True:
        signal.pause()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "hold":
        print("usage: python -m emulator.network.sandbox hold DIR", file=sys.stderr)
        raise SystemExit(2)
    os._exit(hold(sys.argv[2]))
