"""Measuring the underlay between two machines: UDP echo round trips.

The agent of one machine answers echoes (`EchoResponder`) from the one
address the coordinator names and for a limited time, so it is no open
reflector; the agent of the other sends them one at a time
(`measure_round_trips`) and stamps each on its own monotonic clock, so no
two clocks are compared. emulator.model.underlay turns the round trips into
the underlay's one-way delay and spread.

Echoes go one at a time, not as a burst: the figure wanted is the delay an
emulated link's frames meet, not a queue the measurement built itself.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

from emulator.errors import InputError

#: seq (u32), then the sender's stamp (u64 ns), then padding to a small frame's size
_ECHO = struct.Struct("!IQ")
ECHO_BYTES = 64
#: How long one echo may take before it counts as lost: far over any underlay a link could be carried on
ECHO_TIMEOUT_S = 0.5
#: The most echoes one measurement sends (a bound on the time and on the responder's work)
MAX_ECHOES = 10_000
#: The longest a responder stays open
MAX_ANSWER_S = 600.0


@dataclass(frozen=True)
class RoundTrips:
    """The echoes of one measurement: each answered one's round trip (ns), and how many were lost."""

    rtts_ns: tuple[int, ...]
    lost: int


class EchoResponder:
    """Answers UDP echoes from `peer` (an IP address) at `host`, for `seconds`, on a thread of its own."""

    def __init__(self, host: str, peer: str, seconds: float) -> None:
        if not 0 < seconds <= MAX_ANSWER_S:
            raise InputError(f"an echo responder for {seconds} s", fix=f"give 0 to {MAX_ANSWER_S:.0f} s")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self.port: int = self._sock.getsockname()[1]
        self.peer = peer
        self.answered = 0
        self._deadline = time.monotonic() + seconds
        self._thread = threading.Thread(target=self._serve, name=f"echo-{self.port}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self._sock:
            while (left := self._deadline - time.monotonic()) > 0:
                self._sock.settimeout(left)
                try:
                    data, sender = self._sock.recvfrom(ECHO_BYTES)
                except (TimeoutError, socket.timeout):
                    return
                if sender[0] == self.peer and len(data) == ECHO_BYTES and self.answered < MAX_ECHOES:
                    self._sock.sendto(data, sender)
                    self.answered += 1

    def join(self, timeout: float | None = None) -> None:
        """Wait for the responder to close (its time is up)."""
        self._thread.join(timeout)


def measure_round_trips(address: tuple[str, int], count: int, source: str | None = None) -> RoundTrips:
    """Send `count` echoes to the responder at `address`, one at a time, from `source` (an address of this machine)."""
    if not 1 <= count <= MAX_ECHOES:
        raise InputError(f"{count} echoes", fix=f"send 1 to {MAX_ECHOES}")
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    rtts: list[int] = []
    lost = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if source:
            sock.bind((source, 0))
        sock.connect(address)
        sock.settimeout(ECHO_TIMEOUT_S)
        pad = bytes(ECHO_BYTES - _ECHO.size)
        for seq in range(count):
            sent = time.monotonic_ns()
            sock.send(_ECHO.pack(seq, sent) + pad)
            while True:
                try:
                    data = sock.recv(ECHO_BYTES)
                except (TimeoutError, socket.timeout):
                    lost += 1
                    break
                except ConnectionRefusedError:   # nothing listens there (yet, or any more)
                    lost += 1
                    time.sleep(ECHO_TIMEOUT_S)
                    break
                now = time.monotonic_ns()
                got_seq, stamp = _ECHO.unpack_from(data)
                if got_seq == seq and stamp == sent:
                    rtts.append(now - sent)
                    break
                # a late answer to an echo already counted lost: wait on for this one
    return RoundTrips(rtts_ns=tuple(rtts), lost=lost)
