"""Routing events with timestamps while a scenario runs.

`RouteWatcher` opens, per router, an rtnetlink socket bound to the IPv4 and
IPv6 route multicast groups inside the router's namespace and reads it in a
thread (a plain AF_NETLINK socket whose messages pyroute2's rtnetlink
marshal parses: pyroute2 0.9's IPRoute delivers nothing to a reader in
another thread than the one that made it). Every change of a main-table route becomes a `RouteEvent` stamped
with `time.time_ns()` on receipt (CLOCK_REALTIME, the clock of the engine
and the probes). `bird_log_events` reads BFD, OSPF neighbour and BGP
session state changes from a BIRD log written with millisecond timestamps;
`frr_log_events` reads BFD peer and OSPF adjacency changes from FRR's bfdd
and ospfd logs (microsecond timestamps).
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from emulator.network import kernel

#: the kernel's main routing table
MAIN_TABLE = 254
#: how often the reader threads look at their stop flag
POLL_S = 0.2
#: receive buffer of each watcher socket: a full table's worth of changes without ENOBUFS
RCVBUF_BYTES = 4 << 20


@dataclass(frozen=True)
class RouteEvent:
    """A route of `router`'s main kernel table changed at `t_ns` (CLOCK_REALTIME).

    `action` is "add" (a new route or a replaced one: the kernel reports both
    as RTM_NEWROUTE) or "del".
    """

    t_ns: int
    router: str
    prefix: str
    action: str
    gateway: str | None = None
    dev: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"t_ns": self.t_ns, "router": self.router, "prefix": self.prefix, "action": self.action,
                "gateway": self.gateway, "dev": self.dev}


@dataclass(frozen=True)
class StateEvent:
    """A protocol state change a daemon logged.

    `kind` "bfd" (peer: the session's address), "ospf" (peer: the neighbour's
    router id) or "bgp" (peer: BIRD's protocol name); `state` the new state,
    lower case ("down", "full", "up", "established", "stop" ...).
    """

    t_ns: int
    router: str
    kind: str
    peer: str
    state: str


def route_event(message: Any, router: str, t_ns: int, names: dict[int, str]) -> RouteEvent | None:
    """A RouteEvent from one rtnetlink message, or None for other tables/messages."""
    event = message.get("event") if hasattr(message, "get") else None
    if event not in ("RTM_NEWROUTE", "RTM_DELROUTE"):
        return None
    table = message.get_attr("RTA_TABLE") or message["table"]
    if table != MAIN_TABLE:
        return None
    dst = message.get_attr("RTA_DST")
    if dst is None:
        dst = "0.0.0.0" if message["family"] == 2 else "::"
    oif = message.get_attr("RTA_OIF")
    return RouteEvent(t_ns, router, f"{dst}/{message['dst_len']}", "add" if event == "RTM_NEWROUTE" else "del",
                      message.get_attr("RTA_GATEWAY"), names.get(oif) if oif else None)


class RouteWatcher:
    """Kernel route changes in a set of namespaces, recorded until `stop()`."""

    def __init__(self, namespaces: dict[str, str]) -> None:
        """`namespaces`: router name -> its network namespace."""
        self.namespaces = dict(namespaces)
        self.events: list[RouteEvent] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def start(self) -> "RouteWatcher":
        try:
            for router, netns in self.namespaces.items():
                with kernel.in_netns(netns):
                    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
                    ipr = IPRoute()
                self._sockets.append(sock)
                try:
                    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
                finally:
                    ipr.close()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
                sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
                thread = threading.Thread(target=self._read, args=(router, sock, names), daemon=True,
                                          name=f"routes-{router}")
                self._threads.append(thread)
                thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self, router: str, sock: socket.socket, names: dict[int, str]) -> None:
        marshal = MarshalRtnl()
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([sock], [], [], POLL_S)
                if not ready:
                    continue
                data = sock.recv(1 << 20)
                t_ns = time.time_ns()
                found = [e for e in (route_event(m, router, t_ns, names) for m in marshal.parse(data))
                         if e is not None]
                if found:
                    with self._lock:
                        self.events.extend(found)
        except Exception as exc:  # noqa: BLE001 - a reader that dies says so in the report
            if not self._stop.is_set():
                self.errors.append(f"route watcher of {router}: {exc}")

    def stop(self) -> list[RouteEvent]:
        """Stop reading, close the sockets; the events in time order."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * POLL_S + 1)
        for sock in self._sockets:
            sock.close()
        self._threads, self._sockets = [], []
        with self._lock:
            return sorted(self.events, key=lambda e: e.t_ns)


# ---------------------------------------------------------------------------
# BIRD's log

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) <(\w+)> (.*)$")
_BFD_STATE = re.compile(r"Session to (\S+) (?:on \S+ )?(?:changed state from \S+ to|is) (\w+)", re.I)
_OSPF_STATE = re.compile(r"Neighbor (\S+) on (\S+) changed state from \S+ to (\S+)", re.I)
#: a BGP protocol's state (BIRD names the testbed's sessions bgp_<link>)
_BGP_STATE = re.compile(r"^(bgp_\w+): State changed to (\w+)", re.I)


def _log_time_ns(stamp: str) -> int:
    """A log time stamp (local time, `%F %T` with an optional fraction) as CLOCK_REALTIME ns."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in stamp else "%Y-%m-%d %H:%M:%S"
    when = datetime.strptime(stamp, fmt)
    # whole seconds through the float timestamp, the fraction exactly (a float of ns would round)
    return int(when.replace(microsecond=0).timestamp()) * 1_000_000_000 + when.microsecond * 1000


def bird_log_events(text: str, router: str) -> list[StateEvent]:
    """BFD session, OSPF neighbour and BGP session state changes in a BIRD log (lines as BIRD writes them).

    BIRD writes them with `debug { states, events }` (emulator.routing.bird).
    """
    found = []
    for line in text.splitlines():
        match = _LOG_LINE.match(line.strip())
        if not match:
            continue
        stamp, _level, message = match.groups()
        bfd = _BFD_STATE.search(message)
        if bfd:
            found.append(StateEvent(_log_time_ns(stamp), router, "bfd", bfd.group(1), bfd.group(2).lower()))
            continue
        ospf = _OSPF_STATE.search(message)
        if ospf:
            found.append(StateEvent(_log_time_ns(stamp), router, "ospf", ospf.group(1), ospf.group(3).lower()))
            continue
        bgp = _BGP_STATE.search(message)
        if bgp:
            found.append(StateEvent(_log_time_ns(stamp), router, "bgp", bgp.group(1), bgp.group(2).lower()))
    return found


# ---------------------------------------------------------------------------
# FRR's logs (bfdd with `debug bfd peer`, ospfd with `log-adjacency-changes detail`)

_FRR_LINE = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\w+): \[\S+\] (.*)$")
_FRR_BFD = re.compile(r"state-change: \[.*?\bpeer:(\S+) .*?\] (\S+) -> (\S+)")
_FRR_OSPF = re.compile(r"AdjChg: Nbr (\S+?),.*: (\S+) -> (\S+) \(")


def frr_log_events(text: str, router: str) -> list[StateEvent]:
    """BFD peer and OSPF adjacency state changes in FRR's bfdd/ospfd logs (`log timestamp precision 6`).

    An OSPF neighbour that BFD took down is logged `Full -> Deleted`: its state is "deleted".
    """
    found = []
    for line in text.splitlines():
        match = _FRR_LINE.match(line.strip())
        if not match:
            continue
        stamp, daemon, message = match.groups()
        when = _log_time_ns(stamp.replace("/", "-"))
        bfd = _FRR_BFD.search(message) if daemon == "BFD" else None
        if bfd:
            found.append(StateEvent(when, router, "bfd", bfd.group(1), bfd.group(3).lower()))
            continue
        ospf = _FRR_OSPF.search(message) if daemon == "OSPF" else None
        if ospf:
            found.append(StateEvent(when, router, "ospf", ospf.group(1), ospf.group(3).lower()))
    return found
