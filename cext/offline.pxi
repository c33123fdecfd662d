# Offline mode: the same per-direction pipeline (direction.pxi) driven by a
# synthetic packet stream on a virtual clock. No sockets, no real time, so
# loss rates, burst lengths, jitter distributions, rates and counters can be
# checked exactly in unit tests.
from cpython.array cimport array


def offline_run(dict params, arrivals_ns, lengths, uint64_t seed=1, *,
                int capacity=65536, outages=(), changes=(), int max_frame=1518):
    """Push packets through one direction's pipeline on a virtual clock.

    `arrivals_ns` and `lengths` are equal-length sequences of ints (arrival
    times must not decrease). `outages` is a sequence of (start_ns, end_ns)
    cuts; `changes` a sequence of (time_ns, params_dict) live parameter swaps,
    published exactly as the live engine does.

    Returns a dict: `delivered_id` and `release_ns` (arrays in release order; a
    duplicated packet appears twice), `outcome` (one per input packet: -1
    delivered, else the drop reason index into `drop_reasons`), `drop_reasons`
    and `counters` (as Engine.stats()).
    """
    cdef Py_ssize_t n = len(arrivals_ns)
    if len(lengths) != n:
        raise EngineParamError("arrivals_ns and lengths differ in length")
    cdef Direction d
    memset(&d, 0, sizeof(Direction))
    cdef int slot_bytes = (max_frame + 63) & ~63
    if direction_init(&d, capacity, slot_bytes, seed) != 0:
        direction_free(&d)
        raise MemoryError()
    cdef array delivered = array("q")
    cdef array released = array("q")
    cdef array outcome = array("b", [-1]) * n
    cdef uint8_t frame[65536]
    cdef Py_ssize_t i
    cdef int64_t now, prev = -(1 << 62)
    cdef int32_t length
    cdef int r, slot
    cdef int in_flight_before
    cdef uint64_t ident
    cdef Counters take
    cdef list cuts = sorted(outages)
    cdef list swaps = sorted(changes, key=lambda c: c[0])
    cdef Py_ssize_t next_swap = 0
    memset(frame, 0xAB, sizeof(frame))
    try:
        d.params = params_from_dict(params)
        for i in range(n):
            now = arrivals_ns[i]
            length = lengths[i]
            if now < prev:
                raise EngineParamError(f"arrival {i} goes back in time")
            if not 8 <= length <= max_frame:
                raise EngineParamError(f"length {length} of packet {i} is outside 8..{max_frame}")
            prev = now
            while next_swap < len(swaps) and swaps[next_swap][0] <= now:
                fresh = params_from_dict(swaps[next_swap][1])
                params_free(<Params *>csp_xchg_ptr(<void **>&d.pending, fresh))
                direction_take_pending(&d)
                next_swap += 1
            _offline_release(&d, now, delivered, released)
            csp_store_int(&d.outage, 1 if any(a <= now < b for a, b in cuts) else 0)
            # The packet's index rides in the first 8 bytes (the Ethernet
            # header, which corruption never touches).
            ident = <uint64_t>i
            memcpy(frame, &ident, 8)
            in_flight_before = d.heap_len
            take = d.counters
            pipeline_admit(&d, now, now, frame, length, max_frame)
            if d.heap_len == in_flight_before:
                # No copy got in: record why (the first reason counted).
                for r in range(N_DROP_REASONS):
                    if d.counters.drop_packets[r] != take.drop_packets[r]:
                        outcome[i] = r
                        break
        _offline_release(&d, 1 << 62, delivered, released)
        take = d.counters
        take.in_flight = d.heap_len
        counters = counters_dict(&take)
    finally:
        direction_free(&d)
    return {
        "delivered_id": delivered,
        "release_ns": released,
        "outcome": outcome,
        "drop_reasons": DROP_REASON_NAMES,
        "counters": counters,
    }


cdef _offline_release(Direction *d, int64_t now, array delivered, array released):
    """Offline stage 7: every packet due by `now` leaves, in time order."""
    cdef int slot
    cdef uint64_t ident
    while d.heap_len > 0 and d.slots[d.heap[0]].release_ns <= now:
        slot = heap_pop(d)
        memcpy(&ident, slot_frame(d, slot), 8)
        delivered.append(<long long>ident)
        released.append(d.slots[slot].release_ns)
        d.counters.tx_packets += 1
        d.counters.tx_bytes += d.slots[slot].length
        slot_release(d, slot)
