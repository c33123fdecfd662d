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

import subprocess
import sys
from typing import Sequence

from emulator.errors import TestbedError
from emulator.network.exec import _fail, enter_node


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
    libc = enter_node(netns)
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
