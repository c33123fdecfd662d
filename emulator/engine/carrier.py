"""Loss of carrier on a link: its interfaces taken down, and a timeline of such changes.

A silent cut drops frames and leaves both ends up, so the routing daemons
must notice by BFD or hellos. A carrier cut is what a transponder losing
light looks like: the interface goes oper-down (NO-CARRIER) and the daemons
hear of it from netlink at once (containerlab #2398, ipmininet PR #90). The
engine process lives in the wire namespace, where the far side of each
node's veth is: setting that end down takes the node's interface's carrier
away, setting it up brings it back. Nothing inside the nodes is touched.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import threading
import time
from typing import Callable

from emulator.errors import EngineError

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
#: struct ifreq: 16-byte name, then a short of flags in the union (40 bytes in all)
_IFREQ = "16sh22x"
#: wake this long before a step and wait out the rest in short sleeps: a plain
#: sleep on these VMs wakes ~0.1-1 ms late, the short ones keep the error small
_EARLY_NS = 2_000_000
_STEP_S = 0.0002


def set_carrier(sock: socket.socket, ifname: str, *, up: bool) -> None:
    """Set `ifname` (in `sock`'s namespace) administratively up or down."""
    try:
        raw = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, struct.pack(_IFREQ, ifname.encode(), 0))
        flags = struct.unpack(_IFREQ, raw)[1]
        flags = (flags | IFF_UP) if up else (flags & ~IFF_UP)
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ, ifname.encode(), flags))
    except OSError as exc:
        raise EngineError(f"cannot take {ifname} {'up' if up else 'down'}: {exc.strerror}") from exc


class CarrierTimeline:
    """Carries out (at_ns, link, up, tag) steps at their instants in a thread of its own.

    `apply(link, up)` makes the change and returns when it was done (ns);
    `applied()` maps each step's tag to that time.
    """

    def __init__(self, steps: list[tuple[int, str, bool, int]], apply: Callable[[str, bool], int]) -> None:
        self._steps = sorted(steps)
        self._apply = apply
        self._done: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="caspian-carrier", daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Carry out nothing more; waits for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def applied(self) -> dict[int, int]:
        return dict(self._done)

    def _run(self) -> None:
        for at_ns, link, up, tag in self._steps:
            while True:
                left = at_ns - time.time_ns()
                if left <= 0:
                    break
                if self._stop.wait(max(_STEP_S, (left - _EARLY_NS) / 1e9) if left > _EARLY_NS else _STEP_S):
                    return
            try:
                self._done[tag] = self._apply(link, up)
            except EngineError as exc:
                self.errors.append(str(exc))
