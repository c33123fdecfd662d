# cython: language_level=3
"""caspian's fast path: every emulated link of a testbed in one loop.

Each link is a bump in the wire between two AF_PACKET sockets in the wire
namespace (end `a`, end `b`). The loop, with the GIL released, receives frames
in batches (recvmmsg), runs each through its direction's pipeline
(direction.pxi), and releases them in time order in batches (sendmmsg). It
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

include "prng.pxi"
include "params.pxi"
include "capture.pxi"
include "direction.pxi"
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


cdef struct DirectionIO:
    int rx_fd                # socket of the end this direction receives from
    int tx_fd                # socket of the end it sends to
    int32_t max_frame        # larger frames are malformed (counted, dropped)


cdef class Engine:
    """All links of one testbed. Configure, then call `run()` from a thread.

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
        if slots_per_direction < 16:
            raise ValueError("slots_per_direction must be at least 16")
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be within 1..{MAX_BATCH}")
        if spin_ns < 0:
            raise ValueError("spin_ns must be >= 0")
        self.capacity = slots_per_direction
        self.batch = batch
        self.spin_ns = spin_ns
        if max_spin_ns <= 0 or doze_ns < 0:
            raise ValueError("max_spin_ns must be > 0 and doze_ns >= 0")
        self.max_spin_ns = max_spin_ns
        self.doze_ns = doze_ns
        self.epfd = -1
        self.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.wake_fd < 0:
            raise OSError(errno, "eventfd failed")
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
                    free(<void *><size_t>a)
        free(self.ring.buf)
        free(self.dirs)
        free(self.io)
        free(self.snapshot)
        free(self.tq)
        free(self.due)
        free(self.late_bins)
        free(self.rx_frames)
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
        """Add a link between two bound AF_PACKET sockets; returns its index."""
        if csp_load_int(&self.running_flag):
            raise RuntimeError("links can only be added before run()")
        if not 14 <= max_frame <= 65535:
            raise ValueError("max_frame must be within 14..65535")
        cdef Params *pa = params_from_dict(a_to_b)
        cdef Params *pb
        try:
            pb = params_from_dict(b_to_a)
        except BaseException:
            params_free(pa)
            raise
        cdef int n = self.n_dirs + 2
        cdef Direction *dirs = <Direction *>realloc_zeroed(self.dirs, self.n_dirs, n, sizeof(Direction))
        if dirs == NULL:
            params_free(pa); params_free(pb)
            raise MemoryError()
        self.dirs = dirs
        cdef DirectionIO *io = <DirectionIO *>realloc_zeroed(self.io, self.n_dirs, n, sizeof(DirectionIO))
        if io == NULL:
            params_free(pa); params_free(pb)
            raise MemoryError()
        self.io = io
        cdef int slot_bytes = (max_frame + 63) & ~63
        cdef int k
        for k in range(2):
            if direction_init(&self.dirs[self.n_dirs + k], self.capacity, slot_bytes,
                              seed_a_to_b if k == 0 else seed_b_to_a) != 0:
                # nothing of this link stays: both pools and both Params go
                direction_free(&self.dirs[self.n_dirs])
                direction_free(&self.dirs[self.n_dirs + 1])
                params_free(pa); params_free(pb)
                raise MemoryError()
        self.dirs[self.n_dirs].params = pa
        self.dirs[self.n_dirs + 1].params = pb
        self.io[self.n_dirs].rx_fd = fd_a
        self.io[self.n_dirs].tx_fd = fd_b
        self.io[self.n_dirs].max_frame = max_frame
        self.io[self.n_dirs + 1].rx_fd = fd_b
        self.io[self.n_dirs + 1].tx_fd = fd_a
        self.io[self.n_dirs + 1].max_frame = max_frame
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
        cdef Schedule *fresh = <Schedule *>calloc(1, sizeof(Schedule))
        if fresh == NULL:
            raise MemoryError()
        fresh.items = <Scheduled *>calloc(n if n > 0 else 1, sizeof(Scheduled))
        if fresh.items == NULL:
            free(fresh)
            raise MemoryError()
        fresh.len = n
        cdef int k
        cdef int64_t previous = 0
        try:
            for k, (at_ns, op, params) in enumerate(changes):
                if at_ns < previous:
                    raise ValueError("scheduled changes must be in time order")
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
                    raise ValueError(f"unknown scheduled change {op!r}: use cut, restore or set")
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
            raise RuntimeError("no links to forward")
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
                raise TimeoutError("engine loop did not answer a counter snapshot")
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
            raise ValueError(f"at most {TAP_MAX} probe streams per link direction")
        for role, port in streams:
            if role not in ("first", "last") or not 0 < port < 65536:
                raise ValueError("role must be first or last; port 1..65535")
        if streams and capacity < 1:
            raise ValueError("capacity >= 1")
        csp_store_int(&d.tap_n, 0)
        if not streams:
            return
        if capacity > d.tap_cap:
            # The loop may still be appending to the old arrays until it sees
            # tap_n = 0 above: they are kept (freed with the engine), not freed now.
            t = <int64_t *>malloc(<size_t>capacity * sizeof(int64_t))
            q = <int64_t *>malloc(<size_t>capacity * sizeof(int64_t))
            w = <int32_t *>malloc(<size_t>capacity * sizeof(int32_t))
            if t == NULL or q == NULL or w == NULL:
                free(t); free(q); free(w)
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
        if self.ring.buf != NULL:
            if size != self.ring.size:
                raise ValueError("the capture ring exists with another size")
            self.ring.snaplen = snaplen
            return
        if size < 65536 or size & (size - 1) or not 64 <= snaplen <= 65535:
            raise ValueError("size: a power of two >= 65536; snaplen 64..65535")
        self.ring.buf = <uint8_t *>malloc(<size_t>size)
        if self.ring.buf == NULL:
            raise MemoryError()
        self.ring.size = size
        self.ring.snaplen = snaplen

    def set_capture(self, int direction, int interface) -> None:
        """Capture `direction`: frames in on pcapng interface `interface`, out on
        `interface` + 1; -1 stops."""
        self._check_direction(direction)
        cdef Direction *d = &self.dirs[direction]
        if interface < 0:
            csp_xchg_ptr(<void **>&d.capture, NULL)
            return
        if self.ring.buf == NULL:
            raise ValueError("capture_open first")
        d.capture_if = interface
        csp_xchg_ptr(<void **>&d.capture, &self.ring)

    def capture_drain(self) -> bytes:
        """The whole blocks written since the last drain (pcapng EPBs), as bytes."""
        if self.ring.buf == NULL:
            return b""
        cdef int64_t head = csp_load_i64(&self.ring.head)
        cdef int64_t tail = self.ring.tail
        cdef int64_t n = head - tail
        cdef int64_t off = tail & (self.ring.size - 1)
        cdef int64_t first = n if off + n <= self.ring.size else self.ring.size - off
        out = PyBytes_FromStringAndSize(<char *>(self.ring.buf + off), first)
        if first < n:
            out += PyBytes_FromStringAndSize(<char *>self.ring.buf, n - first)
        csp_store_i64(&self.ring.tail, head)
        return out

    def capture_status(self) -> dict:
        """Blocks written and lost (the ring was full) since the ring was made."""
        return {"blocks": self.ring.blocks, "lost": self.ring.lost, "size": self.ring.size}

    def set_fidelity(self, int64_t epoch_ns, int64_t bin_ns, int64_t stall_threshold_ns) -> None:
        """Start time bins of release lateness at `epoch_ns` (bins of `bin_ns`,
        LATE_BINS of them) and count loop stalls longer than `stall_threshold_ns`.
        Bins start empty; stalls keep counting."""
        if bin_ns <= 0 or stall_threshold_ns <= 0:
            raise ValueError("bin_ns and stall_threshold_ns must be > 0")
        if self.late_bins == NULL and self.n_dirs > 0:
            self.late_bins = <int32_t *>calloc(<size_t>self.n_dirs * LATE_BINS, sizeof(int32_t))
            if self.late_bins == NULL:
                raise MemoryError()
        elif self.late_bins != NULL:
            memset(self.late_bins, 0, <size_t>self.n_dirs * LATE_BINS * sizeof(int32_t))
        cdef int i
        cdef Direction *d
        csp_store_i64(&self.bin_epoch_ns, 0)     # the loop stops binning while the bins change
        cdef int32_t *fresh
        for i in range(self.n_dirs):
            d = &self.dirs[i]
            # what bin_queue reads is set before the bins are published (the loop
            # bins only when queue_bins is not NULL, and only from the epoch on)
            d.bin_epoch = &self.bin_epoch_ns
            d.bin_ns = bin_ns
            d.queue_bins_len = LATE_BINS
            if d.queue_bins == NULL:
                fresh = <int32_t *>calloc(LATE_BINS, sizeof(int32_t))
                if fresh == NULL:
                    raise MemoryError()
                csp_xchg_ptr(<void **>&d.queue_bins, fresh)
            else:
                memset(d.queue_bins, 0, LATE_BINS * sizeof(int32_t))
        self.bin_ns = bin_ns
        self.stall_threshold_ns = stall_threshold_ns
        csp_store_i64(&self.bin_epoch_ns, epoch_ns)

    def fidelity(self) -> dict:
        """The loop's own timing: stalls (count, total, longest, the most recent
        with their start times), forced naps, wake-ups, and per direction the
        largest release lateness (µs) and the largest queue (packets awaiting
        serialization) in each time bin since `set_fidelity`."""
        cdef uint64_t n = self.stalls
        cdef uint64_t first = n - STALL_RING if n > STALL_RING else 0
        cdef uint64_t k
        recent = [(self.stall_start[k % STALL_RING], self.stall_length[k % STALL_RING]) for k in range(first, n)]
        bins = []
        cdef int i, last, b
        for i in range(self.n_dirs if self.late_bins != NULL else 0):
            last = -1
            for b in range(LATE_BINS):
                if self.late_bins[<size_t>i * LATE_BINS + b] != 0:
                    last = b
            bins.append([self.late_bins[<size_t>i * LATE_BINS + b] for b in range(last + 1)])
        queues = []
        cdef Direction *d
        for i in range(self.n_dirs):
            d = &self.dirs[i]
            last = -1
            for b in range(d.queue_bins_len if d.queue_bins != NULL else 0):
                if d.queue_bins[b] != 0:
                    last = b
            queues.append([d.queue_bins[b] for b in range(last + 1)])
        return {
            "stalls": n, "stall_total_ns": self.stall_total_ns, "stall_max_ns": self.stall_max_ns,
            "stall_threshold_ns": self.stall_threshold_ns, "recent_stalls": recent,
            "dozes": self.dozes, "wakeups": self.wakeups,
            "bin_epoch_ns": self.bin_epoch_ns, "bin_ns": self.bin_ns, "late_bins_us": bins,
            "queue_bins": queues,
        }

    # -- helpers ----------------------------------------------------------

    def _check_direction(self, int direction):
        if not 0 <= direction < self.n_dirs:
            raise IndexError(f"no direction {direction} (engine has {self.n_dirs})")

    cdef void _wake(self) noexcept:
        cdef uint64_t one = 1
        write(self.wake_fd, &one, sizeof(one))

    cdef _prepare(self):
        cdef int i, max_frame = 0
        for i in range(self.n_dirs):
            if self.io[i].max_frame > max_frame:
                max_frame = self.io[i].max_frame
        free(self.snapshot)
        self.snapshot = <Counters *>calloc(self.n_dirs, sizeof(Counters))
        free(self.tq)
        self.tq = <int *>malloc(self.n_dirs * sizeof(int))
        free(self.due)
        self.due = <int *>malloc(self.n_dirs * sizeof(int))
        # +1 byte: a frame longer than any link's max still shows as oversized
        self.rx_stride = max_frame + 1
        free(self.rx_frames)
        self.rx_frames = <uint8_t *>malloc(<size_t>self.rx_stride * MAX_BATCH)
        if self.snapshot == NULL or self.tq == NULL or self.due == NULL or self.rx_frames == NULL:
            raise MemoryError()
        # A fresh epoll set each run: every receiving socket carries its
        # direction's index, the wake-up eventfd carries n_dirs.
        if self.epfd >= 0:
            close(self.epfd)
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        cdef epoll_event ev
        for i in range(self.n_dirs + 1):
            ev.events = EPOLLIN
            ev.data.u32 = <uint32_t>i
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.io[i].rx_fd if i < self.n_dirs else self.wake_fd, &ev) != 0:
                raise OSError(errno, f"epoll_ctl failed for direction {i}")
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


cdef void *realloc_zeroed(void *old, int n_old, int n_new, size_t size) noexcept nogil:
    """Grow an array, zeroing the new tail (realloc does not)."""
    cdef void *fresh = calloc(n_new, size)
    if fresh == NULL:
        return NULL
    if old != NULL:
        memcpy(fresh, old, n_old * size)
        free(old)
    return fresh


cdef inline void take_snapshot(Engine e, int i) noexcept nogil:
    backlog_drain(&e.dirs[i], clock_ns())    # the queue as of now, not as of the last arrival
    e.snapshot[i] = e.dirs[i].counters
    e.snapshot[i].in_flight = e.dirs[i].heap_len
    e.snapshot[i].queued = e.dirs[i].backlog_count


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
            "histogram": {(f"<{1 << k}us" if k < 15 else f">={1 << 14}us"): c.late_hist[k] for k in range(16)},
        },
    }


# ------------------------------------------------------------------ the loop

cdef inline int64_t frame_timestamp(mmsghdr *m, int64_t fallback) noexcept nogil:
    """Kernel arrival stamp (SO_TIMESTAMPNS) of a received frame, else `fallback`."""
    cdef cmsghdr *c = CMSG_FIRSTHDR(&m.msg_hdr)
    cdef timespec *ts
    while c != NULL:
        if c.cmsg_level == SOL_SOCKET and c.cmsg_type == SCM_TIMESTAMPNS:
            ts = <timespec *>CMSG_DATA(c)
            return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
        c = CMSG_NXTHDR(&m.msg_hdr, c)
    return fallback


cdef int receive_batch(Engine e, int i) noexcept nogil:
    """Drain up to one batch from direction i's receiving socket into its
    pipeline; the number of frames read."""
    cdef Direction *d = &e.dirs[i]
    cdef int n, k
    cdef int64_t now
    # The headers are ready (set in _prepare, reset below after each use:
    # the kernel rewrites only the ones it filled).
    n = recvmmsg(e.io[i].rx_fd, e.rx_msgs, e.batch, MSG_DONTWAIT | MSG_TRUNC, NULL)
    if n <= 0:
        if n < 0 and errno != EAGAIN and errno != EINTR:
            # e.g. a failed sendmmsg reported late (ENOBUFS): already counted
            e.socket_errors += 1
        return 0
    now = clock_ns()
    for k in range(n):
        if e.rx_addr[k].sll_pkttype == PACKET_OUTGOING:
            continue        # our own transmissions (belt and braces with IGNORE_OUTGOING)
        pipeline_admit(d, frame_timestamp(&e.rx_msgs[k], now), now,
                       e.rx_frames + <size_t>k * e.rx_stride,
                       <int32_t>e.rx_msgs[k].msg_len, e.io[i].max_frame)
    for k in range(n):
        reset_rx_header(e, k)
    return n


cdef inline void reset_rx_header(Engine e, int k) noexcept nogil:
    e.rx_msgs[k].msg_hdr.msg_namelen = sizeof(sockaddr_ll)
    e.rx_msgs[k].msg_hdr.msg_controllen = CONTROL_BYTES
    e.rx_msgs[k].msg_hdr.msg_flags = 0


cdef void release_due(Engine e, int i, int64_t now) noexcept nogil:
    """Stage 7: send every packet whose release time has come, in time order."""
    cdef Direction *d = &e.dirs[i]
    cdef int n, sent, r, k, slot, err
    cdef CaptureRing *cap
    while d.heap_len > 0 and d.slots[d.heap[0]].release_ns <= now:
        n = 0
        while n < e.batch and d.heap_len > 0 and d.slots[d.heap[0]].release_ns <= now:
            slot = heap_pop(d)
            e.tx_slot[n] = slot
            e.tx_iov[n].iov_base = slot_frame(d, slot)
            e.tx_iov[n].iov_len = d.slots[slot].length
            n += 1
        sent = 0
        while sent < n:
            r = sendmmsg(e.io[i].tx_fd, &e.tx_msgs[sent], n - sent, MSG_DONTWAIT)
            if r > 0:
                for k in range(sent, sent + r):
                    count_lateness(d, now - d.slots[e.tx_slot[k]].release_ns)
                    if d.slots[e.tx_slot[k]].reserved > 0:
                        tap_released(d, d.slots[e.tx_slot[k]].reserved, now)
                    if e.late_bins != NULL:
                        bin_lateness(e, i, now, now - d.slots[e.tx_slot[k]].release_ns)
                    d.counters.tx_packets += 1
                    d.counters.tx_bytes += d.slots[e.tx_slot[k]].length
                    capture_out(d, slot_frame(d, e.tx_slot[k]), d.slots[e.tx_slot[k]].length,
                                d.slots[e.tx_slot[k]].release_ns)
                    slot_release(d, e.tx_slot[k])
                sent += r
            else:
                err = errno
                if err == EAGAIN or err == EINTR:
                    # Socket full: keep the rest in flight, retry on the next pass.
                    for k in range(sent, n):
                        heap_push(d, e.tx_slot[k])
                    return
                # The frame at `sent` was refused (ENOBUFS, ENETDOWN, ...): a counted drop.
                count_drop(d, DROP_SEND_ERROR, d.slots[e.tx_slot[sent]].length)
                cap = <CaptureRing *>csp_load_ptr(<void **>&d.capture)
                if cap != NULL:     # recorded on the way out, where it was refused
                    capture_block(cap, d.capture_if + 1, now, slot_frame(d, e.tx_slot[sent]),
                                  d.slots[e.tx_slot[sent]].length, EPB_OUTBOUND, DROP_COMMENTS[DROP_SEND_ERROR])
                slot_release(d, e.tx_slot[sent])
                sent += 1


# ------------------------------------------------------------ fidelity

cdef inline void bin_lateness(Engine e, int i, int64_t now, int64_t late_ns) noexcept nogil:
    """Keep the largest lateness of direction i's time bin at `now`."""
    cdef int64_t epoch = csp_load_i64(&e.bin_epoch_ns)
    cdef int64_t b
    cdef int32_t us
    if epoch <= 0 or now < epoch:
        return
    b = (now - epoch) // e.bin_ns
    if b >= LATE_BINS:
        return
    us = <int32_t>(late_ns // 1000) if late_ns < <int64_t>2000000000 * 1000 else 2000000000
    if us > e.late_bins[<size_t>i * LATE_BINS + b]:
        e.late_bins[<size_t>i * LATE_BINS + b] = us


cdef inline void note_stall(Engine e, int64_t start_ns, int64_t length_ns) noexcept nogil:
    """The loop did not run for `length_ns` from `start_ns` when it should have:
    preempted, throttled, frozen (SIGSTOP), a VM's vCPU not scheduled."""
    cdef uint64_t k = e.stalls % STALL_RING
    e.stall_start[k] = start_ns
    e.stall_length[k] = length_ns
    e.stall_total_ns += length_ns
    if length_ns > e.stall_max_ns:
        e.stall_max_ns = length_ns
    e.stalls += 1


# ------------------------------------------------------------ the timer queue
# One binary min-heap over directions keyed by each one's next deadline
# (Direction.tq_key): its earliest release or its next scheduled change.
# Netem's habit (one timer, re-armed to the earliest deadline) across links.

cdef inline int64_t direction_deadline(Direction *d) noexcept nogil:
    """The direction's next deadline, or -1 when it has none."""
    cdef int64_t release = direction_next_release(d)
    cdef int64_t change = schedule_next_ns(d)
    if change >= 0 and (release < 0 or change < release):
        return change
    return release


cdef inline void tq_place(Engine e, int pos, int i) noexcept nogil:
    e.tq[pos] = i
    e.dirs[i].tq_pos = pos


cdef void tq_sift_up(Engine e, int pos) noexcept nogil:
    cdef int i = e.tq[pos]
    cdef int parent
    cdef int64_t key = e.dirs[i].tq_key
    while pos > 0:
        parent = (pos - 1) >> 1
        if e.dirs[e.tq[parent]].tq_key <= key:
            break
        tq_place(e, pos, e.tq[parent])
        pos = parent
    tq_place(e, pos, i)


cdef void tq_sift_down(Engine e, int pos) noexcept nogil:
    cdef int i = e.tq[pos]
    cdef int child
    cdef int64_t key = e.dirs[i].tq_key
    while True:
        child = 2 * pos + 1
        if child >= e.tq_len:
            break
        if child + 1 < e.tq_len and e.dirs[e.tq[child + 1]].tq_key < e.dirs[e.tq[child]].tq_key:
            child += 1
        if key <= e.dirs[e.tq[child]].tq_key:
            break
        tq_place(e, pos, e.tq[child])
        pos = child
    tq_place(e, pos, i)


cdef void tq_remove(Engine e, int pos) noexcept nogil:
    cdef int gone = e.tq[pos]
    cdef int last
    e.tq_len -= 1
    e.dirs[gone].tq_pos = -1
    if pos < e.tq_len:
        last = e.tq[e.tq_len]
        tq_place(e, pos, last)
        tq_sift_up(e, pos)
        tq_sift_down(e, e.dirs[last].tq_pos)


cdef void tq_update(Engine e, int i) noexcept nogil:
    """Re-key direction i after its packets or schedule changed."""
    cdef Direction *d = &e.dirs[i]
    cdef int64_t key = direction_deadline(d)
    cdef int64_t old
    if d.tq_pos < 0:
        if key < 0:
            return
        d.tq_key = key
        tq_place(e, e.tq_len, i)
        e.tq_len += 1
        tq_sift_up(e, e.tq_len - 1)
    elif key < 0:
        tq_remove(e, d.tq_pos)
    else:
        old = d.tq_key
        d.tq_key = key
        if key < old:
            tq_sift_up(e, d.tq_pos)
        elif key > old:
            tq_sift_down(e, d.tq_pos)


cdef void serve_due(Engine e, int i, int64_t now) noexcept nogil:
    """A direction whose deadline has come: its scheduled changes, then its releases."""
    cdef Direction *d = &e.dirs[i]
    cdef int64_t change = schedule_next_ns(d)
    cdef int64_t t
    if change >= 0 and change <= now:
        # Frames still in the socket arrived before now: judge them first
        # (each on its own stamp), then apply what is due with no frame left
        # that could have arrived before it.
        while receive_batch(e, i) == e.batch:
            pass
        t = clock_ns()
        schedule_apply_due(d, t, t)
    release_due(e, i, now)


# ------------------------------------------------------------------ the loop

cdef void engine_loop(Engine e) noexcept nogil:
    cdef int i, j, r, n_due
    cdef int64_t now, deadline, wait, t_wait
    cdef int64_t woke = 0
    cdef timespec timeout, nap
    cdef int64_t need
    cdef bint forced
    cdef uint64_t want, drained
    while not csp_load_int(&e.stop_flag):
        if csp_load_int(&e.control_flag):
            # rare (a live change): a pass over every direction is fine here
            csp_store_int(&e.control_flag, 0)
            for i in range(e.n_dirs):
                direction_take_pending(&e.dirs[i])
                direction_take_schedule(&e.dirs[i])
                tq_update(e, i)
        now = clock_ns()
        # Every due direction leaves the queue before any is served: one
        # whose socket is full (EAGAIN) stays due without starving the rest.
        n_due = 0
        while e.tq_len > 0 and e.dirs[e.tq[0]].tq_key <= now:
            e.due[n_due] = e.tq[0]
            n_due += 1
            tq_remove(e, 0)
        for j in range(n_due):
            serve_due(e, e.due[j], now)
            tq_update(e, e.due[j])
        deadline = e.dirs[e.tq[0]].tq_key if e.tq_len > 0 else -1
        # Counters are consistent here: between whole packets.
        want = csp_load_u64(&e.snap_request)
        if want != csp_load_u64(&e.snap_done):
            for i in range(e.n_dirs):
                take_snapshot(e, i)
            csp_store_u64(&e.snap_done, want)
        # Sleep budget: under SCHED_FIFO the kernel throttles a real-time
        # thread that runs more than sched_rt_runtime_us/period (95 %) and
        # then stalls it for tens of ms. A steady stream keeps every deadline
        # inside the spin window, so the loop would never sleep: it makes sure
        # it has slept at least doze_ns in every max_spin_ns window, with an
        # uninterruptible sleep (an epoll sleep ends at the next frame).
        # The nap goes where it delays nothing: once the window is over, at
        # the first moment the next release is further away than the nap
        # plus a wake-up guard; only after two windows without such a moment
        # is it forced.
        if now - e.window_start_ns >= e.max_spin_ns:
            forced = now - e.window_start_ns >= 2 * e.max_spin_ns
            # forced after two windows: owe both naps
            need = e.doze_ns * (2 if forced else 1) - e.window_slept_ns
            if need <= 0:
                e.window_start_ns = now
                e.window_slept_ns = 0
            elif forced or deadline < 0 or deadline - now >= need + DOZE_GUARD_NS:
                nap.tv_sec = need // 1000000000
                nap.tv_nsec = need % 1000000000
                nanosleep(&nap, NULL)
                e.dozes += 1
                now = clock_ns()
                e.window_start_ns = now
                e.window_slept_ns = 0
        # A spell of work longer than the stall threshold since the last
        # wake-up: deadlines passed unserved (preempted, throttled, frozen).
        t_wait = clock_ns()
        if woke > 0 and t_wait - woke > e.stall_threshold_ns:
            note_stall(e, woke, t_wait - woke)
        if deadline < 0:
            r = epoll_pwait2(e.epfd, e.events, MAX_EVENTS, NULL, NULL)
            woke = clock_ns()
            e.window_slept_ns += woke - now
        else:
            wait = deadline - now - e.spin_ns
            if wait <= 0:
                wait = 0
                timeout.tv_sec = 0      # inside the spin window: poll, do not sleep
                timeout.tv_nsec = 0
                r = epoll_pwait2(e.epfd, e.events, MAX_EVENTS, &timeout, NULL)
                woke = clock_ns()
            else:
                timeout.tv_sec = wait // 1000000000
                timeout.tv_nsec = wait % 1000000000
                r = epoll_pwait2(e.epfd, e.events, MAX_EVENTS, &timeout, NULL)
                woke = clock_ns()
                e.window_slept_ns += woke - now
            # Back later than asked by more than the threshold (timed out,
            # woken by a frame or interrupted: a stop signal ends the wait
            # with EINTR): the loop was not running when it should have been
            # (a VM's vCPU not scheduled, a frozen process), not sleeping.
            if woke - (t_wait + wait) > e.stall_threshold_ns:
                note_stall(e, t_wait + wait, woke - (t_wait + wait))
        if r <= 0:
            continue
        e.wakeups += 1
        for j in range(r):
            i = <int>e.events[j].data.u32
            if i == e.n_dirs:
                read(e.wake_fd, &drained, sizeof(drained))
            else:
                receive_batch(e, i)
                tq_update(e, i)
