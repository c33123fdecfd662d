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

This module imports only the standard library, `emulator.errors` and
`emulator.network.kernel` (the one wrapper of setns/unshare/mount), so the
trampoline starts fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, NoReturn, Sequence

from emulator.errors import TestbedError
from emulator.network.kernel import (CLONE_NEWNS, MNT_DETACH, MS_BIND, MS_PRIVATE, MS_REC, enter_netns, mount,
                                     umount2, unshare)

EXIT_SETUP_FAILED = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

# the project root, so the trampoline imports this same code whatever its cwd or env
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def setup_step(what: str, step: Any, *args: Any) -> None:
    """Run the mount-namespace step `step(*args)`; its OSError becomes a TestbedError saying `what`.

    A TestbedError, so the trampoline exits with EXIT_SETUP_FAILED, never with
    the exit codes that mean the program itself could not run.
    """
    try:
        step(*args)
    except OSError as exc:
        raise TestbedError(f"{what}: {exc.strerror}") from exc


def enter_node(netns: str) -> None:
    """Move this (single-threaded) process into `netns` with a private mount namespace.

    Private, so mounts made afterwards (the hosts file, a sysfs) never
    propagate back to the host.
    """
    enter_netns(netns, hint=" (is the testbed up?)")
    setup_step("cannot create a private mount namespace", unshare, CLONE_NEWNS)
    setup_step("cannot make / a private mount", mount, "none", "/", None, MS_REC | MS_PRIVATE)


def exec_in_node(netns: str, argv: Sequence[str], hosts_file: str) -> NoReturn:
    """Replace this process with `argv` running in namespace `netns`, `hosts_file` as /etc/hosts.

    Call it in a single-threaded process (the CLI's `exec`, the trampoline):
    a private mount namespace cannot be made while threads share the
    filesystem context. Raises TestbedError if the namespace cannot be set
    up, and the OSError of execvp (FileNotFoundError: no such program).
    """
    if not argv:
        raise TestbedError("no command given to run in the node")
    enter_node(netns)
    setup_step(f"cannot bind-mount {hosts_file} over /etc/hosts", mount, hosts_file, "/etc/hosts", None, MS_BIND)
    # /sys shows the network devices of the namespace that mounted it: remount
    # it so tools reading /sys/class/net see the node's interfaces. Best effort,
    # as in iproute2 (a read-only or absent /sys must not stop the command).
    try:
        umount2("/sys", MNT_DETACH)
        mount(netns, "/sys", "sysfs", 0)
    except OSError:
        pass
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
