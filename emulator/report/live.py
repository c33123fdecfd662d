"""Live link statistics: `caspian stats --watch`.

Two counter snapshots (Testbed.stats(), FastPath.stats()) a second apart
give each link direction's rates: packets and bits per second in and out,
drops per second by reason, and the queue (packets awaiting the serializer)
and packets in flight at the later snapshot. `rates` is pure; `watch`
redraws a rich table in place until interrupted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

#: how often the table is redrawn (s)
INTERVAL_S = 1.0


@dataclass(frozen=True)
class DirectionRates:
    """One link direction between two snapshots `seconds` apart."""

    link: str
    sender: str
    receiver: str
    rx_pps: float
    tx_pps: float
    tx_bps: float
    drops_per_s: dict[str, float]
    queued: int
    in_flight: int
    cut: bool


def rates(before: dict[str, Any], after: dict[str, Any], seconds: float) -> list[DirectionRates]:
    """Per link direction, what changed from `before` to `after` per second."""
    seconds = max(seconds, 1e-9)
    out = []
    for name, entry in after.items():
        old = before.get(name)
        a, b = entry["ends"]
        for direction, (sender, receiver) in (("a_to_b", (a, b)), ("b_to_a", (b, a))):
            now = entry[direction]
            then = old[direction] if old else now

            def per_s(key: str) -> float:
                return max(0, now[key] - then[key]) / seconds

            drops = {reason: max(0, n - then["drops"].get(reason, 0)) / seconds for reason, n in now["drops"].items()}
            cut = entry.get("cut", False)
            out.append(DirectionRates(
                name, sender, receiver, per_s("rx_packets"), per_s("tx_packets"), per_s("tx_bytes") * 8,
                {reason: rate for reason, rate in drops.items() if rate > 0}, int(now.get("queued", 0)),
                int(now.get("in_flight", 0)), bool(cut.get(direction, False) if isinstance(cut, dict) else cut)))
    return out


def format_bps(bps: float) -> str:
    """`812 kbit/s`, `1.24 Gbit/s`."""
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.0f} bit/s"


def table(rows: list[DirectionRates], *, title: str = "caspian links, per second") -> Any:
    """A rich Table of the rows."""
    from rich.table import Table

    t = Table(title=title)
    for column, right in (("link", False), ("direction", False), ("in pps", True), ("out pps", True),
                          ("out rate", True), ("drops/s (reason)", False), ("queued", True), ("in flight", True)):
        t.add_column(column, justify="right" if right else "left")
    for r in rows:
        drops = ", ".join(f"{rate:.0f} {reason}" for reason, rate in sorted(r.drops_per_s.items())) or "0"
        t.add_row(r.link + (" [CUT]" if r.cut else ""), f"{r.sender}→{r.receiver}", f"{r.rx_pps:.0f}",
                  f"{r.tx_pps:.0f}", format_bps(r.tx_bps), drops, str(r.queued), str(r.in_flight))
    return t


def watch(read: Callable[[], dict[str, Any]], *, interval_s: float = INTERVAL_S,
          rounds: int | None = None, console: Any = None) -> int:
    """Redraw the table every `interval_s` from `read()` until Ctrl-C (or `rounds`
    redraws); the number of redraws."""
    import signal
    import threading

    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    # Ctrl-C and SIGTERM end the loop through a flag, never as an exception raised
    # inside rich's redraw (which holds a lock its refresh thread then waits for)
    leave = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: leave.set())
    before, then = read(), time.monotonic()
    drawn = 0
    try:
        with Live(table([]), console=console, refresh_per_second=4, transient=False) as live:
            while (rounds is None or drawn < rounds) and not leave.is_set():
                if leave.wait(max(0.0, then + interval_s - time.monotonic())):
                    break
                after, now = read(), time.monotonic()
                live.update(table(rates(before, after, now - then)))
                before, then = after, now
                drawn += 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return drawn
