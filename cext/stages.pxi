# The models of the pipeline's stages (the order they run in is direction.pxi's
# pipeline_admit): 6 jitter, 5 rate (and capacity traces), 4 queue
# admission (stage 2, loss, is loss.pxi). Each takes the direction, its Params and the time as arguments.


# ---------------------------------------------------------------- stage 6: jitter

cdef inline double jitter_standard(Direction *d, int distribution) noexcept nogil:
    """A jitter sample with mean 0 and the distribution's unit scale:
    uniform on [-1, 1] (netem: delay ± jitter), the others with std dev 1."""
    cdef double u, pareto, xm
    if distribution == DIST_NORMAL:
        return prng_normal(&d.rng)
    if distribution == DIST_PARETO or distribution == DIST_PARETONORMAL:
        # Pareto(alpha=3, xm) has mean 1.5 xm and std xm*sqrt(3)/2: shift and
        # scale it to mean 0, std 1 (heavy right tail: occasional late packets).
        u = 1.0 - prng_uniform(&d.rng)
        xm = 2.0 / sqrt(3.0)
        pareto = xm * (u ** (-1.0 / PARETO_ALPHA)) - 1.5 * xm
        if distribution == DIST_PARETO:
            return pareto
        # iproute2's paretonormal: a quarter normal, three quarters Pareto,
        # renormalised to unit variance.
        return (0.25 * prng_normal(&d.rng) + 0.75 * pareto) / sqrt(0.25 * 0.25 + 0.75 * 0.75)
    return 2.0 * prng_uniform(&d.rng) - 1.0


cdef inline int64_t jitter_sample_ns(Direction *d, Params *p) noexcept nogil:
    cdef double fresh, rho, z
    if p.jitter_ns <= 0:
        return 0
    fresh = jitter_standard(d, p.distribution)
    rho = p.jitter_correlation
    if rho > 0.0:
        # AR(1) keeps the variance (netem's (1-rho)*u + rho*last shrinks it).
        z = rho * d.jitter_last + sqrt(1.0 - rho * rho) * fresh
    else:
        z = fresh
    d.jitter_last = z
    return <int64_t>(z * p.jitter_ns)


# ---------------------------------------------------------------- stage 5: rate

cdef inline int64_t _trace_opportunity_ns(Direction *d, Params *p) noexcept nogil:
    return d.trace_base_ns + p.trace_ns[d.trace_idx]


cdef inline void _trace_next(Direction *d, Params *p) noexcept nogil:
    d.trace_idx += 1
    if d.trace_idx >= p.trace_len:
        d.trace_idx = 0
        d.trace_base_ns += p.trace_period_ns
    d.trace_left_bytes = TRACE_OPPORTUNITY_BYTES


cdef inline int64_t trace_departure(Direction *d, Params *p, int64_t ready_ns, int64_t nbytes) noexcept nogil:
    """Mahimahi semantics: each trace line is one 1500-byte delivery opportunity;
    a packet leaves at the opportunity that carries its last byte. Opportunities
    that pass with nothing queued are lost."""
    cdef int64_t periods, offset
    cdef int lo, hi, mid
    if d.trace_of != p:
        # New trace: start its first period now.
        d.trace_of = p
        d.trace_base_ns = ready_ns
        d.trace_idx = 0
        d.trace_left_bytes = TRACE_OPPORTUNITY_BYTES
    if _trace_opportunity_ns(d, p) < ready_ns:
        # Idle gap: jump to the first opportunity at or after ready_ns.
        if ready_ns - d.trace_base_ns >= p.trace_period_ns:
            periods = (ready_ns - d.trace_base_ns) // p.trace_period_ns
            d.trace_base_ns += periods * p.trace_period_ns
        offset = ready_ns - d.trace_base_ns
        lo = 0
        hi = p.trace_len
        while lo < hi:
            mid = (lo + hi) >> 1
            if p.trace_ns[mid] < offset:
                lo = mid + 1
            else:
                hi = mid
        if lo >= p.trace_len:
            d.trace_base_ns += p.trace_period_ns
            lo = 0
        d.trace_idx = lo
        d.trace_left_bytes = TRACE_OPPORTUNITY_BYTES
    while True:
        if d.trace_left_bytes == 0:
            _trace_next(d, p)
        if nbytes <= d.trace_left_bytes:
            d.trace_left_bytes -= nbytes
            return _trace_opportunity_ns(d, p)
        nbytes -= d.trace_left_bytes
        d.trace_left_bytes = 0


cdef inline int64_t serialization_departure(Direction *d, Params *p, int64_t arrival_ns, int32_t length) noexcept nogil:
    """When the packet's last bit has left the serializer."""
    cdef int64_t start = arrival_ns if arrival_ns > d.last_departure else d.last_departure
    cdef int64_t wire_bytes
    if p.trace_len > 0:
        d.last_departure = trace_departure(d, p, start, length)
    elif p.rate_bps > 0:
        wire_bytes = length + p.overhead_bytes
        d.last_departure = start + (wire_bytes * 8 * <int64_t>1000000000) // p.rate_bps
    else:
        d.last_departure = arrival_ns
    return d.last_departure


# ---------------------------------------------------------------- stage 4: queue

cdef inline void backlog_drain(Direction *d, int64_t now_ns) noexcept nogil:
    """Forget packets whose serialization has finished by now."""
    while d.backlog_count > 0 and d.backlog_departure[d.backlog_head] <= now_ns:
        d.backlog_total_bytes -= d.backlog_bytes[d.backlog_head]
        d.backlog_head += 1
        if d.backlog_head == d.capacity:
            d.backlog_head = 0
        d.backlog_count -= 1


cdef inline bint queue_admits(Direction *d, Params *p, int64_t now_ns, int32_t length) noexcept nogil:
    backlog_drain(d, now_ns)
    if p.rate_bps == 0 and p.trace_len == 0:
        return True          # an unlimited serializer never builds a queue
    if p.limit_packets > 0 and d.backlog_count >= p.limit_packets:
        return False
    if p.limit_bytes > 0 and d.backlog_total_bytes + length > p.limit_bytes:
        return False
    return True


cdef inline void bin_queue(Direction *d, int64_t arrival_ns) noexcept nogil:
    """Keep the largest queue (packets awaiting serialization) of the arrival's time bin."""
    cdef int64_t epoch = csp_load_i64(d.bin_epoch)
    cdef int64_t b
    if epoch <= 0 or arrival_ns < epoch:
        return
    b = (arrival_ns - epoch) // d.bin_ns
    if b < d.queue_bins_len and d.backlog_count > d.queue_bins[b]:
        d.queue_bins[b] = d.backlog_count


cdef inline void backlog_add(Direction *d, int64_t departure_ns, int32_t length) noexcept nogil:
    cdef int tail
    if d.backlog_count == d.capacity:
        return               # cannot happen: at most `capacity` packets in flight
    tail = d.backlog_head + d.backlog_count
    if tail >= d.capacity:
        tail -= d.capacity
    d.backlog_departure[tail] = departure_ns
    d.backlog_bytes[tail] = length
    d.backlog_count += 1
    d.backlog_total_bytes += length
