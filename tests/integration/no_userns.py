"""Run a command where user namespaces are forbidden, without touching the host's setting.

`python no_userns.py CMD ARGS...` (as root): a child enters a user namespace of
its own with uids and gids 0..65535 mapped to themselves, sets that
namespace's `user.max_user_namespaces` to 0 (the sysctl is per user
namespace, so the host's stays as it is) and execs CMD, which then runs as a
host would that forbids unprivileged user namespaces: unshare(CLONE_NEWUSER)
fails with ENOSPC. Exits with CMD's exit code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from emulator.network import kernel  # noqa: E402


def main(argv: list[str]) -> int:
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_write)
        os.close(ready_read)
        kernel.unshare(kernel.CLONE_NEWUSER)
        os.write(ready_write, b"u")
        os.close(ready_write)
        os.read(go_read, 1)                       # the parent has written the id maps
        with open("/proc/sys/user/max_user_namespaces", "w", encoding="ascii") as fh:
            fh.write("0")
        os.execvp(argv[0], argv)
    os.close(go_read)
    os.close(ready_write)
    os.read(ready_read, 1)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w", encoding="ascii") as fh:
            fh.write("0 0 65536\n")
    os.write(go_write, b"g")
    os.close(go_write)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
