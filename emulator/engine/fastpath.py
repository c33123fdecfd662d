"""`FastPath`: the compiled engine with link names, a loop thread and live control.

This runs inside the engine process (the wire namespace). It turns names and
`LinkParams` into the engine's indices and dicts, runs the loop in a thread
(the GIL is released there), and keeps the current parameters so that a
partial change (`link set X loss 1%`) edits what is in force.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from emulator import _engine
from emulator.engine.sockets import kernel_drops, open_link_end
from emulator.errors import EngineError, InputError
from emulator.model.linkparams import LinkParams

DIRECTIONS = ("a_to_b", "b_to_a")


@dataclass
class EngineOptions:
    """Tuning of the loop; the defaults are the measured ones (DESIGN.md)."""

    slots_per_direction: int = 4096
    batch: int = 64
    #: busy-poll this long before a deadline: a VM's timer wake-up is ~100 µs late
    spin_ns: int = 300_000
    #: sleep at least `doze_ns` in every `max_spin_ns` (7 %): a SCHED_FIFO
    #: thread that never sleeps is throttled by the kernel for tens of ms.
    #: Short naps delay few releases by little (bench: p99 lateness < 64 µs
    #: at 50 kpps, against < 256 µs with 70 µs naps per ms)
    max_spin_ns: int = 280_000
    doze_ns: int = 20_000
    #: CPU to pin the loop thread to; None = the last CPU when there are
    #: several, -1 = no pinning
    cpu: int | None = None
    #: SCHED_FIFO priority for the loop thread (0 = normal scheduling)
    realtime_priority: int = 10

    #: steer node-side receive processing (RPS) off the engine's CPU
    steer_receive: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineOptions":
        return cls(**data)

    def engine_cpu(self) -> int:
        """The CPU the loop thread will be pinned to, or -1 for none."""
        if self.cpu is not None:
            return self.cpu
        cpus = sorted(os.sched_getaffinity(0))
        return cpus[-1] if len(cpus) > 1 else -1

    def other_cpus(self) -> set[int]:
        """CPUs left for everything but the engine (node processes, receive stacks)."""
        engine = self.engine_cpu()
        cpus = set(os.sched_getaffinity(0))
        return cpus - {engine} if engine >= 0 and len(cpus) > 1 else cpus

    def receive_cpu_mask(self) -> str | None:
        """Hex CPU mask for node-side receive processing: every CPU but the engine's."""
        engine = self.engine_cpu()
        if not self.steer_receive or engine < 0:
            return None
        others = [cpu for cpu in os.sched_getaffinity(0) if cpu != engine]
        return format(sum(1 << cpu for cpu in others), "x") if others else None


@dataclass
class LinkSpec:
    """One link as the engine process needs it."""

    name: str
    a_node: str
    b_node: str
    a_ifname: str
    b_ifname: str
    max_frame: int
    a_to_b: LinkParams
    b_to_a: LinkParams
    seed_a_to_b: int
    seed_b_to_a: int

    def to_dict(self) -> dict[str, Any]:
        data = self.__dict__.copy()
        data["a_to_b"] = self.a_to_b.to_dict()
        data["b_to_a"] = self.b_to_a.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LinkSpec":
        fields = dict(data)
        fields["a_to_b"] = LinkParams.from_dict(fields["a_to_b"])
        fields["b_to_a"] = LinkParams.from_dict(fields["b_to_a"])
        return cls(**fields)


@dataclass
class _LinkState:
    spec: LinkSpec
    index: int
    sockets: tuple[Any, Any]
    params: list[LinkParams]
    cut: bool = False
    kernel_drops: list[int] = field(default_factory=lambda: [0, 0])


class FastPath:
    """All links of a testbed forwarded by one compiled engine loop."""

    def __init__(self, links: list[LinkSpec], options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self._engine = _engine.Engine(
            self.options.slots_per_direction, self.options.batch, self.options.spin_ns,
            self.options.max_spin_ns, self.options.doze_ns,
        )
        self._links: dict[str, _LinkState] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.scheduling: dict[str, Any] = {}
        try:
            for spec in links:
                ends = (open_link_end(spec.a_ifname), open_link_end(spec.b_ifname))
                index = self._engine.add_link(
                    ends[0].fileno(), ends[1].fileno(), spec.max_frame,
                    spec.a_to_b.to_engine(), spec.b_to_a.to_engine(),
                    spec.seed_a_to_b, spec.seed_b_to_a,
                )
                self._links[spec.name] = _LinkState(spec, index, ends, [spec.a_to_b, spec.b_to_a])
        except BaseException:
            self.close()
            raise

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a thread with real-time priority and a pinned CPU."""
        if self._thread is not None:
            raise EngineError("the engine is already running")
        self._thread = threading.Thread(target=self._run, name="caspian-engine", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._tune_thread()
        try:
            self._engine.run()
        except BaseException as exc:  # surfaced by stop()/check()
            self._error = exc

    def _tune_thread(self) -> None:
        # Both calls act on the calling thread only (pid 0) on Linux.
        cpu = self.options.engine_cpu()
        if cpu >= 0:
            try:
                os.sched_setaffinity(0, {cpu})
                self.scheduling["cpu"] = cpu
            except OSError as exc:
                self.scheduling["cpu_error"] = str(exc)
        if self.options.realtime_priority > 0:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.options.realtime_priority))
                self.scheduling["policy"] = f"SCHED_FIFO {self.options.realtime_priority}"
            except OSError as exc:
                self.scheduling["policy"] = f"normal (SCHED_FIFO refused: {exc.strerror})"
        else:
            self.scheduling["policy"] = "normal"

    def stop(self) -> None:
        """Stop the loop and wait for it; re-raises a loop failure."""
        if self._thread is not None:
            self._engine.stop()
            self._thread.join(timeout=5)
            self._thread = None
        self.check()

    def check(self) -> None:
        """Raise EngineError if the loop thread died."""
        if self._error is not None:
            raise EngineError(f"engine loop failed: {self._error!r}")

    def close(self) -> None:
        if self._thread is not None:
            self._engine.stop()
            self._thread.join(timeout=5)
            self._thread = None
        for link in self._links.values():
            for sock in link.sockets:
                sock.close()
        self._links.clear()

    # -- control ----------------------------------------------------------

    def link(self, name: str) -> _LinkState:
        try:
            return self._links[name]
        except KeyError:
            raise InputError(
                f"no link named {name!r}", fix=f"links are: {', '.join(self._links) or 'none'}"
            ) from None

    def _directions(self, link: _LinkState, direction: str) -> list[int]:
        if direction == "both":
            return [0, 1]
        if direction in DIRECTIONS:
            return [DIRECTIONS.index(direction)]
        # a node name: the direction whose frames that node sends
        if direction == link.spec.a_node:
            return [0]
        if direction == link.spec.b_node:
            return [1]
        raise InputError(
            f"link {link.spec.name} has no direction {direction!r}",
            fix=f"use both, a_to_b, b_to_a, {link.spec.a_node} or {link.spec.b_node}",
        )

    def set_params(self, name: str, params: LinkParams, direction: str = "both") -> None:
        """Replace the parameters of one or both directions; takes effect on the next packet."""
        link = self.link(name)
        with self._lock:
            for k in self._directions(link, direction):
                self._engine.set_params(2 * link.index + k, params.to_engine())
                link.params[k] = params

    def params(self, name: str, direction: str = "a_to_b") -> LinkParams:
        link = self.link(name)
        return link.params[self._directions(link, direction)[0]]

    def set_cut(self, name: str, cut: bool, direction: str = "both") -> None:
        """Cut or restore a link (both directions by default)."""
        link = self.link(name)
        with self._lock:
            for k in self._directions(link, direction):
                self._engine.set_outage(2 * link.index + k, cut)
            link.cut = cut

    def stats(self) -> dict[str, Any]:
        """Counters per link and direction, read at one consistent point."""
        self.check()
        with self._lock:
            raw = self._engine.stats()
            out: dict[str, Any] = {}
            for name, link in self._links.items():
                entry: dict[str, Any] = {
                    "ends": [link.spec.a_node, link.spec.b_node],
                    "cut": link.cut,
                }
                for k, label in enumerate(DIRECTIONS):
                    counters = dict(raw[2 * link.index + k])
                    # Frames the kernel dropped at the receiving socket before
                    # the engine saw them (receive buffer overrun): outside the
                    # rx/tx invariant, so reported on their own.
                    link.kernel_drops[k] += kernel_drops(link.sockets[k])
                    counters["kernel_drops"] = link.kernel_drops[k]
                    counters["params"] = link.params[k].describe()
                    entry[label] = counters
                out[name] = entry
            return out
