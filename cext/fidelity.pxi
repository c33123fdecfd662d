# The engine's own fidelity: how late the loop released frames over time,
# how long its queues were, when it stalled (preempted, throttled, frozen).
# The loop side (bin_lateness, note_stall) runs with the GIL released; the
# control side starts the bins and reports them for Engine.set_fidelity/fidelity.


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


cdef int fidelity_start(Engine e, int64_t epoch_ns, int64_t bin_ns, int64_t stall_threshold_ns) except -1:
    """Engine.set_fidelity: (re)start the bins at `epoch_ns`, set the stall threshold."""
    if bin_ns <= 0 or stall_threshold_ns <= 0:
        raise EngineParamError(f"bin_ns {bin_ns} and stall_threshold_ns {stall_threshold_ns} must be > 0")
    if e.late_bins == NULL and e.n_dirs > 0:
        e.late_bins = <int32_t *>csp_calloc(<size_t>e.n_dirs * LATE_BINS, sizeof(int32_t))
        if e.late_bins == NULL:
            raise MemoryError()
    elif e.late_bins != NULL:
        memset(e.late_bins, 0, <size_t>e.n_dirs * LATE_BINS * sizeof(int32_t))
    cdef int i
    cdef Direction *d
    csp_store_i64(&e.bin_epoch_ns, 0)     # the loop stops binning while the bins change
    cdef int32_t *fresh
    for i in range(e.n_dirs):
        d = &e.dirs[i]
        # what bin_queue reads is set before the bins are published (the loop
        # bins only when queue_bins is not NULL, and only from the epoch on)
        d.bin_epoch = &e.bin_epoch_ns
        d.bin_ns = bin_ns
        d.queue_bins_len = LATE_BINS
        if d.queue_bins == NULL:
            fresh = <int32_t *>csp_calloc(LATE_BINS, sizeof(int32_t))
            if fresh == NULL:
                raise MemoryError()
            csp_xchg_ptr(<void **>&d.queue_bins, fresh)
        else:
            memset(d.queue_bins, 0, LATE_BINS * sizeof(int32_t))
    e.bin_ns = bin_ns
    e.stall_threshold_ns = stall_threshold_ns
    csp_store_i64(&e.bin_epoch_ns, epoch_ns)
    return 0


cdef dict fidelity_report(Engine e):
    """Engine.fidelity: stalls, naps, wake-ups and the bins of every direction."""
    cdef uint64_t n = e.stalls
    cdef uint64_t first = n - STALL_RING if n > STALL_RING else 0
    cdef uint64_t k
    recent = [(e.stall_start[k % STALL_RING], e.stall_length[k % STALL_RING]) for k in range(first, n)]
    bins = []
    cdef int i, last, b
    for i in range(e.n_dirs if e.late_bins != NULL else 0):
        last = -1
        for b in range(LATE_BINS):
            if e.late_bins[<size_t>i * LATE_BINS + b] != 0:
                last = b
        bins.append([e.late_bins[<size_t>i * LATE_BINS + b] for b in range(last + 1)])
    queues = []
    cdef Direction *d
    for i in range(e.n_dirs):
        d = &e.dirs[i]
        last = -1
        for b in range(d.queue_bins_len if d.queue_bins != NULL else 0):
            if d.queue_bins[b] != 0:
                last = b
        queues.append([d.queue_bins[b] for b in range(last + 1)])
    return {
        "stalls": n, "stall_total_ns": e.stall_total_ns, "stall_max_ns": e.stall_max_ns,
        "stall_threshold_ns": e.stall_threshold_ns, "recent_stalls": recent,
        "dozes": e.dozes, "wakeups": e.wakeups,
        "bin_epoch_ns": e.bin_epoch_ns, "bin_ns": e.bin_ns, "late_bins_us": bins,
        "queue_bins": queues,
    }
