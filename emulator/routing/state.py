"""What a routing daemon reports about its protocols, in records both daemon families share.

BIRD's parsers read birdc's text (`emulator.routing.bird_daemons`), FRR's read
vtysh's JSON (`emulator.routing.frr_daemons`); both return these records, so
a test or a convergence check reads a neighbour, a BFD session or a route the
same way whichever daemon runs. `KernelRoute` is the kernel's own view
(`emulator.routing.daemons.read_kernel_route`).

Every record also answers `record["field"]`: the readers returned plain dicts
before, and operators' scenario tests (examples/, docs/routing.md) index them
so. `to_dict()` gives that dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class _Record:
    """Read access by field name (`record["state"]`) and a plain-dict copy; the records' base, no fields."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        """The field names, in declaration order (so `dict(record)` works)."""
        return tuple(f.name for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        """The record as the dict the state readers used to return."""
        return asdict(self)


@dataclass(frozen=True)
class OspfNeighbour(_Record):
    """An OSPF neighbour of a router.

    `state` is the daemon's word without the role (`Full`, `Init`, ...);
    `dead_s` the seconds left on its dead timer (None when not shown).
    """

    router_id: str
    priority: int
    state: str
    dead_s: float | None
    interface: str
    address: str | None


@dataclass(frozen=True)
class BfdSession(_Record):
    """A BFD session of a router, `state` spelt as BIRD does (`Up`, `Down`, `Init`, `AdminDown`).

    `interval_s` and `timeout_s` are None when the daemon does not report
    them; `since` is BIRD's time of the last change (FRR reports none).
    """

    address: str | None
    interface: str | None
    state: str
    interval_s: float | None
    timeout_s: float | None
    since: str | None = None


@dataclass(frozen=True)
class Protocol(_Record):
    """One line of BIRD's `show protocols` (`info`: BGP's `Established`, ...)."""

    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str


@dataclass(frozen=True)
class BgpSession(Protocol):
    """A BGP session of a router: its protocol's line and the topology link it runs on.

    `info` starts with `Established` when the session is up.
    """

    link: str


@dataclass(frozen=True)
class Route(_Record):
    """A route in a daemon's own table (`best`: the one it selected for the prefix)."""

    prefix: str
    protocol: str | None
    via: str | None
    dev: str | None
    best: bool


@dataclass(frozen=True)
class KernelRoute(_Record):
    """The kernel's route for one prefix in a node's main table.

    `protocol` is the rtnetlink protocol number (12 = BIRD, 4 = static).
    """

    prefix: str
    gateway: str | None
    dev: str | None
    protocol: int
