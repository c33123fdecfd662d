"""Turn SIGINT/SIGTERM/SIGHUP into an orderly teardown, and keep teardown whole.

The handler does not tear down itself (a signal handler may run between any
two bytecodes, even inside a half-finished netlink request). It raises in
the main thread instead, so the `finally` blocks and `__exit__` methods that
own the testbed run as for any other exception. Later signals during that
teardown are ignored: a second Ctrl-C must not leave half the namespaces
behind (SIGKILL still works, and `caspian down` cleans up after it).

A signal that arrives while teardown itself runs must not cut it short
either (it would raise half-way through removing the namespaces): code that
must finish runs `with shielded():`, which holds such a signal back and
delivers it, to whatever handler was in place, once the block is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(SystemExit):
    """SIGTERM or SIGHUP turned into an exception: exits with 128 + the signal's number.

    A SystemExit, so code that does not know it still unwinds through its
    `finally` blocks and exits as the signal would have; the command line
    catches it to print one line instead.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        """SIGTERM, SIGHUP ..."""
        return signal.Signals(self.signum).name


def install_teardown_handlers(callback: Callable[[int], None] | None = None) -> Callable[[], None]:
    """Install the handlers; return a function that puts the previous ones back.

    On the first signal `callback(signum)` runs (keep it short and safe, e.g.
    ask the engine to stop), then SIGINT raises KeyboardInterrupt and the
    others Terminated (a SystemExit(128 + signum)). Must be called from the
    main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_teardown_handlers must be called from the main thread")
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            print(f"caspian: {signal.Signals(signum).name} ignored while tearing down", file=sys.stderr)
            return
        fired = True
        if callback is not None:
            callback(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    for sig in SIGNALS:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    return restore


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Run the body with SIGINT/SIGTERM/SIGHUP held back; deliver them after it.

    For teardown: a signal during it would otherwise raise in the middle of
    removing the run's objects. The first signal that arrives is delivered
    when the body ends, to the handler that was in place (ours raise
    KeyboardInterrupt or Terminated; the default action of SIGTERM ends the
    process, as it would have), also when the body raised. Outside the main
    thread (where Python runs no handlers) the body just runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if not held:
            held.append(signum)

    previous: dict[int, Any] = {}
    try:
        for sig in SIGNALS:
            previous[sig] = signal.signal(sig, hold)
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old if old is not None else signal.SIG_DFL)
        if held:
            # also after an exception of the body: the signal still means "stop"
            # (what the handler raises carries the body's exception as context)
            _deliver(held[0], previous.get(held[0]))


def _deliver(signum: int, handler: Any) -> None:
    """Hand a held signal to `handler` as the kernel would have."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # the default action (SIGINT's default in Python is callable)
