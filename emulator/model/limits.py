"""What a run can play: the engine's ranges and the bounds on reading input, in one table.

Every bound a scenario's values must respect lives here, each with the reason
it has the value it has: the C types of the engine's parameters
(`cext/params.pxi`: int64 ns, int64 bit/s, doubles for probabilities), the
daemons' own configuration ranges (BIRD 2, FRR's bfdd), the tools a run drives
(iperf3), and the work a run or the loader can do in bounded time and memory.
The loader (`emulator.scenario.loader`) checks every value of a file against
this table, and `LinkParams` checks every link direction against it, so netem
words (`caspian link set`, `netem:` fields, `set` events) meet the same bounds
as the YAML fields. The engine side (`emulator/engine/fastpath.py`,
`cext/params.pxi`) must take its ranges from this same table rather than
restate a number, so that what `caspian validate` accepts is exactly what the
engine runs: a bound changed here changes both.

`read_bounded` applies the input-size bounds to a file: only a regular file,
opened so that a FIFO swapped in cannot block, and never more than its cap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from emulator.errors import InputError

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

# ---------------------------------------------------------------------------
# Engine: times (cext/params.pxi keeps delay and jitter as int64_t ns)

#: The engine clock is CLOCK_REALTIME in int64 ns: about 1.8e18 today, 2**62
#: (4.6e18) in the year 2116, 2**63 - 1 (9.2e18) in 2262. A release instant is
#: arrival + delay + a jitter sample, so delay + the largest jitter sample must
#: stay far below 2**63 - 2**62.
ENGINE_CLOCK_NS_MAX = 2**63 - 1

#: One hour: far beyond any real link (a geostationary hop is 0.27 s) and, with
#: JITTER_TAIL_MAX below, at most 9e17 ns added to an arrival stamp: a margin of
#: 5x to the int64 clock until 2116.
MAX_DELAY_NS = 3600 * NS_PER_S
MAX_JITTER_NS = 3600 * NS_PER_S

#: The largest |sample| the engine's jitter distributions can draw, in units of
#: `jitter` (cext/direction.pxi jitter_standard): Pareto(alpha=3) from a 53-bit
#: uniform reaches 1.155 * (2**53) ** (1/3) = 2.4e5; Box-Muller normals stay
#: under 9. Used only to show the margin above holds (tests/unit/test_loader_contract.py).
JITTER_TAIL_MAX = 250_000

# ---------------------------------------------------------------------------
# Engine: rate and queue (int64_t rate_bps, overhead_bytes, limit_packets, limit_bytes)

#: Unlimited is 0. Below 1 kbit/s one 1500-byte frame takes 12 s to serialize and a
#: full 4096-slot pool's departure times run days ahead; 1 kbit/s keeps every
#: departure instant within 2.2e15 ns of now for any pool size the engine allocates.
MIN_RATE_BPS = 1_000
#: 10 Tbit/s: above anything AF_PACKET moves (a higher cap is "unlimited": write no
#: rate), and wire_bytes * 8e9 / rate stays exact in int64.
MAX_RATE_BPS = 10**13
#: Per-frame wire overhead: preamble, IFG and FCS are 24 B; 1000 B covers any
#: encapsulation stack and keeps wire_bytes * 8e9 far inside int64.
MAX_OVERHEAD_BYTES = 1000
#: Queue limits: tc's u32 (netem `limit`, bfifo's byte limit).
MAX_LIMIT_PACKETS = 2**32 - 1
MAX_LIMIT_BYTES = 2**32 - 1
#: Per-direction PRNG seeds and the run's seed: the engine's uint64_t.
MAX_SEED = 2**64 - 1

#: Probabilities (loss, duplicate, corrupt, reorder, correlation) are doubles in
#: 0..1, written 0%..100%. 100% is accepted for every one: the engine draws each
#: frame's fate independently, duplicates a frame at most once (the copy is not
#: itself duplicated), so `duplicate 100%` doubles the frames and `corrupt 100%`
#: flips a bit in each: runnable, if rarely meant.
PERCENT_MAX = 100

# ---------------------------------------------------------------------------
# Engine: capacity traces (int64_t *trace_ns, int trace_len; trace_ms * 1e6 in int64)

#: The period (last time) of a Mahimahi trace: one hour, as the delay bound, so
#: trace_ms * 1e6 and base + periods * period stay far inside int64.
MAX_TRACE_PERIOD_MS = 3600 * 1000
#: Delivery opportunities in one trace: 2 million is 2 s of 12 Gbit/s, or an hour of
#: 6.7 Mbit/s, at 16 MB of engine memory per direction (int64 each).
MAX_TRACE_OPPORTUNITIES = 2_000_000
#: A trace file's size: 2 million lines of up to 7 digits and a newline.
MAX_TRACE_BYTES = 16 * 2**20

# ---------------------------------------------------------------------------
# The run: its length, its timeline, its probes

#: iperf3 refuses a test longer than 86400 s (its MAX_TIME, src/iperf.h), and
#: tcp and udp streams may last the whole run.
MAX_DURATION_NS = 86_400 * NS_PER_S

#: The shortest down (or up) half of a flap. The engine judges each frame by its
#: arrival stamp, so a step's effect is exact at any spacing; what a step costs is
#: a wake of the loop: each step's instant is a deadline in the loop's timer queue
#: (cext/engine.pyx direction_deadline), and the loop wakes for it, applies it and
#: records when (schedule_apply_due), one ppoll round of some 10-20 us on this
#: 2-core host. A half of 1 ms keeps that under 2 % of the loop's time however
#: long the flap runs, and is the interval of the default probe stream (1000 pps),
#: so every down half is seen by at least one probe and reported per step.
MIN_FLAP_HALF_NS = 1 * NS_PER_MS
#: A carrier flap also takes both ends' interfaces down and up from a control
#: thread (an ioctl that takes the kernel's RTNL lock and may wait for an RCU
#: grace period, ~1 ms; docs/scenario.md), and the daemons must read each
#: netlink event: 10 ms keeps those in order behind one another.
MIN_CARRIER_FLAP_HALF_NS = 10 * NS_PER_MS
#: Cycles of one flap (the file's own bound; the steps cap below binds first).
MAX_FLAP_COUNT = 1_000_000
#: Timeline steps in one run, a flap counting 2 per cycle. Each step is an Event,
#: a scheduled change per direction in the engine and a line of report.json's
#: `timeline`; 10 000 keeps those to a few MB and the hand-over to the engine
#: (the whole timeline before the start) well under a second.
MAX_TIMELINE_STEPS = 10_000

#: Probes one probe stream may send (rate x its time): the engine's taps keep two
#: 20-byte entries per probe per tapped direction (C int capacity) and the analysis
#: holds each record as Python integers (~250 B): 2 million probes is ~0.5 GB.
MAX_PROBE_PACKETS = 2_000_000

# ---------------------------------------------------------------------------
# Routing daemons: BFD timers (the loader writes them into each daemon's config)

#: BFD interval (transmit = receive) per daemon, ns.
#: - FRR bfdd: `transmit-interval (10-60000)` / `receive-interval (10-60000)`,
#:   whole milliseconds (bfdd/bfdd_cli.c, doc/user/bfd.rst).
#: - BIRD 2: `min rx/tx interval` is any u32 of microseconds (proto/bfd/bfd.h
#:   `u32 min_rx_int`; `bird -p` of BIRD 2.0.12 accepts 1 us and 4295 s alike),
#:   so 4294.967295 s is the most that does not wrap. BIRD sets no floor, but its
#:   BFD thread re-arms the TX timer at 75-90 % of the interval
#:   (bfd_session_update_tx_interval): at 1 us every session would send a packet
#:   per microsecond, more than a 2-core testbed has, and the run ends with BIRD's
#:   own error. 1 ms (1000 packets/s per session) is the floor here.
BFD_INTERVAL_NS: dict[str, tuple[int, int]] = {
    "bird": (1 * NS_PER_MS, (2**32 - 1) * 1000),
    "frr": (10 * NS_PER_MS, 60_000 * NS_PER_MS),
}
#: The unit each daemon counts BFD intervals in (an interval must be whole units), ns.
BFD_INTERVAL_UNIT_NS: dict[str, int] = {"bird": 1000, "frr": NS_PER_MS}
#: BFD detect multiplier: RFC 5880's 8 bits, not 0 (BIRD's `multiplier`); FRR's
#: bfdd takes `detect-multiplier (2-255)` (bfdd/bfdd_cli.c).
BFD_MULTIPLIER: dict[str, tuple[int, int]] = {"bird": (1, 255), "frr": (2, 255)}

# ---------------------------------------------------------------------------
# Reading input: bounded files, bounded YAML

#: A scenario or topology file: the shipped ones are under 10 kB; 1 MiB is a
#: topology of ~20 000 links, which the loader reads in a few seconds.
MAX_SCENARIO_BYTES = 2**20
#: Nesting of YAML collections (through aliases too): the loader's deepest field is
#: 5 levels down (links.NAME.a_to_b.FIELD); 32 leaves room and stays far from
#: anything recursive.
MAX_YAML_DEPTH = 32
#: Nodes reached through aliases, each aliased subtree counted whole every time it
#: is used: anchors for shared link settings stay far below, a "billion laughs"
#: (an alias of an alias of ... expanding exponentially) goes far above.
MAX_YAML_ALIAS_NODES = 100_000
#: Digits of a YAML integer: the widest field is a 64-bit seed (20 digits).
MAX_NUMBER_DIGITS = 40
#: Characters of a quantity with a unit (`1.91ms`, `100mbit`): ample for any
#: real value, and bounds the Decimal arithmetic.
MAX_QUANTITY_CHARS = 64


def _kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bounded(path: str | Path, *, max_bytes: int, what: str) -> bytes:
    """The bytes of the regular file at `path`, at most `max_bytes` of them.

    Refuses (InputError naming `what` and the path) a path with a NUL byte, a
    missing file, anything but a regular file (a FIFO would block, /dev/zero
    would never end) and a file over `max_bytes`. The type is checked before
    opening and again on the open descriptor, which is opened non-blocking, so
    a FIFO swapped in between cannot block the read either.
    """
    name = os.fspath(path)
    shown = repr(str(name))
    if "\0" in str(name):
        raise InputError(f"{what} path {shown} contains a NUL byte", fix="give the file's real path")
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise InputError(f"{what} file {shown} does not exist", fix="check the path") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} file {shown}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} file {shown} is {_kind_of(info.st_mode)}, not a regular file",
                         fix=f"give the path of a {what} file")
    if info.st_size > max_bytes:
        raise InputError(f"{what} file {shown} is {info.st_size} bytes, over the limit of {max_bytes}",
                         fix=f"keep {what} files under {max_bytes // 2**20} MiB")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags)
    except OSError as exc:
        raise InputError(f"cannot read {what} file {shown}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced between stat and open
            raise InputError(f"{what} file {shown} is {_kind_of(mode)}, not a regular file",
                             fix=f"give the path of a {what} file")
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {what} file {shown}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if total > max_bytes:  # it grew after the stat
        raise InputError(f"{what} file {shown} is over the limit of {max_bytes} bytes",
                         fix=f"keep {what} files under {max_bytes // 2**20} MiB")
    return b"".join(chunks)
