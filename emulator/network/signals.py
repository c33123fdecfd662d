"""Turn SIGINT/SIGTERM/SIGHUP into an orderly teardown.

The handler does not tear down itself (a signal handler may run between any
two bytecodes, even inside a half-finished netlink request). It raises in
the main thread instead, so the `finally` blocks and `__exit__` methods that
own the testbed run as for any other exception. Later signals during that
teardown are ignored: a second Ctrl-C must not leave half the namespaces
behind (SIGKILL still works, and `caspian down` cleans up after it).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def install_teardown_handlers(callback: Callable[[int], None] | None = None) -> Callable[[], None]:
    """Install the handlers; return a function that puts the previous ones back.

    On the first signal `callback(signum)` runs (keep it short and safe, e.g.
    ask the engine to stop), then SIGINT raises KeyboardInterrupt and the
    others SystemExit(128 + signum). Must be called from the main thread.
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
        raise SystemExit(128 + signum)

    for sig in SIGNALS:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    return restore
