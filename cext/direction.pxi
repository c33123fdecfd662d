# One direction of one link: its state, its packets in flight and the
# per-packet pipeline. THE ORDER OF THE PIPELINE IS WRITTEN DOWN HERE ONCE
# (netem's order, see DESIGN.md "The fast path"):
#   1 outage  2 loss  3 duplicate/corrupt  4 queue admission  5 rate
#   6 delay + jitter  7 release in time order (loop.pxi)
# What each stage computes (loss models, jitter, rate, queue) is in stages.pxi;
# the order they run in is `pipeline_admit` here. The functions take the time
# as an argument and touch no socket, so the offline mode drives exactly this
# code on a virtual clock.
from libc.string cimport memcpy

# Why a packet was dropped; every drop has exactly one reason.
cdef enum:
    DROP_OUTAGE = 0      # link cut
    DROP_LOSS = 1        # loss model
    DROP_QUEUE = 2       # queue limit (packets or bytes) exceeded
    DROP_OVERFLOW = 3    # no free slot: more in flight than the engine holds
    DROP_MALFORMED = 4   # runt (< 14 B) or larger than the link's max frame
    DROP_SEND_ERROR = 5  # the kernel refused the frame on the way out (ENOBUFS...)
    N_DROP_REASONS = 6

DROP_REASON_NAMES = ("outage", "loss", "queue", "overflow", "malformed", "send_error")
assert len(DROP_REASON_NAMES) == N_DROP_REASONS
# the same words for a dropped frame's capture comment
cdef const char *DROP_COMMENTS[N_DROP_REASONS]
DROP_COMMENTS[DROP_OUTAGE] = b"dropped: outage"
DROP_COMMENTS[DROP_LOSS] = b"dropped: loss"
DROP_COMMENTS[DROP_QUEUE] = b"dropped: queue"
DROP_COMMENTS[DROP_OVERFLOW] = b"dropped: overflow"
DROP_COMMENTS[DROP_MALFORMED] = b"dropped: malformed"
DROP_COMMENTS[DROP_SEND_ERROR] = b"dropped: send_error"

cdef enum:
    ETH_HEADER_BYTES = 14

# Pareto shape used for pareto jitter (iproute2's tables use the same).
cdef double PARETO_ALPHA = 3.0


cdef enum:
    LATENESS_BINS = 16       # release-lateness histogram: < 1, 2, 4 ... 16384 µs, and above


cdef struct Counters:
    uint64_t rx_packets
    uint64_t rx_bytes
    uint64_t tx_packets
    uint64_t tx_bytes
    uint64_t duplicated
    uint64_t corrupted
    uint64_t drop_packets[N_DROP_REASONS]
    uint64_t drop_bytes[N_DROP_REASONS]
    uint64_t in_flight
    uint64_t queued          # of those, awaiting the serializer (a rate-limited link's queue)
    # how late each release left vs its scheduled time: bin k counts
    # lateness < 2^k µs (the last bin also everything above); the engine's
    # own timing error, separate from any queueing the model adds
    uint64_t late_hist[LATENESS_BINS]
    int64_t late_max_ns
    uint64_t late_sum_ns     # every release's lateness added up: the exact mean with the histogram's count
    # |L_i - L_(i-1)| over consecutive releases added up: how much lateness can
    # have moved the delay variations of any stream crossing this direction (a
    # stall's burst adds about twice its length here, not its length squared
    # over the interval as in late_sum_ns)
    uint64_t late_change_sum_ns
    int64_t late_last_ns     # the previous release's lateness (>= 0), for late_change_sum_ns


cdef struct Slot:
    int64_t release_ns
    uint64_t seq           # arrival order: ties on release_ns keep FIFO order
    int32_t length
    int32_t reserved


# Timeline changes handed to the engine before they are due (cut, restore,
# set): each is applied at its exact instant on the engine's clock, judged on
# every frame's kernel arrival stamp, not when a control thread gets round
# to it (which slips by milliseconds on a busy machine).
cdef enum:
    SCHED_CUT = 0
    SCHED_RESTORE = 1
    SCHED_SET = 2


cdef struct Scheduled:
    int64_t at_ns           # the instant (CLOCK_REALTIME, as arrival stamps)
    int op                  # SCHED_*
    Params *params          # SCHED_SET: the new parameters, owned until applied
    int64_t applied_ns      # engine clock when the loop applied it; 0 = not yet
    int64_t last_before_ns  # arrival of the last frame judged before it; 0 = none
    int64_t first_after_ns  # arrival of the first frame judged after it; 0 = none yet


cdef struct Schedule:
    Scheduled *items        # sorted by at_ns
    int len
    int next                # first item not yet applied
    int awaiting_first      # first applied item still waiting for a frame after it
    Schedule *retired       # the schedule this one replaced: kept (freed with this
                            # one) so a status read racing the swap never reads freed memory


cdef enum:
    TAP_FIRST = 0
    TAP_LAST = 1
    TAP_MAX = 16            # probe streams tapped per direction


cdef struct Direction:
    Params *params          # owned by the loop thread
    Params *pending         # published by Python, taken by the loop (atomic swap)
    int outage              # 1 while the link is cut (atomic)
    Prng rng
    # model state that survives parameter changes
    int loss_state          # the loss model's (loss.pxi)
    double jitter_last      # last standardized jitter sample (correlation)
    int64_t last_departure  # when the serializer is next free
    int64_t last_release    # FIFO clamp when reordering is off
    # capacity-trace position
    int64_t trace_base_ns
    int trace_idx
    int64_t trace_left_bytes
    Params *trace_of        # the Params the trace position belongs to
    # backlog: packets not yet fully serialized (the queue the limit applies to)
    int64_t *backlog_departure
    int32_t *backlog_bytes
    int backlog_head
    int backlog_count
    int64_t backlog_total_bytes
    # packet pool: slots, frames, a free stack and a min-heap on (release, seq).
    # Slots are handed out fresh (0, 1, 2, ...) until the pool has been used
    # once, then from the free stack: an idle link's pool is never touched,
    # so it costs address space, not resident memory.
    int capacity
    int slot_bytes
    Slot *slots
    uint8_t *frames
    int *free_stack
    int free_top
    int fresh_next
    int *heap
    int heap_len
    uint64_t next_seq
    Counters counters
    # timeline changes handed over before they are due (see "schedule" below)
    Schedule *schedule      # owned by the loop thread
    Schedule *pending_schedule  # published by Python, taken by the loop (atomic swap)
    int64_t last_arrival_ns # arrival stamp of the last frame admitted
    # the engine's timer queue (engine.pyx): this direction's place in it
    int tq_pos
    int64_t tq_key
    # probe taps: engine-side stamps of caspian probes (UDP to a tapped port,
    # the sequence number first in the payload), so the emulated network's
    # own one-way delay is known apart from the hosts' stacks. Each tapped
    # stream (its destination port) has a role here: TAP_FIRST on the source
    # host's link, stamped at arrival; TAP_LAST on the target host's, stamped
    # at release (the entry is taken at arrival with time 0 and the frame's
    # slot carries its index; a frame dropped on the way leaves it at 0).
    # (stream, seq, time) entries appended up to tap_cap.
    int tap_n               # tapped streams (atomic: 0 = none; the tables below are set before)
    int tap_ports[TAP_MAX]
    int tap_roles[TAP_MAX]
    int64_t *tap_t
    int64_t *tap_seq
    int32_t *tap_stream     # index into tap_ports of each entry
    int tap_len             # (atomic: entries below it are complete)
    int tap_cap
    uint64_t tap_overflow
    # packet capture (capture.pxi): the shard's ring while this direction is
    # captured, else NULL (atomic; capture_if is set before it is published).
    # Frames in are recorded on pcapng interface capture_if (at arrival, or
    # once with the drop reason), frames out on capture_if + 1 at release.
    CaptureRing *capture
    int32_t capture_if
    # queue occupancy over time: the most packets awaiting serialization in
    # each time bin (bin k covers [*bin_epoch + k bin_ns, + bin_ns)); NULL until
    # the engine's fidelity bins start (Engine.set_fidelity)
    int32_t *queue_bins
    int32_t queue_bins_len
    const int64_t *bin_epoch
    int64_t bin_ns


cdef int direction_init(Direction *d, int capacity, int slot_bytes, uint64_t seed) noexcept nogil:
    """Allocate a direction's pool. Nothing here is written before a packet
    needs it (slots come fresh, see `fresh_next`): the OS maps the pages of an
    idle link lazily, so a testbed of hundreds of idle links stays small."""
    d.capacity = capacity
    d.slot_bytes = slot_bytes
    d.slots = <Slot *>csp_malloc(capacity * sizeof(Slot))
    d.frames = <uint8_t *>csp_malloc(<size_t>capacity * slot_bytes)
    d.free_stack = <int *>csp_malloc(capacity * sizeof(int))
    d.heap = <int *>csp_malloc(capacity * sizeof(int))
    d.backlog_departure = <int64_t *>csp_malloc(capacity * sizeof(int64_t))
    d.backlog_bytes = <int32_t *>csp_malloc(capacity * sizeof(int32_t))
    if (d.slots == NULL or d.frames == NULL or d.free_stack == NULL or d.heap == NULL
            or d.backlog_departure == NULL or d.backlog_bytes == NULL):
        return -1
    d.free_top = 0
    d.fresh_next = 0
    d.heap_len = 0
    d.next_seq = 0
    prng_seed(&d.rng, seed)
    d.loss_state = LOSS_STATE_INITIAL
    d.jitter_last = 0.0
    d.trace_of = NULL
    d.schedule = NULL
    d.pending_schedule = NULL
    d.last_arrival_ns = 0
    d.tq_pos = -1
    d.tq_key = -1
    d.tap_n = 0
    d.capture = NULL
    d.capture_if = 0
    d.queue_bins = NULL
    d.queue_bins_len = 0
    d.bin_epoch = NULL
    d.bin_ns = 0
    d.tap_t = NULL
    d.tap_seq = NULL
    d.tap_stream = NULL
    d.tap_len = 0
    d.tap_cap = 0
    return 0


cdef void direction_free(Direction *d) noexcept nogil:
    params_free(d.params)
    params_free(<Params *>csp_xchg_ptr(<void **>&d.pending, NULL))
    d.params = NULL
    csp_free(d.slots); csp_free(d.frames); csp_free(d.free_stack); csp_free(d.heap)
    csp_free(d.backlog_departure); csp_free(d.backlog_bytes)
    d.slots = NULL; d.frames = NULL; d.free_stack = NULL; d.heap = NULL
    d.backlog_departure = NULL; d.backlog_bytes = NULL
    schedule_free(d.schedule)
    schedule_free(<Schedule *>csp_xchg_ptr(<void **>&d.pending_schedule, NULL))
    d.schedule = NULL
    csp_free(d.queue_bins)
    d.queue_bins = NULL
    csp_free(d.tap_t); csp_free(d.tap_seq); csp_free(d.tap_stream)
    d.tap_t = NULL; d.tap_seq = NULL; d.tap_stream = NULL


cdef inline void direction_take_pending(Direction *d) noexcept nogil:
    """Swap in parameters Python published; packets in flight keep their times."""
    cdef Params *fresh = <Params *>csp_xchg_ptr(<void **>&d.pending, NULL)
    if fresh != NULL:
        params_free(d.params)
        d.params = fresh
        # The trace position belongs to the old Params (compared by pointer,
        # and freed memory may be reused): a change starts the trace afresh.
        d.trace_of = NULL


# ---------------------------------------------------------------- heap

cdef inline bint _earlier(Direction *d, int a, int b) noexcept nogil:
    cdef Slot *x = &d.slots[a]
    cdef Slot *y = &d.slots[b]
    return x.release_ns < y.release_ns or (x.release_ns == y.release_ns and x.seq < y.seq)


cdef inline void heap_push(Direction *d, int slot) noexcept nogil:
    cdef int i = d.heap_len
    cdef int parent
    d.heap_len += 1
    while i > 0:
        parent = (i - 1) >> 1
        if not _earlier(d, slot, d.heap[parent]):
            break
        d.heap[i] = d.heap[parent]
        i = parent
    d.heap[i] = slot


cdef inline int heap_pop(Direction *d) noexcept nogil:
    cdef int top = d.heap[0]
    cdef int last
    cdef int i = 0
    cdef int child
    d.heap_len -= 1
    if d.heap_len > 0:
        last = d.heap[d.heap_len]
        while True:
            child = 2 * i + 1
            if child >= d.heap_len:
                break
            if child + 1 < d.heap_len and _earlier(d, d.heap[child + 1], d.heap[child]):
                child += 1
            if not _earlier(d, d.heap[child], last):
                break
            d.heap[i] = d.heap[child]
            i = child
        d.heap[i] = last
    return top


cdef inline int64_t direction_next_release(Direction *d) noexcept nogil:
    """Release time of the earliest packet in flight, or -1 when none."""
    if d.heap_len == 0:
        return -1
    return d.slots[d.heap[0]].release_ns


cdef inline uint8_t *slot_frame(Direction *d, int slot) noexcept nogil:
    return d.frames + <size_t>slot * d.slot_bytes


cdef inline void slot_release(Direction *d, int slot) noexcept nogil:
    d.free_stack[d.free_top] = slot
    d.free_top += 1


# ---------------------------------------------------------------- stage 0: schedule

cdef void schedule_free(Schedule *s) noexcept nogil:
    cdef int i
    if s == NULL:
        return
    for i in range(s.len):
        params_free(s.items[i].params)
    csp_free(s.items)
    schedule_free(s.retired)
    csp_free(s)


cdef inline void direction_take_schedule(Direction *d) noexcept nogil:
    """Swap in a schedule Python published (the old one, applied or not, goes)."""
    cdef Schedule *fresh = <Schedule *>csp_xchg_ptr(<void **>&d.pending_schedule, NULL)
    if fresh != NULL:
        fresh.retired = d.schedule
        csp_xchg_ptr(<void **>&d.schedule, fresh)


cdef inline int64_t schedule_next_ns(Direction *d) noexcept nogil:
    """Instant of the next change not yet applied, or -1."""
    if d.schedule == NULL or d.schedule.next >= d.schedule.len:
        return -1
    return d.schedule.items[d.schedule.next].at_ns


cdef void schedule_apply_due(Direction *d, int64_t t_ns, int64_t now_ns) noexcept nogil:
    """Apply every change due at `t_ns` (a frame's arrival stamp, or the
    loop's clock once the socket holds no earlier frame)."""
    cdef Schedule *s = d.schedule
    cdef Scheduled *item
    while s.next < s.len and s.items[s.next].at_ns <= t_ns:
        item = &s.items[s.next]
        if item.op == SCHED_CUT:
            csp_store_int(&d.outage, 1)
        elif item.op == SCHED_RESTORE:
            csp_store_int(&d.outage, 0)
        elif item.params != NULL:
            params_free(d.params)
            d.params = item.params
            item.params = NULL
            d.trace_of = NULL   # a change starts a capacity trace afresh
        item.last_before_ns = d.last_arrival_ns
        item.applied_ns = now_ns
        s.next += 1


cdef inline void schedule_on_frame(Direction *d, int64_t arrival_ns, int64_t now_ns) noexcept nogil:
    """Before a frame is judged: apply what is due by its arrival, and note it
    as the first frame after every change applied before it."""
    cdef Schedule *s = d.schedule
    if s.next < s.len and s.items[s.next].at_ns <= arrival_ns:
        schedule_apply_due(d, arrival_ns, now_ns)
    while s.awaiting_first < s.next:
        s.items[s.awaiting_first].first_after_ns = arrival_ns
        s.awaiting_first += 1


# ---------------------------------------------------------------- probe taps

cdef inline int64_t probe_seq(const uint8_t *frame, int32_t length, int *port) noexcept nogil:
    """The sequence number of a UDP datagram's first 8 payload bytes (IPv4 or
    IPv6), its destination port in `port`; -1 for anything else."""
    cdef int udp, k
    cdef int64_t seq = 0
    if length < ETH_HEADER_BYTES + 20:
        return -1
    if frame[12] == 0x08 and frame[13] == 0x00:
        if frame[23] != 17:
            return -1
        udp = ETH_HEADER_BYTES + (frame[14] & 0x0F) * 4
    elif frame[12] == 0x86 and frame[13] == 0xDD:
        if frame[20] != 17:
            return -1
        udp = ETH_HEADER_BYTES + 40
    else:
        return -1
    if udp + 16 > length:
        return -1
    port[0] = (<int>frame[udp + 2] << 8) | frame[udp + 3]
    for k in range(8):
        seq = (seq << 8) | frame[udp + 8 + k]
    return seq


cdef inline int tap_stream_of(Direction *d, int n, int port) noexcept nogil:
    """The index of the tapped stream with destination `port`, or -1."""
    cdef int k
    for k in range(n):
        if d.tap_ports[k] == port:
            return k
    return -1


cdef inline int tap_record(Direction *d, int stream, int64_t seq, int64_t t_ns) noexcept nogil:
    """Append an entry; its index, or -1 when full (counted as overflow)."""
    cdef int n = d.tap_len
    if n >= d.tap_cap:
        d.tap_overflow += 1
        return -1
    d.tap_seq[n] = seq
    d.tap_t[n] = t_ns
    d.tap_stream[n] = stream
    csp_store_int(&d.tap_len, n + 1)
    return n


cdef inline void tap_released(Direction *d, int32_t tag, int64_t now) noexcept nogil:
    """Stamp the release of a frame whose slot carries tap entry `tag` - 1 (the
    first release of a duplicated frame counts)."""
    cdef int entry = tag - 1
    if entry < csp_load_int(&d.tap_len) and d.tap_t[entry] == 0:
        csp_store_i64(&d.tap_t[entry], now)


# ---------------------------------------------------------------- the pipeline

cdef inline void count_lateness(Direction *d, int64_t late_ns) noexcept nogil:
    cdef int64_t us = late_ns // 1000
    cdef int k = 0
    if late_ns > d.counters.late_max_ns:
        d.counters.late_max_ns = late_ns
    cdef int64_t late = late_ns if late_ns > 0 else 0
    d.counters.late_sum_ns += <uint64_t>late
    if late >= d.counters.late_last_ns:
        d.counters.late_change_sum_ns += <uint64_t>(late - d.counters.late_last_ns)
    else:
        d.counters.late_change_sum_ns += <uint64_t>(d.counters.late_last_ns - late)
    d.counters.late_last_ns = late
    while k < LATENESS_BINS - 1 and us >= (<int64_t>1 << k):
        k += 1
    d.counters.late_hist[k] += 1


cdef inline void count_drop(Direction *d, int reason, int32_t length) noexcept nogil:
    d.counters.drop_packets[reason] += 1
    d.counters.drop_bytes[reason] += length


cdef inline void drop_frame(Direction *d, int reason, const uint8_t *frame, int32_t length,
                            int64_t arrival_ns) noexcept nogil:
    """Count a dropped frame and, when captured, record it once with its reason."""
    count_drop(d, reason, length)
    cdef CaptureRing *cap = <CaptureRing *>csp_load_ptr(<void **>&d.capture)
    if cap != NULL:
        capture_block(cap, d.capture_if, arrival_ns, frame, length, EPB_INBOUND, DROP_COMMENTS[reason])


cdef inline void capture_in(Direction *d, const uint8_t *frame, int32_t length, int64_t arrival_ns) noexcept nogil:
    """Record a frame admitted into flight, at its kernel arrival stamp."""
    cdef CaptureRing *cap = <CaptureRing *>csp_load_ptr(<void **>&d.capture)
    if cap != NULL:
        capture_block(cap, d.capture_if, arrival_ns, frame, length, EPB_INBOUND, NULL)


cdef inline void capture_out(Direction *d, const uint8_t *frame, int32_t length, int64_t release_ns) noexcept nogil:
    """Record a frame sent on, at its emulated release time."""
    cdef CaptureRing *cap = <CaptureRing *>csp_load_ptr(<void **>&d.capture)
    if cap != NULL:
        capture_block(cap, d.capture_if + 1, release_ns, frame, length, EPB_OUTBOUND, NULL)


cdef bint enqueue_copy(Direction *d, Params *p, int64_t arrival_ns, const uint8_t *frame, int32_t length, bint corrupt,
                       int32_t tag) noexcept nogil:
    """Stages 4-6 for one copy of a packet. Returns True when it is in flight."""
    cdef int slot
    cdef uint8_t *dst
    cdef uint32_t bit
    cdef int64_t departure, release
    if not queue_admits(d, p, arrival_ns, length):
        drop_frame(d, DROP_QUEUE, frame, length, arrival_ns)
        return False
    if d.free_top > 0:
        d.free_top -= 1
        slot = d.free_stack[d.free_top]
    elif d.fresh_next < d.capacity:
        slot = d.fresh_next
        d.fresh_next += 1
    else:
        drop_frame(d, DROP_OVERFLOW, frame, length, arrival_ns)
        return False
    dst = slot_frame(d, slot)
    memcpy(dst, frame, length)
    if corrupt and length > ETH_HEADER_BYTES:
        # Flip one bit past the Ethernet header: the frame still reaches its
        # node and fails a checksum there, as a residual bit error would.
        bit = prng_below(&d.rng, <uint32_t>(length - ETH_HEADER_BYTES) * 8)
        dst[ETH_HEADER_BYTES + (bit >> 3)] ^= <uint8_t>(1 << (bit & 7))
        d.counters.corrupted += 1
    departure = serialization_departure(d, p, arrival_ns, length)
    if departure > arrival_ns:
        backlog_add(d, departure, length)
        if d.queue_bins != NULL:
            bin_queue(d, arrival_ns)
    if p.reorder > 0.0 and prng_chance(&d.rng, p.reorder):
        release = departure            # netem `reorder`: this one skips the delay line
    else:
        release = departure + p.delay_ns + jitter_sample_ns(d, p)
        if release < departure:
            release = departure        # jitter never sends a packet back in time
        if p.reorder <= 0.0 and release < d.last_release:
            release = d.last_release   # keep FIFO order unless reordering is asked
    if release > d.last_release:
        d.last_release = release
    d.slots[slot].release_ns = release
    d.slots[slot].seq = d.next_seq
    d.slots[slot].length = length
    d.slots[slot].reserved = tag     # a tapped probe's tap entry + 1 on its TAP_LAST direction, else 0
    d.next_seq += 1
    heap_push(d, slot)
    capture_in(d, frame, length, arrival_ns)
    return True


cdef void pipeline_admit(Direction *d, int64_t arrival_ns, int64_t now_ns, const uint8_t *frame, int32_t length,
                         int32_t max_frame) noexcept nogil:
    """Run one received frame through stages 1-6 (DESIGN.md's order).

    `now_ns` is the engine's clock (when a scheduled change is applied);
    the frame is judged on its arrival stamp `arrival_ns`."""
    cdef Params *p
    cdef bint corrupt
    cdef int taps, stream, port = 0, entry
    cdef int64_t seq
    cdef int32_t tag = 0
    # 0. timeline changes due by the frame's arrival: a frame that arrived
    # before a change's instant is judged as before it, whenever it is read
    if d.schedule != NULL:
        schedule_on_frame(d, arrival_ns, now_ns)
    d.last_arrival_ns = arrival_ns
    taps = csp_load_int(&d.tap_n)
    if taps > 0:
        seq = probe_seq(frame, length, &port)
        stream = tap_stream_of(d, taps, port) if seq >= 0 else -1
        if stream >= 0:
            if d.tap_roles[stream] == TAP_FIRST:
                tap_record(d, stream, seq, arrival_ns)
            else:
                entry = tap_record(d, stream, seq, 0)
                if entry >= 0:
                    tag = <int32_t>(entry + 1)
    p = d.params
    d.counters.rx_packets += 1
    d.counters.rx_bytes += length
    if length < ETH_HEADER_BYTES or length > max_frame:
        drop_frame(d, DROP_MALFORMED, frame, length, arrival_ns)
        return
    # 1. outage
    if csp_load_int(&d.outage):
        drop_frame(d, DROP_OUTAGE, frame, length, arrival_ns)
        return
    # 2. loss
    if p.loss.kind != LOSS_NONE and loss_drops(&p.loss, &d.loss_state, &d.rng):
        drop_frame(d, DROP_LOSS, frame, length, arrival_ns)
        return
    # 3. duplicate / corrupt (the duplicate is an extra packet: counted in `duplicated`)
    corrupt = prng_chance(&d.rng, p.corrupt)
    # 4-6. queue, rate, delay
    enqueue_copy(d, p, arrival_ns, frame, length, corrupt, tag)
    if prng_chance(&d.rng, p.duplicate):
        d.counters.duplicated += 1
        enqueue_copy(d, p, arrival_ns, frame, length, False, tag)
