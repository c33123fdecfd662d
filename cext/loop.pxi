# The forwarding loop of an Engine (engine.pyx includes this after the class):
# receive into the pipeline, release in time order, one timer queue over all
# directions (its fidelity bookkeeping is in fidelity.pxi). Runs with the
# GIL released: nothing here touches a Python object.


cdef inline void take_snapshot(Engine e, int i) noexcept nogil:
    backlog_drain(&e.dirs[i], clock_ns())    # the queue as of now, not as of the last arrival
    e.snapshot[i] = e.dirs[i].counters
    e.snapshot[i].in_flight = e.dirs[i].heap_len
    e.snapshot[i].queued = e.dirs[i].backlog_count


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
