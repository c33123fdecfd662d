# Packet-rate tools for the benchmark: a sender fast enough not to be the
# bottleneck (one frame, sendmmsg in batches, GIL released) and a counter.
# They run in the end nodes' namespaces, never inside the engine loop.


def blast(int fd, bytes frame, double duration_s, int batch=64, double rate_pps=0.0) -> tuple:
    """Send `frame` for `duration_s`: as fast as the socket takes it, or paced
    to `rate_pps` (batches released on schedule) when that is > 0.

    Returns (sent, refused): refused counts frames the kernel turned away
    (ENOBUFS and the like); EAGAIN is retried.
    """
    if not 1 <= batch <= MAX_BATCH:
        raise EngineParamError(f"batch must be within 1..{MAX_BATCH}")
    cdef mmsghdr msgs[MAX_BATCH]
    cdef iovec iov
    cdef const char *data = frame
    cdef Py_ssize_t length = len(frame)
    cdef uint64_t sent = 0, refused = 0, skipped = 0
    cdef int k, r
    cdef int64_t end, start, due, now
    cdef timespec pause
    iov.iov_base = <void *>data
    iov.iov_len = length
    memset(msgs, 0, sizeof(msgs))
    for k in range(batch):
        msgs[k].msg_hdr.msg_iov = &iov
        msgs[k].msg_hdr.msg_iovlen = 1
    with nogil:
        start = clock_ns()
        end = start + <int64_t>(duration_s * 1e9)
        while clock_ns() < end:
            if rate_pps > 0.0:
                due = start + <int64_t>(<double>(sent - skipped) * 1e9 / rate_pps)
                now = clock_ns()
                if now - due > 1000000:
                    # Fell behind (the CPU was busy): restart the schedule
                    # rather than catch up in a burst faster than the rate.
                    skipped = sent
                    start = now
                    due = now
                if due - now > 200000:
                    # sleep most of the wait (a busy sender would steal the
                    # engine's core on a 2-CPU machine), spin the rest
                    pause.tv_sec = (due - now - 100000) // 1000000000
                    pause.tv_nsec = (due - now - 100000) % 1000000000
                    nanosleep(&pause, NULL)
                while clock_ns() < due:
                    pass
            r = sendmmsg(fd, msgs, batch, 0)
            if r > 0:
                sent += r
            elif errno != EAGAIN and errno != EINTR:
                refused += 1
    return sent, refused


def count_frames(int fd, double duration_s, int ethertype, int batch=64) -> dict:
    """Count received frames of `ethertype` for `duration_s` (or until quiet).

    Returns packets, bytes and the first and last arrival (kernel stamps when
    the socket has SO_TIMESTAMPNS, else the receive time), so the rate is taken
    over the span the frames actually arrived in.
    """
    if not 1 <= batch <= MAX_BATCH:
        raise EngineParamError(f"batch must be within 1..{MAX_BATCH}")
    cdef mmsghdr msgs[MAX_BATCH]
    cdef iovec iov[MAX_BATCH]
    cdef uint8_t control[MAX_BATCH][CONTROL_BYTES]
    cdef sockaddr_ll addr[MAX_BATCH]
    cdef uint8_t *frames = <uint8_t *>csp_malloc(MAX_BATCH * 2048)
    if frames == NULL:
        raise MemoryError()
    cdef pollfd pfd
    cdef timespec tmo
    cdef int k, n
    cdef uint64_t packets = 0, nbytes = 0
    cdef int64_t first = -1, last = -1, now, end, stamp
    cdef uint16_t want = ((ethertype & 0xFF) << 8) | ((ethertype >> 8) & 0xFF)  # network order
    memset(msgs, 0, sizeof(msgs))
    for k in range(batch):
        iov[k].iov_base = frames + k * 2048
        iov[k].iov_len = 2048
        msgs[k].msg_hdr.msg_iov = &iov[k]
        msgs[k].msg_hdr.msg_iovlen = 1
        msgs[k].msg_hdr.msg_name = &addr[k]
        msgs[k].msg_hdr.msg_control = &control[k][0]
    pfd.fd = fd
    pfd.events = POLLIN
    try:
        with nogil:
            end = clock_ns() + <int64_t>(duration_s * 1e9)
            while True:
                now = clock_ns()
                if now >= end:
                    break
                tmo.tv_sec = 0
                tmo.tv_nsec = 10000000
                if ppoll(&pfd, 1, &tmo, NULL) <= 0:
                    continue
                for k in range(batch):
                    msgs[k].msg_hdr.msg_namelen = sizeof(sockaddr_ll)
                    msgs[k].msg_hdr.msg_controllen = CONTROL_BYTES
                n = recvmmsg(fd, msgs, batch, MSG_DONTWAIT, NULL)
                if n <= 0:
                    continue
                now = clock_ns()
                for k in range(n):
                    if addr[k].sll_pkttype == PACKET_OUTGOING or msgs[k].msg_len < 14:
                        continue
                    if (<uint16_t *>(frames + k * 2048 + 12))[0] != want:
                        continue
                    stamp = frame_timestamp(&msgs[k], now)
                    if first < 0:
                        first = stamp
                    last = stamp
                    packets += 1
                    nbytes += msgs[k].msg_len
    finally:
        csp_free(frames)
    return {"packets": packets, "bytes": nbytes, "first_ns": first, "last_ns": last}


def send_probes(int fd, bytes header, double duration_s, double rate_pps, int size=60) -> int:
    """Send timestamped probe frames at `rate_pps` for `duration_s`; returns how many.

    Each frame is `header` (14 B) + sequence number (u64, big-endian) + the
    CLOCK_REALTIME send time in ns (u64, big-endian), stamped immediately
    before the send() call so the sender's own scheduling adds as little as
    possible to the measured one-way delay.
    """
    if len(header) != 14 or not 30 <= size <= 2048:
        raise EngineParamError("header must be 14 bytes and size within 30..2048")
    cdef uint8_t buf[2048]
    memset(buf, 0, sizeof(buf))
    memcpy(buf, <const char *>header, 14)
    cdef uint64_t seq = 0, v
    cdef int64_t start, end, due, now, stamp
    cdef double interval = 1e9 / rate_pps
    cdef timespec pause
    cdef int k
    with nogil:
        start = clock_ns() + 20000000
        end = start + <int64_t>(duration_s * 1e9)
        while True:
            due = start + <int64_t>(<double>seq * interval)
            if due >= end:
                break
            now = clock_ns()
            if due - now > 200000:
                pause.tv_sec = (due - now - 100000) // 1000000000
                pause.tv_nsec = (due - now - 100000) % 1000000000
                nanosleep(&pause, NULL)
            while clock_ns() < due:
                pass
            stamp = clock_ns()
            for k in range(8):
                buf[14 + k] = <uint8_t>((seq >> (56 - 8 * k)) & 0xFF)
                buf[22 + k] = <uint8_t>((<uint64_t>stamp >> (56 - 8 * k)) & 0xFF)
            write(fd, buf, size)
            seq += 1
    return seq
