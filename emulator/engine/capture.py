"""Packet capture of emulated links into pcapng, with emulated timestamps.

Each captured link direction gets two pcapng interfaces: `in`, where every
frame is recorded at its kernel arrival stamp as it enters the emulated link
(or once, with a comment naming the drop reason, when the link drops it), and
`out`, where it is recorded at its emulated release time as it leaves. So
Wireshark shows each frame twice, and the difference of the two stamps is the
delay the link gave it.

The engine's loop writes finished Enhanced Packet Blocks into a byte ring
per shard (cext/capture.pxi) and never waits for the reader: what does not
fit is counted as lost. A `CaptureWriter` thread drains the rings into the
file every DRAIN_S; the file opens with a Section Header Block and one
Interface Description Block per interface (pcapng: draft-ietf-opsawg-pcapng,
§4.1 and §4.2), in host byte order as the engine writes its blocks.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

#: pcapng block types and options (draft-ietf-opsawg-pcapng §4, §3.5)
SHB_TYPE, IDB_TYPE, EPB_TYPE = 0x0A0D0D0A, 1, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1
OPT_END, OPT_COMMENT = 0, 1
SHB_USERAPPL = 4
IF_NAME, IF_DESCRIPTION, IF_TSRESOL = 2, 3, 9
#: the engine stamps in ns: if_tsresol 9 = 10^-9 s
TSRESOL_NS = 9
#: the ring per shard (bytes, a power of two): at 1 Gbit/s of 1514-byte frames,
#: in and out, 16 MiB holds ~100 ms of traffic between drains
RING_BYTES = 1 << 24
#: frame bytes kept by default: every header of a TCP/IPv6 frame with options (86 B)
#: and a whole caspian probe (126 B over IPv6). Whole frames cost more than the
#: 5 % the issue allows at 1 Gbit/s on 2 vCPUs (bench, 2026-12-02: TCP 0.86x with
#: whole frames, 0.96x with 128 bytes, capture on vs off): the file's bandwidth
#: competes with the nodes' stacks. `snaplen 0` (tcpdump -s 0) keeps whole frames.
DEFAULT_SNAPLEN = 128
#: the most a frame can be (snaplen 0 = whole frames)
WHOLE_FRAMES = 65535
#: how often the writer drains the rings
DRAIN_S = 0.02


@dataclass(frozen=True)
class CaptureTarget:
    """One captured link direction: `sender` -> `receiver` over `link`; its `in`
    interface is `interface`, its `out` interface `interface + 1`."""

    link: str
    direction: str          # a_to_b | b_to_a
    sender: str
    receiver: str
    interface: int

    def names(self) -> list[tuple[str, str]]:
        """(if_name, if_description) of its in and out interfaces."""
        where = f"{self.link} {self.sender}>{self.receiver}"
        return [(f"{where} in", f"frames from {self.sender} entering link {self.link} toward {self.receiver}, "
                                f"at their kernel arrival stamp; drops recorded here with their reason"),
                (f"{where} out", f"frames leaving link {self.link} toward {self.receiver}, "
                                 f"at their emulated release time")]


def _option(code: int, value: bytes) -> bytes:
    padded = value + b"\0" * (-len(value) % 4)
    return struct.pack("=HH", code, len(value)) + padded


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("=II", kind, total) + body + struct.pack("=I", total)


def file_header(targets: list[CaptureTarget], snaplen: int, application: str) -> bytes:
    """The Section Header Block and an Interface Description Block per interface, in interface order."""
    shb = struct.pack("=IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _option(SHB_USERAPPL, application.encode()) \
        + _option(OPT_END, b"")
    blocks = [_block(SHB_TYPE, shb)]
    for target in sorted(targets, key=lambda t: t.interface):
        for name, description in target.names():
            body = struct.pack("=HHI", LINKTYPE_ETHERNET, 0, snaplen) + _option(IF_NAME, name.encode()) \
                + _option(IF_DESCRIPTION, description.encode()) + _option(IF_TSRESOL, bytes([TSRESOL_NS])) \
                + _option(OPT_END, b"")
            blocks.append(_block(IDB_TYPE, body))
    return b"".join(blocks)


def split_blocks(data: bytes, limit: int | None = None) -> tuple[int, int]:
    """How many whole blocks `data` holds (at most `limit`) and how many bytes they take."""
    count, offset = 0, 0
    while offset + 8 <= len(data) and (limit is None or count < limit):
        (total,) = struct.unpack_from("=I", data, offset + 4)
        if total < 12 or offset + total > len(data):
            break
        offset += total
        count += 1
    return count, offset


class CaptureWriter:
    """Drains the engines' capture rings into pcapng files until stopped or
    `count` frames are written (a frame = a block: in, out or drop).

    `files`: path -> the targets recorded in it. The engine numbers interfaces
    across all targets (CaptureTarget.interface); each file numbers its own
    from 0, so blocks bound for a file other than the first are renumbered on
    the way (one file with its targets in order needs no renumbering: the
    blocks are written as drained). `drain`: a function returning each shard's
    new bytes; `stop_engines`: called once to stop the engines writing (before
    the last drain); `status`: each shard's ring status ({"blocks", "lost"}).
    Every file is complete whenever the writer stops: whole blocks only,
    flushed at the end.
    """

    def __init__(self, files: dict[str, list[CaptureTarget]], drain: Callable[[], list[bytes]],
                 stop_engines: Callable[[], None], status: Callable[[], list[dict[str, Any]]], *,
                 count: int | None = None, snaplen: int = DEFAULT_SNAPLEN, application: str = "caspian",
                 cpus: set[int] | None = None) -> None:
        self.files = files
        self._cpus = cpus     # where the writer may run: off the engine's loops
        self.targets = [t for targets in files.values() for t in targets]
        self.count = count
        self._drain = drain
        self._stop_engines = stop_engines
        self._status = status
        self._start_status = status()
        self._route: dict[int, tuple[BinaryIO, int]] = {}
        self._handles: list[BinaryIO] = []
        self.frames_by_file: dict[str, int] = {}
        try:
            for path, targets in files.items():
                handle: BinaryIO = open(path, "wb")
                self._handles.append(handle)
                handle.write(file_header(targets, snaplen, application))
                self.frames_by_file[path] = 0
                local = 0
                for target in sorted(targets, key=lambda t: t.interface):
                    for offset in (0, 1):
                        self._route[target.interface + offset] = (handle, local)
                        local += 1
        except OSError:
            for handle in self._handles:
                handle.close()
            raise
        self._paths = {id(h): p for h, p in zip(self._handles, files)}
        self._verbatim = len(files) == 1 and all(g == l for g, (_, l) in self._route.items())
        self.frames = 0
        self._stopping = threading.Event()
        self.done = threading.Event()      # set when the files are complete and closed
        self._thread = threading.Thread(target=self._run, name="caspian-capture", daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        """The (first) file written."""
        return next(iter(self.files))

    def _write(self, chunks: list[bytes]) -> bool:
        """Write whole blocks; True when the count is reached."""
        for data in chunks:
            limit = None if self.count is None else self.count - self.frames
            if self._verbatim:
                blocks, length = split_blocks(data, limit)
                self._handles[0].write(memoryview(data)[:length])
                self.frames += blocks
                self.frames_by_file[self.path] += blocks
            else:
                self._write_routed(data, limit)
            if self.count is not None and self.frames >= self.count:
                return True
        return False

    def _write_routed(self, data: bytes, limit: int | None) -> None:
        """Each block to its file, with the interface id that file gives it."""
        offset = 0
        view = memoryview(data)
        while offset + 12 <= len(data) and (limit is None or limit > 0):
            total, interface = struct.unpack_from("=II", data, offset + 4)
            if total < 12 or offset + total > len(data):
                break
            handle, local = self._route[interface]
            block = bytearray(view[offset:offset + total])
            struct.pack_into("=I", block, 8, local)
            handle.write(block)
            self.frames += 1
            self.frames_by_file[self._paths[id(handle)]] += 1
            offset += total
            if limit is not None:
                limit -= 1

    def _run(self) -> None:
        try:
            # the thread that started it may be real-time (the engine's control
            # thread): draining is background work and must not compete with it
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            if self._cpus:
                os.sched_setaffinity(0, self._cpus)
        except OSError:
            pass
        try:
            full = False
            while not self._stopping.wait(DRAIN_S) and not full:
                full = self._write(self._drain())
            self._stop_engines()
            if not full:
                self._write(self._drain())
        finally:
            for handle in self._handles:
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
            self.done.set()

    def stop(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Stop (idempotent), wait for the files to be complete; the capture's summary."""
        self._stopping.set()
        self._thread.join(timeout_s)
        now = self._status()
        lost = sum(n.get("lost", 0) - s.get("lost", 0) for n, s in zip(now, self._start_status))
        return {"path": self.path, "files": dict(self.frames_by_file), "frames": self.frames, "lost": lost,
                "complete": self.done.is_set(), "interfaces": [name for t in self.targets for name, _ in t.names()]}

    @property
    def finished(self) -> bool:
        """The count was reached (or the writer stopped)."""
        return self.done.is_set()
