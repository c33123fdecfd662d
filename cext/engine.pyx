# cython: language_level=3
"""caspian's fast path: every emulated link of a testbed in one loop.

Each link is a bump in the wire between two AF_PACKET sockets in the wire
namespace (end `a`, end `b`). The loop, with the GIL released, receives frames
in batches (recvmmsg), runs each through its direction's pipeline
(direction.pxi, its stages in stages.pxi), and releases them in time order
in batches (sendmmsg; the loop is loop.pxi, its fidelity fidelity.pxi). It
sleeps in epoll until the earliest deadline and spins only the last
`spin_ns`, because a VM's timer wake-up alone is ~100 µs late.

A wake-up costs the same whatever the number of links: epoll hands over
only the sockets that hold frames, and every direction's next deadline (its
earliest release or scheduled change) sits in one timer queue, a binary
heap over directions, so the loop touches only the directions that are due.
An engine is one shard: a testbed with several runs one per thread.

Python owns configuration: it creates and binds the sockets, publishes new
parameters (one atomic pointer swap per direction) and asks for consistent
counter snapshots. No Python object is touched inside the loop.
"""
from libc.stdint cimport int64_t, uint64_t, uint32_t, int32_t, uint16_t, uint8_t
from libc.string cimport memset, memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize
from includes.system cimport *

from emulator.errors import (EngineDirectionError, EngineParamError, EngineRangeError, EngineSocketError,
                             EngineStateError, EngineTimeoutError)

include "prng.pxi"
include "loss.pxi"
include "params.pxi"
include "capture.pxi"
include "direction.pxi"
include "stages.pxi"
include "pps.pxi"
include "offline.pxi"

cdef enum:
    MAX_BATCH = 256
    MAX_EVENTS = 64          # ready sockets taken per epoll wait
    STALL_RING = 256         # the most recent stalls kept with their times
    LATE_BINS = 1200         # release-lateness time bins per direction (120 s of 100 ms)
    DOZE_GUARD_NS = 25000    # a real-time thread's wake-up is late by ~10-20 µs here
    CONTROL_BYTES = 64       # room for one SCM_TIMESTAMPNS cmsg


cdef inline int64_t clock_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def now_ns() -> int:
    """CLOCK_REALTIME in ns: the clock of the engine and of kernel packet stamps."""
    return clock_ns()


def allocated_blocks() -> int:
    """C blocks the engine module holds now (every engine and offline run in this
    process): a call that fails must leave this where it was, a freed engine
    takes its blocks back."""
    return csp_allocated_blocks()


def fail_allocation_after(int n) -> None:
    """Test hook: the n-th C allocation from now fails as if memory ran out
    (then allocations succeed again); 0 disarms."""
    if n < 0:
        raise EngineParamError(f"fail_allocation_after({n}): n must be >= 0 (0 disarms)")
    csp_fail_allocation_after(n)


cdef struct DirectionIO:
    int rx_fd                # socket of the end this direction receives from
    int tx_fd                # socket of the end it sends to
    int32_t max_frame        # larger frames are malformed (counted, dropped)


# The first lines of the docstring are the constructor's signature as CPython
# reads it (`__text_signature__`): inspect, and so stubtest, check the stub's
# `__new__` against them. Keep them in step with __cinit__ (and at column 0).
cdef class Engine:
    """Engine(slots_per_direction=4096, batch=64, spin_ns=300000, max_spin_ns=280000, doze_ns=20000)
--

    All links of one testbed. Configure, then call `run()` from a thread.

    Directions are numbered 2*link (a→b) and 2*link+1 (b→a).
    """
    cdef Direction *dirs
    cdef DirectionIO *io
    cdef Counters *snapshot
    cdef int n_dirs
    cdef int capacity
    cdef int batch
    cdef int64_t spin_ns
    cdef int64_t max_spin_ns     # longest busy spell before a forced short sleep
    cdef int64_t doze_ns         # length of that sleep
    cdef int64_t window_start_ns
    cdef int64_t window_slept_ns
    cdef uint64_t dozes
    cdef int stop_flag
    cdef int running_flag
    cdef int control_flag        # parameters were published
    cdef uint64_t snap_request
    cdef uint64_t snap_done
    cdef int wake_fd
    cdef uint64_t socket_errors
    cdef uint64_t wakeups
    # the engine's own fidelity: stalls of the loop and lateness over time
    cdef int64_t stall_threshold_ns
    cdef uint64_t stalls
    cdef int64_t stall_total_ns
    cdef int64_t stall_max_ns
    cdef int64_t stall_start[STALL_RING]
    cdef int64_t stall_length[STALL_RING]
    cdef int64_t bin_epoch_ns    # start of time bin 0 (CLOCK_REALTIME); 0 = no bins
    cdef int64_t bin_ns
    cdef int32_t *late_bins      # n_dirs x LATE_BINS: the largest lateness (µs) released in each bin
    cdef list retired_taps       # probe-tap arrays replaced while the loop may still write them
    cdef CaptureRing ring        # packet capture (capture.pxi); buf NULL until first used
    # receive batch: scratch frames, addresses, control buffers
    cdef mmsghdr rx_msgs[MAX_BATCH]
    cdef iovec rx_iov[MAX_BATCH]
    cdef sockaddr_ll rx_addr[MAX_BATCH]
    cdef uint8_t rx_control[MAX_BATCH][CONTROL_BYTES]
    cdef uint8_t *rx_frames
    cdef int rx_stride
    # send batch
    cdef mmsghdr tx_msgs[MAX_BATCH]
    cdef iovec tx_iov[MAX_BATCH]
    cdef int tx_slot[MAX_BATCH]
    # readiness and deadlines: O(ready + due) per wake-up, not O(links)
    cdef int epfd
    cdef epoll_event events[MAX_EVENTS]
    cdef int *tq                 # timer queue: directions, min-heap on Direction.tq_key
    cdef int tq_len
    cdef int *due                # scratch: directions taken from the queue in one pass

    def __cinit__(self, int slots_per_direction=4096, int batch=64, int64_t spin_ns=300000,
                  int64_t max_spin_ns=280000, int64_t doze_ns=20000):
        # the descriptors first: __dealloc__ closes them, and it runs even when this raises
        self.epfd = -1
        self.wake_fd = -1
        if slots_per_direction < 16:
            raise EngineParamError(f"slots_per_direction {slots_per_direction} must be at least 16")
        if not 1 <= batch <= MAX_BATCH:
            raise EngineParamError(f"batch {batch} must be within 1..{MAX_BATCH}")
        if spin_ns < 0:
            raise EngineParamError(f"spin_ns {spin_ns} must be >= 0")
        self.capacity = slots_per_direction
        self.batch = batch
        self.spin_ns = spin_ns
        if max_spin_ns <= 0 or doze_ns < 0:
            raise EngineParamError(f"max_spin_ns {max_spin_ns} must be > 0 and doze_ns {doze_ns} >= 0")
        self.max_spin_ns = max_spin_ns
        self.doze_ns = doze_ns
        self.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.wake_fd < 0:
            raise EngineSocketError(errno, "eventfd failed")
        self.rx_stride = 0
        self.rx_frames = NULL
        self.stall_threshold_ns = 1000000
        self.retired_taps = []
        memset(&self.ring, 0, sizeof(CaptureRing))

    def __dealloc__(self):
        cdef int i
        for i in range(self.n_dirs):
            direction_free(&self.dirs[i])
        if self.retired_taps is not None:
            for arrays in self.retired_taps:
                for a in arrays:
                    csp_free(<void *><size_t>a)
        csp_free(self.ring.buf)
        csp_free(self.dirs)
        csp_free(self.io)
        csp_free(self.snapshot)
        csp_free(self.tq)
        csp_free(self.due)
        csp_free(self.late_bins)
        csp_free(self.rx_frames)
        if self.wake_fd >= 0:
            close(self.wake_fd)
        if self.epfd >= 0:
            close(self.epfd)

    @property
    def n_links(self) -> int:
        return self.n_dirs // 2

    @property
    def running(self) -> bool:
        return bool(csp_load_int(&self.running_flag))

    def add_link(self, int fd_a, int fd_b, int max_frame, dict a_to_b, dict b_to_a,
                 uint64_t seed_a_to_b, uint64_t seed_b_to_a) -> int:
        """Add a link between two bound AF_PACKET sockets; returns its index.

        All or nothing: the arguments are checked first, then every block the
        link needs is allocated into new arrays, which replace the engine's
        only once all of them exist. A failure at any step frees what this call
        allocated, so the engine is as it was and the call can be retried."""
        if csp_load_int(&self.running_flag):
            raise EngineStateError("links can only be added before run()")
        if not 14 <= max_frame <= 65535:
            raise EngineParamError(f"max_frame {max_frame} must be within 14..65535")
        if fd_a == fd_b:
            raise EngineParamError(f"both ends of a link are fd {fd_a}: a link needs two sockets")
        check_socket(fd_a, "a")
        check_socket(fd_b, "b")
        cdef int old_n = self.n_dirs
        cdef int n = old_n + 2
        cdef int slot_bytes = (max_frame + 63) & ~63
        cdef int k
        cdef Params *pa = NULL
        cdef Params *pb = NULL
        cdef Direction *dirs = NULL
        cdef DirectionIO *io = NULL
        cdef Counters *snapshot = NULL
        cdef int32_t *late_bins = NULL
        try:
            pa = params_from_dict(a_to_b)
            pb = params_from_dict(b_to_a)
            dirs = <Direction *>csp_grown_copy(self.dirs, old_n, n, sizeof(Direction))
            io = <DirectionIO *>csp_grown_copy(self.io, old_n, n, sizeof(DirectionIO))
            # stats() reads a snapshot per direction even before the first run
            snapshot = <Counters *>csp_grown_copy(self.snapshot, old_n, n, sizeof(Counters))
            if dirs == NULL or io == NULL or snapshot == NULL:
                raise MemoryError()
            if self.late_bins != NULL:      # fidelity bins already started: the new directions get theirs
                late_bins = <int32_t *>csp_grown_copy(self.late_bins, <size_t>old_n * LATE_BINS,
                                                    <size_t>n * LATE_BINS, sizeof(int32_t))
                if late_bins == NULL:
                    raise MemoryError()
            for k in range(2):
                if direction_init(&dirs[old_n + k], self.capacity, slot_bytes,
                                  seed_a_to_b if k == 0 else seed_b_to_a) != 0:
                    raise MemoryError()
        except BaseException:
            if dirs != NULL:
                # direction_free takes a zeroed or half-made direction alike
                direction_free(&dirs[old_n])
                direction_free(&dirs[old_n + 1])
            csp_free(dirs); csp_free(io); csp_free(snapshot); csp_free(late_bins)
            params_free(pa); params_free(pb)
            raise
        # every step succeeded: swap the new arrays in (the loop is not running)
        dirs[old_n].params = pa
        dirs[old_n + 1].params = pb
        io[old_n].rx_fd = fd_a
        io[old_n].tx_fd = fd_b
        io[old_n].max_frame = max_frame
        io[old_n + 1].rx_fd = fd_b
        io[old_n + 1].tx_fd = fd_a
        io[old_n + 1].max_frame = max_frame
        csp_free(self.dirs); csp_free(self.io); csp_free(self.snapshot)
        self.dirs = dirs
        self.io = io
        self.snapshot = snapshot
        if late_bins != NULL:
            csp_free(self.late_bins)
            self.late_bins = late_bins
        self.n_dirs = n
        return n // 2 - 1

    def set_params(self, int direction, dict params) -> None:
        """Publish new parameters for a direction; the next packet uses them."""
        self._check_direction(direction)
        cdef Params *fresh = params_from_dict(params)
        cdef Params *old = <Params *>csp_xchg_ptr(<void **>&self.dirs[direction].pending, fresh)
        params_free(old)     # published but never taken: nobody else holds it
        if not csp_load_int(&self.running_flag):
            direction_take_pending(&self.dirs[direction])
        else:
            csp_store_int(&self.control_flag, 1)
            self._wake()

    def set_outage(self, int direction, bint cut) -> None:
        """Cut (True) or restore (False) one direction; takes effect on the next frame."""
        self._check_direction(direction)
        csp_store_int(&self.dirs[direction].outage, 1 if cut else 0)

    def outage(self, int direction) -> bool:
        """True while the direction is cut (live or by its schedule)."""
        self._check_direction(direction)
        return bool(csp_load_int(&self.dirs[direction].outage))

    def set_schedule(self, int direction, list changes) -> None:
        """Hand over a direction's timeline: `(at_ns, op, params)` tuples with op
        "cut", "restore" or "set" (params: LinkParams.to_engine(), else None),
        `at_ns` on CLOCK_REALTIME. Each is applied at its instant, judged on
        each frame's arrival stamp. Replaces the direction's previous schedule."""
        self._check_direction(direction)
        cdef int n = len(changes)
        cdef Schedule *fresh = <Schedule *>csp_calloc(1, sizeof(Schedule))
        if fresh == NULL:
            raise MemoryError()
        fresh.items = <Scheduled *>csp_calloc(n if n > 0 else 1, sizeof(Scheduled))
        if fresh.items == NULL:
            csp_free(fresh)
            raise MemoryError()
        fresh.len = n
        cdef int k
        cdef int64_t previous = 0
        try:
            for k, (at_ns, op, params) in enumerate(changes):
                if at_ns < previous:
                    raise EngineParamError(f"scheduled change {k} at {at_ns} ns comes before the one ahead of it: "
                                           "hand them over in time order")
                previous = at_ns
                fresh.items[k].at_ns = at_ns
                if op == "cut":
                    fresh.items[k].op = SCHED_CUT
                elif op == "restore":
                    fresh.items[k].op = SCHED_RESTORE
                elif op == "set":
                    fresh.items[k].op = SCHED_SET
                    fresh.items[k].params = params_from_dict(params)
                else:
                    raise EngineParamError(f"unknown scheduled change {op!r}: use cut, restore or set")
        except BaseException:
            schedule_free(fresh)
            raise
        cdef Schedule *old = <Schedule *>csp_xchg_ptr(<void **>&self.dirs[direction].pending_schedule, fresh)
        schedule_free(old)   # published but never taken: nobody else holds it
        if not csp_load_int(&self.running_flag):
            direction_take_schedule(&self.dirs[direction])
        else:
            csp_store_int(&self.control_flag, 1)
            self._wake()

    def schedule_status(self, int direction) -> list:
        """Each scheduled change of a direction: its instant, when the loop
        applied it (None = not yet) and the arrival stamps of the last frame
        judged before it and the first judged after (None = no such frame)."""
        self._check_direction(direction)
        cdef Schedule *s = <Schedule *>csp_load_ptr(<void **>&self.dirs[direction].pending_schedule)
        if s == NULL:
            s = <Schedule *>csp_load_ptr(<void **>&self.dirs[direction].schedule)
        if s == NULL:
            return []
        out = []
        cdef int k
        for k in range(s.len):
            out.append({
                "at_ns": s.items[k].at_ns,
                "op": ("cut", "restore", "set")[s.items[k].op],
                "applied_ns": s.items[k].applied_ns or None,
                "last_before_ns": s.items[k].last_before_ns or None,
                "first_after_ns": s.items[k].first_after_ns or None,
            })
        return out

    def run(self) -> None:
        """Forward until `stop()`. Blocks; the GIL is released for the whole loop."""
        if self.n_dirs == 0:
            raise EngineStateError("no links to forward: add_link() first")
        if csp_load_int(&self.running_flag):
            # a second loop would share the first one's sockets, heaps and scratch
            raise EngineStateError("the engine is already running: one run() at a time")
        self._prepare()
        # stop_flag is not cleared here: a stop() that came before this thread got
        # to run must still stop it (arm() clears it before a start)
        csp_store_int(&self.running_flag, 1)
        try:
            with nogil:
                engine_loop(self)
        finally:
            csp_store_int(&self.running_flag, 0)

    def arm(self) -> None:
        """Clear an earlier stop() before starting the loop again (new engines start armed)."""
        csp_store_int(&self.stop_flag, 0)

    def stop(self) -> None:
        """Ask the loop to return; safe from any thread."""
        csp_store_int(&self.stop_flag, 1)
        self._wake()

    def stats(self, double timeout_s=2.0) -> list:
        """Counters of every direction, read at one consistent point of the loop."""
        cdef uint64_t want
        cdef int64_t deadline
        cdef int i
        cdef timespec pause
        if csp_load_int(&self.running_flag):
            want = csp_load_u64(&self.snap_request) + 1
            csp_store_u64(&self.snap_request, want)
            self._wake()
            deadline = clock_ns() + <int64_t>(timeout_s * 1e9)
            pause.tv_sec = 0
            pause.tv_nsec = 20000
            with nogil:
                while csp_load_u64(&self.snap_done) != want and clock_ns() < deadline:
                    nanosleep(&pause, NULL)
            if csp_load_u64(&self.snap_done) != want:
                raise EngineTimeoutError(f"engine loop did not answer a counter snapshot in {timeout_s:g} s")
        else:
            for i in range(self.n_dirs):
                take_snapshot(self, i)
        return [counters_dict(&self.snapshot[i]) for i in range(self.n_dirs)]

    def describe_io(self) -> dict:
        return {"socket_errors": self.socket_errors, "wakeups": self.wakeups, "dozes": self.dozes}

    def set_probe_tap(self, int direction, list streams, int capacity) -> None:
        """Stamp caspian probes crossing `direction`: `streams` is a list of (role,
        port), role "first" (the source host's link: stamped at arrival) or "last"
        (the target host's: at release), port the stream's UDP destination port;
        [] stops. Keeps up to `capacity` entries in all; starts empty."""
        self._check_direction(direction)
        cdef Direction *d = &self.dirs[direction]
        cdef int64_t *t
        cdef int64_t *q
        cdef int32_t *w
        cdef int k
        if len(streams) > TAP_MAX:
            raise EngineParamError(f"{len(streams)} probe streams: at most {TAP_MAX} per link direction")
        for role, port in streams:
            if role not in ("first", "last") or not 0 < port < 65536:
                raise EngineParamError(f"probe tap ({role!r}, {port!r}): role must be first or last; port 1..65535")
        if streams and capacity < 1:
            raise EngineParamError(f"probe tap capacity {capacity} must be >= 1")
        csp_store_int(&d.tap_n, 0)
        if not streams:
            return
        if capacity > d.tap_cap:
            # The loop may still be appending to the old arrays until it sees
            # tap_n = 0 above: they are kept (freed with the engine), not freed now.
            t = <int64_t *>csp_malloc(<size_t>capacity * sizeof(int64_t))
            q = <int64_t *>csp_malloc(<size_t>capacity * sizeof(int64_t))
            w = <int32_t *>csp_malloc(<size_t>capacity * sizeof(int32_t))
            if t == NULL or q == NULL or w == NULL:
                csp_free(t); csp_free(q); csp_free(w)
                raise MemoryError()
            if d.tap_t != NULL:
                self.retired_taps.append((<size_t>d.tap_t, <size_t>d.tap_seq, <size_t>d.tap_stream))
            d.tap_cap = 0
            d.tap_t = t
            d.tap_seq = q
            d.tap_stream = w
            d.tap_cap = capacity
        csp_store_int(&d.tap_len, 0)
        d.tap_overflow = 0
        for k, (role, port) in enumerate(streams):
            d.tap_ports[k] = port
            d.tap_roles[k] = TAP_FIRST if role == "first" else TAP_LAST
        csp_store_int(&d.tap_n, len(streams))

    def probe_tap(self, int direction) -> dict:
        """The probe stamps of a direction so far: `port`, `seq` and `t_ns` lists
        (released or arrived entries only), `overflow`."""
        self._check_direction(direction)
        cdef Direction *d = &self.dirs[direction]
        cdef int n = csp_load_int(&d.tap_len)
        cdef int k
        cdef list ports = [], seqs = [], times = []
        cdef int64_t t
        for k in range(n):
            t = csp_load_i64(&d.tap_t[k])
            if t != 0:
                ports.append(d.tap_ports[d.tap_stream[k]])
                seqs.append(d.tap_seq[k])
                times.append(t)
        return {"port": ports, "seq": seqs, "t_ns": times, "overflow": d.tap_overflow}

    def capture_open(self, int64_t size, int snaplen) -> None:
        """Make the capture ring: `size` bytes (a power of two), frames cut at `snaplen`
        bytes. Once per engine: the loop may write into it at any time after."""
        ring_open(&self.ring, size, snaplen)

    def set_capture(self, int direction, int interface) -> None:
        """Capture `direction`: frames in on pcapng interface `interface`, out on
        `interface` + 1; -1 stops."""
        self._check_direction(direction)
        cdef Direction *d = &self.dirs[direction]
        if interface < 0:
            csp_xchg_ptr(<void **>&d.capture, NULL)
            return
        if self.ring.buf == NULL:
            raise EngineStateError("no capture ring: capture_open() first")
        d.capture_if = interface
        csp_xchg_ptr(<void **>&d.capture, &self.ring)

    def capture_drain(self) -> bytes:
        """The whole blocks written since the last drain (pcapng EPBs), as bytes."""
        return ring_drain(&self.ring)

    def capture_status(self) -> dict:
        """Blocks written and lost (the ring was full) since the ring was made."""
        return {"blocks": self.ring.blocks, "lost": self.ring.lost, "size": self.ring.size}

    def set_fidelity(self, int64_t epoch_ns, int64_t bin_ns, int64_t stall_threshold_ns) -> None:
        """Start time bins of release lateness at `epoch_ns` (bins of `bin_ns`,
        LATE_BINS of them) and count loop stalls longer than `stall_threshold_ns`.
        Bins start empty; stalls keep counting."""
        fidelity_start(self, epoch_ns, bin_ns, stall_threshold_ns)

    def fidelity(self) -> dict:
        """The loop's own timing: stalls (count, total, longest, the most recent
        with their start times), forced naps, wake-ups, and per direction the
        largest release lateness (µs) and the largest queue (packets awaiting
        serialization) in each time bin since `set_fidelity`."""
        return fidelity_report(self)

    # -- helpers ----------------------------------------------------------

    def _check_direction(self, int direction):
        if not 0 <= direction < self.n_dirs:
            raise EngineDirectionError(f"no direction {direction} (engine has {self.n_dirs})")

    cdef void _wake(self) noexcept:
        cdef uint64_t one = 1
        write(self.wake_fd, &one, sizeof(one))

    cdef _prepare(self):
        cdef int i, max_frame = 0
        for i in range(self.n_dirs):
            if self.io[i].max_frame > max_frame:
                max_frame = self.io[i].max_frame
        csp_free(self.tq)
        self.tq = <int *>csp_malloc(self.n_dirs * sizeof(int))
        csp_free(self.due)
        self.due = <int *>csp_malloc(self.n_dirs * sizeof(int))
        # +1 byte: a frame longer than any link's max still shows as oversized
        self.rx_stride = max_frame + 1
        csp_free(self.rx_frames)
        self.rx_frames = <uint8_t *>csp_malloc(<size_t>self.rx_stride * MAX_BATCH)
        if self.tq == NULL or self.due == NULL or self.rx_frames == NULL:
            raise MemoryError()
        # A fresh epoll set each run: every receiving socket carries its
        # direction's index, the wake-up eventfd carries n_dirs.
        if self.epfd >= 0:
            close(self.epfd)
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise EngineSocketError(errno, "epoll_create1 failed")
        cdef epoll_event ev
        for i in range(self.n_dirs + 1):
            ev.events = EPOLLIN
            ev.data.u32 = <uint32_t>i
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.io[i].rx_fd if i < self.n_dirs else self.wake_fd, &ev) != 0:
                raise EngineSocketError(errno, f"epoll_ctl failed for direction {i}")
        self.tq_len = 0
        for i in range(self.n_dirs):
            self.dirs[i].tq_pos = -1
            tq_update(self, i)
        for i in range(MAX_BATCH):
            self.rx_iov[i].iov_base = self.rx_frames + <size_t>i * self.rx_stride
            self.rx_iov[i].iov_len = self.rx_stride
            self.rx_msgs[i].msg_hdr.msg_iov = &self.rx_iov[i]
            self.rx_msgs[i].msg_hdr.msg_iovlen = 1
            self.rx_msgs[i].msg_hdr.msg_name = &self.rx_addr[i]
            self.rx_msgs[i].msg_hdr.msg_control = &self.rx_control[i][0]
            reset_rx_header(self, i)
            self.tx_msgs[i].msg_hdr.msg_iov = &self.tx_iov[i]
            self.tx_msgs[i].msg_hdr.msg_iovlen = 1
            self.tx_msgs[i].msg_hdr.msg_name = NULL
            self.tx_msgs[i].msg_hdr.msg_namelen = 0
            self.tx_msgs[i].msg_hdr.msg_control = NULL
            self.tx_msgs[i].msg_hdr.msg_controllen = 0


cdef int check_socket(int fd, str end) except -1:
    """A link end must be an open socket: a closed or wrong descriptor is
    refused here, not found later by epoll in run()."""
    cdef int kind = 0
    cdef socklen_t length = sizeof(kind)
    if getsockopt(fd, SOL_SOCKET, SO_TYPE, &kind, &length) != 0:
        raise EngineSocketError(errno, f"link end {end} (fd {fd}) is not an open socket")
    return 0


cdef dict counters_dict(Counters *c):
    drops = {DROP_REASON_NAMES[r]: c.drop_packets[r] for r in range(N_DROP_REASONS)}
    drop_bytes = {DROP_REASON_NAMES[r]: c.drop_bytes[r] for r in range(N_DROP_REASONS)}
    return {
        "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes,
        "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes,
        "duplicated": c.duplicated, "corrupted": c.corrupted,
        "drops": drops, "drop_bytes": drop_bytes,
        "in_flight": c.in_flight, "queued": c.queued,
        "release_lateness": {
            "max_ns": c.late_max_ns,
            "sum_ns": c.late_sum_ns,
            "change_sum_ns": c.late_change_sum_ns,
            "histogram": {(f"<{1 << k}us" if k < LATENESS_BINS - 1 else f">={1 << (LATENESS_BINS - 2)}us"): c.late_hist[k]
                          for k in range(LATENESS_BINS)},
        },
    }


include "loop.pxi"
include "fidelity.pxi"
