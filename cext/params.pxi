# Link-direction parameters as the loop sees them: an immutable C struct.
# Python builds a new one for every change and publishes it with one atomic
# pointer swap (netem's "validate, then swap in atomically"), so a packet is
# shaped either wholly by the old parameters or wholly by the new.

# Jitter distributions, in LinkParams.DISTRIBUTIONS order.
cdef enum:
    DIST_UNIFORM = 0
    DIST_NORMAL = 1
    DIST_PARETO = 2
    DIST_PARETONORMAL = 3
    DIST_COUNT = 4

# A Mahimahi delivery opportunity carries one MTU-sized packet's bytes.
cdef enum:
    TRACE_OPPORTUNITY_BYTES = 1500

# The largest trace entry (ms) whose ns still fit an int64_t.
cdef int64_t TRACE_MS_MAX = 9223372036854775807 // 1000000

cdef struct Params:
    int64_t delay_ns
    int64_t jitter_ns
    double jitter_correlation
    int distribution
    LossParams loss          # loss.pxi
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
        csp_free(p.trace_ns)
        csp_free(p)


cdef object param_field(dict d, str key):
    """d[key], or an EngineParamError naming the key the dict lacks."""
    try:
        return d[key]
    except KeyError:
        raise EngineParamError(f"engine parameters lack {key!r}: build them with LinkParams.to_engine()") from None


cdef int64_t int64_field(object value, str key) except? -1:
    """`value` as an int64_t: an EngineRangeError naming `key` if it does not fit."""
    try:
        return value
    except OverflowError:
        raise EngineRangeError(f"engine parameter {key} {value!r} does not fit a 64-bit integer") from None
    except TypeError:
        raise EngineParamError(f"engine parameter {key} {value!r} is not a whole number") from None


cdef double double_field(object value, str key) except? -1.0:
    """`value` as a double: an EngineParamError naming `key` if it is not a number."""
    try:
        return value
    except (TypeError, OverflowError):
        raise EngineParamError(f"engine parameter {key} {value!r} is not a number") from None


cdef int enum_field(object value, str key, int count) except -1:
    """`value` as one of `count` enum members 0..count-1."""
    cdef int64_t v = int64_field(value, key)
    if not 0 <= v < count:
        raise EngineParamError(f"engine parameter {key} {v} is outside 0..{count - 1}")
    return <int>v


cdef Params *params_from_dict(dict d) except NULL:
    """Build a Params from LinkParams.to_engine(); EngineParamError (or its
    EngineRangeError) names a key that is missing or a value the engine cannot hold."""
    cdef Params *p = <Params *>csp_calloc(1, sizeof(Params))
    if p == NULL:
        raise MemoryError()
    cdef int i
    cdef int64_t ms
    try:
        p.delay_ns = int64_field(param_field(d, "delay_ns"), "delay_ns")
        p.jitter_ns = int64_field(param_field(d, "jitter_ns"), "jitter_ns")
        p.jitter_correlation = double_field(param_field(d, "jitter_correlation"), "jitter_correlation")
        p.distribution = enum_field(param_field(d, "distribution"), "distribution", DIST_COUNT)
        loss_params_read(&p.loss, param_field(d, "loss_kind"), param_field(d, "loss_p"))
        p.duplicate = double_field(param_field(d, "duplicate"), "duplicate")
        p.corrupt = double_field(param_field(d, "corrupt"), "corrupt")
        p.reorder = double_field(param_field(d, "reorder"), "reorder")
        p.rate_bps = int64_field(param_field(d, "rate_bps"), "rate_bps")
        p.overhead_bytes = int64_field(param_field(d, "overhead_bytes"), "overhead_bytes")
        p.limit_packets = int64_field(param_field(d, "limit_packets"), "limit_packets")
        p.limit_bytes = int64_field(param_field(d, "limit_bytes"), "limit_bytes")
        trace = param_field(d, "trace_ms")
        p.trace_len = len(trace)
        if p.trace_len:
            p.trace_ns = <int64_t *>csp_malloc(p.trace_len * sizeof(int64_t))
            if p.trace_ns == NULL:
                raise MemoryError()
            for i in range(p.trace_len):
                ms = int64_field(trace[i], "trace_ms")
                if not 0 <= ms <= TRACE_MS_MAX:
                    raise EngineRangeError(f"capacity trace entry {ms} ms is outside 0..{TRACE_MS_MAX} ms")
                p.trace_ns[i] = ms * 1000000
            p.trace_period_ns = p.trace_ns[p.trace_len - 1]
            if p.trace_period_ns <= 0:
                raise EngineParamError("capacity trace period must be > 0 ms")
        if p.delay_ns < 0 or p.jitter_ns < 0 or p.rate_bps < 0 or p.limit_packets < 0 or p.limit_bytes < 0:
            raise EngineParamError("negative link parameter")
    except BaseException:
        params_free(p)
        raise
    return p
