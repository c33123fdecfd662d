# Packet capture off the hot path: the loop writes finished pcapng Enhanced
# Packet Blocks into a byte ring; a reader thread (emulator/engine/capture.py)
# drains whole blocks into the file. The loop never waits: a block that does
# not fit is counted in `lost` and skipped, so capture cannot slow forwarding.
#
# One ring per shard: one producer (the shard's loop), one consumer (the
# reader). `head` is published with release order after a block is written
# whole; `tail` likewise after the reader copied blocks out. Block layout
# (pcapng, draft-ietf-opsawg-pcapng §4.3): type 6, total length, interface id,
# timestamp high/low (units of the interface's if_tsresol: ns here), captured
# and original length, the frame padded to 32 bits, options (epb_flags with
# the direction, opt_comment naming a drop's reason), end of options, total
# length again.

cdef enum:
    EPB_TYPE = 6
    OPT_ENDOFOPT = 0
    OPT_COMMENT = 1
    EPB_FLAGS = 2
    EPB_INBOUND = 1            # epb_flags bits 0-1: 01 inbound, 10 outbound
    EPB_OUTBOUND = 2
    CAPTURE_COMMENT_MAX = 32


cdef struct CaptureRing:
    uint8_t *buf
    int64_t size               # bytes, a power of two
    int64_t head               # bytes ever written (atomic, producer)
    int64_t tail               # bytes ever read (atomic, consumer)
    int32_t snaplen            # frame bytes kept per block
    uint64_t blocks            # blocks written
    uint64_t lost              # blocks that did not fit


cdef inline void ring_write(CaptureRing *r, int64_t at, const void *src, int64_t n) noexcept nogil:
    """Copy `n` bytes to ring position `at` (wrapping)."""
    cdef int64_t off = at & (r.size - 1)
    cdef int64_t first = n if off + n <= r.size else r.size - off
    memcpy(r.buf + off, src, <size_t>first)
    if first < n:
        memcpy(r.buf, (<const uint8_t *>src) + first, <size_t>(n - first))


cdef inline void put_u32(uint8_t *p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)            # host byte order: the section header's byte-order magic says which


cdef void capture_block(CaptureRing *r, int32_t interface, int64_t t_ns, const uint8_t *frame, int32_t length,
                        uint32_t flags, const char *comment) noexcept nogil:
    """Append one Enhanced Packet Block for `frame`, or count it lost when the ring is full."""
    cdef int32_t kept = length if length < r.snaplen else r.snaplen
    cdef int32_t padded = (kept + 3) & ~3
    cdef int32_t comment_len = 0
    cdef int32_t comment_padded = 0
    cdef uint8_t header[28]
    cdef uint8_t tail[32 + CAPTURE_COMMENT_MAX]
    cdef uint8_t zeros[4]
    cdef int32_t n = 0
    cdef int64_t head, used
    cdef uint32_t total
    if comment != NULL:
        while comment[comment_len] != 0 and comment_len < CAPTURE_COMMENT_MAX:
            comment_len += 1
        comment_padded = (comment_len + 3) & ~3
    # options: flags (4 + 4), a comment (4 + padded) when given, end (4); then the total again (4)
    total = <uint32_t>(28 + padded + 8 + (4 + comment_padded if comment_len else 0) + 4 + 4)
    head = r.head
    used = head - csp_load_i64(&r.tail)
    if used + total > r.size:
        r.lost += 1
        return
    put_u32(header, EPB_TYPE)
    put_u32(header + 4, total)
    put_u32(header + 8, <uint32_t>interface)
    put_u32(header + 12, <uint32_t>(<uint64_t>t_ns >> 32))
    put_u32(header + 16, <uint32_t>(<uint64_t>t_ns))          # the low 32 bits
    put_u32(header + 20, <uint32_t>kept)
    put_u32(header + 24, <uint32_t>length)
    ring_write(r, head, header, 28)
    ring_write(r, head + 28, frame, kept)
    memset(zeros, 0, 4)
    if padded > kept:
        ring_write(r, head + 28 + kept, zeros, padded - kept)
    # options
    (<uint16_t *>tail)[0] = EPB_FLAGS                               # option code, length: 16 bits each
    (<uint16_t *>tail)[1] = 4
    put_u32(tail + 4, flags)
    n = 8
    if comment_len:
        (<uint16_t *>(tail + n))[0] = OPT_COMMENT
        (<uint16_t *>(tail + n))[1] = <uint16_t>comment_len
        memset(tail + n + 4, 0, comment_padded)
        memcpy(tail + n + 4, comment, comment_len)
        n += 4 + comment_padded
    memset(tail + n, 0, 4)                                          # opt_endofopt
    n += 4
    put_u32(tail + n, total)
    n += 4
    ring_write(r, head + 28 + padded, tail, n)
    r.blocks += 1
    csp_store_i64(&r.head, head + total)


cdef int ring_open(CaptureRing *r, int64_t size, int snaplen) except -1:
    """Engine.capture_open: make the ring once; a later call may change only the snaplen."""
    if r.buf != NULL:
        if size != r.size:
            raise EngineStateError(f"the capture ring exists with {r.size} bytes, not {size}")
        r.snaplen = snaplen
        return 0
    if size < 65536 or size & (size - 1) or not 64 <= snaplen <= 65535:
        raise EngineParamError(f"capture ring size {size}, snaplen {snaplen}: "
                               "size a power of two >= 65536, snaplen 64..65535")
    r.buf = <uint8_t *>csp_malloc(<size_t>size)
    if r.buf == NULL:
        raise MemoryError()
    r.size = size
    r.snaplen = snaplen
    return 0


cdef bytes ring_drain(CaptureRing *r):
    """Engine.capture_drain: the whole blocks written since the last drain, as bytes
    (the consumer's side: `tail` is published once they are copied out)."""
    if r.buf == NULL:
        return b""
    cdef int64_t head = csp_load_i64(&r.head)
    cdef int64_t tail = r.tail
    cdef int64_t n = head - tail
    cdef int64_t off = tail & (r.size - 1)
    cdef int64_t first = n if off + n <= r.size else r.size - off
    out = PyBytes_FromStringAndSize(<char *>(r.buf + off), first)
    if first < n:
        out += PyBytes_FromStringAndSize(<char *>r.buf, n - first)
    csp_store_i64(&r.tail, head)
    return out
