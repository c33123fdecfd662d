"""Run a program inside a node, as `ip netns exec` does, with the testbed's /etc/hosts.

`exec_in_node` replaces the calling process: it enters the node's network
namespace, gives itself a private mount namespace in which the run's hosts
file is bind-mounted over /etc/hosts (so node names resolve) and /sys shows
the node's interfaces, then execs the program.

`popen_in_node` starts a program that way and returns its Popen: the child
is a tiny Python trampoline (`python -c ... NETNS HOSTS -- ARGV`) that calls
`exec_in_node`, so the returned PID is the program's own PID. A trampoline
instead of `preexec_fn`: code between fork and exec in a threaded parent can
deadlock, and `unshare(CLONE_NEWNS)` fails in a process with threads.

Trampoline exit codes before the program runs: 125 the namespace could not
be entered, 126 the program could not be executed, 127 it was not found.

This module imports only the standard library and `emulator.errors`, so the
trampoline starts fast.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
from typing import Any, NoReturn, Sequence

from emulator.errors import TestbedError

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
NETNS_RUN_DIR = "/run/netns"

EXIT_SETUP_FAILED = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

# the project root, so the trampoline imports this same code whatever its cwd or env
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _fail(what: str) -> NoReturn:
    err = ctypes.get_errno()
    raise TestbedError(f"{what}: {os.strerror(err)}")


def enter_netns(libc: ctypes.CDLL, netns: str) -> None:
    """Move this process (its calling thread) into the named network namespace."""
    try:
        fd = os.open(os.path.join(NETNS_RUN_DIR, netns), os.O_RDONLY)
    except FileNotFoundError:
        raise TestbedError(f"network namespace {netns!r} does not exist (is the testbed up?)") from None
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            _fail(f"cannot enter network namespace {netns!r}")
    finally:
        os.close(fd)


def enter_node(netns: str) -> ctypes.CDLL:
    """Move this (single-threaded) process into `netns` with a private mount namespace.

    Private, so mounts made afterwards (the hosts file, a sysfs) never
    propagate back to the host. Returns libc for further mounts.
    """
    libc = _libc()
    enter_netns(libc, netns)
    if libc.unshare(CLONE_NEWNS) != 0:
        _fail("cannot create a private mount namespace")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        _fail("cannot make / a private mount")
    return libc


def exec_in_node(netns: str, argv: Sequence[str], hosts_file: str) -> NoReturn:
    """Replace this process with `argv` running in namespace `netns`, `hosts_file` as /etc/hosts.

    Call it in a single-threaded process (the CLI's `exec`, the trampoline):
    a private mount namespace cannot be made while threads share the
    filesystem context. Raises TestbedError if the namespace cannot be set
    up, and the OSError of execvp (FileNotFoundError: no such program).
    """
    if not argv:
        raise TestbedError("no command given to run in the node")
    libc = enter_node(netns)
    if libc.mount(os.fsencode(hosts_file), b"/etc/hosts", None, MS_BIND, None) != 0:
        _fail(f"cannot bind-mount {hosts_file} over /etc/hosts")
    # /sys shows the network devices of the namespace that mounted it: remount
    # it so tools reading /sys/class/net see the node's interfaces. Best effort,
    # as in iproute2 (a read-only or absent /sys must not stop the command).
    if libc.umount2(b"/sys", MNT_DETACH) == 0:
        libc.mount(netns.encode(), b"/sys", b"sysfs", 0, None)
    os.execvp(argv[0], list(argv))


def trampoline_argv(netns: str, argv: Sequence[str], hosts_file: str) -> list[str]:
    """The command line that runs `argv` in `netns` via the trampoline."""
    bootstrap = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from emulator.network.exec import main; sys.exit(main(sys.argv[2:]))"
    )
    return [sys.executable, "-c", bootstrap, _PROJECT_ROOT, netns, hosts_file, "--", *argv]


def popen_in_node(netns: str, argv: Sequence[str], hosts_file: str, **popen_kwargs: Any) -> subprocess.Popen:
    """Start `argv` in namespace `netns` and return its Popen (its pid is the program's).

    `popen_kwargs` go to subprocess.Popen (stdout, env, cwd...); `env` is
    passed on to the program.
    """
    return subprocess.Popen(trampoline_argv(netns, argv, hosts_file), **popen_kwargs)


def main(args: Sequence[str] | None = None) -> int:
    """Trampoline entry: `NETNS HOSTS_FILE -- PROGRAM [ARG...]`."""
    args = list(sys.argv[1:] if args is None else args)
    if len(args) < 4 or args[2] != "--":
        print("usage: python -m emulator.network.exec NETNS HOSTS_FILE -- PROGRAM [ARG...]", file=sys.stderr)
        return EXIT_SETUP_FAILED
    netns, hosts_file, argv = args[0], args[1], args[3:]
    try:
        exec_in_node(netns, argv, hosts_file)
    except TestbedError as exc:
        print(f"caspian exec: {exc}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    except FileNotFoundError:
        print(f"caspian exec: {argv[0]}: command not found", file=sys.stderr)
        return EXIT_NOT_FOUND
    except OSError as exc:
        print(f"caspian exec: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return EXIT_CANNOT_EXECUTE


if __name__ == "__main__":
    sys.exit(main())
