"""Write sysfs attributes of interfaces that live in another network namespace.

sysfs shows the network devices of the namespace that mounted it, so a
`/sys/class/net/IF/...` file of a node's interface exists only inside a mount
of sysfs made from the node's namespace. A short child process
(`python -m emulator.network.sysfs NETNS PATH=VALUE ...`) enters the
namespace, mounts its own sysfs in a private mount namespace and writes.
A child, not a fork of the caller: a private mount namespace cannot be made
in a process with threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence

from emulator.errors import TestbedError
from emulator.network.exec import CLONE_NEWNET, CLONE_NEWNS, MS_PRIVATE, MS_REC, NETNS_RUN_DIR, _fail, _libc


def write_in_netns(netns: str, values: dict[str, str]) -> None:
    """Write each `/sys/...` path → value as seen from namespace `netns`."""
    if not values:
        return
    args = [f"{path}={value}" for path, value in values.items()]
    proc = subprocess.run([sys.executable, "-m", "emulator.network.sysfs", netns, *args],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise TestbedError(f"cannot write sysfs in {netns}: {proc.stderr.strip() or proc.returncode}")


def _write(netns: str, assignments: Sequence[str]) -> None:
    libc = _libc()
    fd = os.open(os.path.join(NETNS_RUN_DIR, netns), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            _fail(f"cannot enter network namespace {netns!r}")
    finally:
        os.close(fd)
    if libc.unshare(CLONE_NEWNS) != 0:
        _fail("cannot create a private mount namespace")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        _fail("cannot make / a private mount")
    if libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None) != 0:
        _fail("cannot mount sysfs for the namespace")
    for assignment in assignments:
        path, _, value = assignment.partition("=")
        if not path.startswith("/sys/"):
            raise TestbedError(f"refusing to write outside /sys: {path}")
        with open(path, "w") as fh:
            fh.write(value)


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m emulator.network.sysfs NETNS /sys/PATH=VALUE ...", file=sys.stderr)
        return 2
    try:
        _write(argv[0], argv[1:])
    except (OSError, TestbedError) as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
