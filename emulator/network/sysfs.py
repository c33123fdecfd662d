"""Write sysfs attributes of interfaces that live in other network namespaces.

sysfs shows the network devices of the namespace that mounted it, so a
`/sys/class/net/IF/...` file of a node's interface exists only inside a mount
of sysfs made from the node's namespace. One short child process
(`python -m emulator.network.sysfs`, the work as JSON on stdin) gives itself
a private mount namespace and then, namespace by namespace, enters it,
mounts a sysfs of it over /sys, writes, and unmounts. A child, not a fork of
the caller: a private mount namespace cannot be made in a process with
threads. One child for all namespaces: starting a Python per namespace cost
~60 ms each, seconds for a large testbed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Sequence

from emulator.errors import TestbedError
from emulator.network.exec import enter_node, setup_step
from emulator.network.kernel import MNT_DETACH, enter_netns, mount, umount2


def write_in_namespaces(values: dict[str, dict[str, str]]) -> None:
    """Write, for each namespace, each `/sys/...` path -> value as seen from inside it."""
    work = {netns: paths for netns, paths in values.items() if paths}
    if not work:
        return
    proc = subprocess.run([sys.executable, "-m", "emulator.network.sysfs"], input=json.dumps(work),
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise TestbedError(f"cannot write sysfs: {proc.stderr.strip() or proc.returncode}")


def write_in_netns(netns: str, values: dict[str, str]) -> None:
    """Write each `/sys/...` path -> value as seen from namespace `netns`."""
    write_in_namespaces({netns: values})


def _write_all(work: dict[str, dict[str, str]]) -> None:
    private = False
    for netns, paths in work.items():
        if not private:
            enter_node(netns)  # also the private mount namespace, once
            private = True
        else:
            enter_netns(netns, hint=" (is the testbed up?)")
        # a sysfs mount shows the namespace its mounter was in when mounting
        setup_step(f"cannot mount sysfs for namespace {netns}", mount, "sysfs", "/sys", "sysfs", 0)
        try:
            for path, value in paths.items():
                if not path.startswith("/sys/"):
                    raise TestbedError(f"refusing to write outside /sys: {path}")
                try:
                    with open(path, "w") as fh:
                        fh.write(value)
                except OSError as exc:
                    raise TestbedError(f"cannot write {value!r} to {path} in {netns}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(OSError):  # the next mount goes on top; the child ends soon
                umount2("/sys", MNT_DETACH)


def main(argv: Sequence[str]) -> int:
    """Child entry: the work as JSON on stdin, {netns: {path: value}}; or `NETNS PATH=VALUE ...`."""
    try:
        if argv:
            if len(argv) < 2:
                print("usage: python -m emulator.network.sysfs [NETNS /sys/PATH=VALUE ...] (or JSON on stdin)",
                      file=sys.stderr)
                return 2
            work = {argv[0]: dict(assignment.partition("=")[::2] for assignment in argv[1:])}
        else:
            work = json.load(sys.stdin)
        _write_all(work)
    except (OSError, ValueError, TestbedError) as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
