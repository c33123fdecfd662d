# Link-direction parameters as the loop sees them: an immutable C struct.
# Python builds a new one for every change and publishes it with one atomic
# pointer swap (netem's "validate, then swap in atomically"), so a packet is
# shaped either wholly by the old parameters or wholly by the new.
from libc.stdlib cimport malloc, calloc, free

# Jitter distributions, in LinkParams.DISTRIBUTIONS order.
cdef enum:
    DIST_UNIFORM = 0
    DIST_NORMAL = 1
    DIST_PARETO = 2
    DIST_PARETONORMAL = 3

# Loss models, in LinkParams.LOSS_MODELS order.
cdef enum:
    LOSS_NONE = 0
    LOSS_RANDOM = 1
    LOSS_GEMODEL = 2
    LOSS_STATE = 3

# A Mahimahi delivery opportunity carries one MTU-sized packet's bytes.
cdef enum:
    TRACE_OPPORTUNITY_BYTES = 1500

cdef struct Params:
    int64_t delay_ns
    int64_t jitter_ns
    double jitter_correlation
    int distribution
    int loss_kind
    double loss_p[5]
    double duplicate
    double corrupt
    double reorder
    int64_t rate_bps
    int64_t overhead_bytes
    int64_t limit_packets
    int64_t limit_bytes
    int64_t *trace_ns        # opportunity offsets within one period, ns
    int trace_len
    int64_t trace_period_ns


cdef void params_free(Params *p) noexcept nogil:
    if p != NULL:
        free(p.trace_ns)
        free(p)


cdef Params *params_from_dict(dict d) except NULL:
    """Build a Params from LinkParams.to_engine(); raises on missing keys."""
    cdef Params *p = <Params *>calloc(1, sizeof(Params))
    if p == NULL:
        raise MemoryError()
    cdef int i
    try:
        p.delay_ns = d["delay_ns"]
        p.jitter_ns = d["jitter_ns"]
        p.jitter_correlation = d["jitter_correlation"]
        p.distribution = d["distribution"]
        p.loss_kind = d["loss_kind"]
        loss_p = d["loss_p"]
        for i in range(5):
            p.loss_p[i] = loss_p[i]
        p.duplicate = d["duplicate"]
        p.corrupt = d["corrupt"]
        p.reorder = d["reorder"]
        p.rate_bps = d["rate_bps"]
        p.overhead_bytes = d["overhead_bytes"]
        p.limit_packets = d["limit_packets"]
        p.limit_bytes = d["limit_bytes"]
        trace = d["trace_ms"]
        p.trace_len = len(trace)
        if p.trace_len:
            p.trace_ns = <int64_t *>malloc(p.trace_len * sizeof(int64_t))
            if p.trace_ns == NULL:
                raise MemoryError()
            for i in range(p.trace_len):
                p.trace_ns[i] = <int64_t>trace[i] * 1000000
            p.trace_period_ns = p.trace_ns[p.trace_len - 1]
            if p.trace_period_ns <= 0:
                raise ValueError("capacity trace period must be > 0 ms")
        if p.delay_ns < 0 or p.jitter_ns < 0 or p.rate_bps < 0 or p.limit_packets < 0 or p.limit_bytes < 0:
            raise ValueError("negative link parameter")
    except BaseException:
        params_free(p)
        raise
    return p
