# Packet-rate tools for the benchmark: a sender fast enough not to be the
# bottleneck (one frame, sendmmsg in batches, GIL released) and a counter.
# They run in the end nodes' namespaces, never inside the engine loop.


def blast(int fd, bytes frame, double duration_s, int batch=64) -> tuple:
    """Send `frame` as fast as the socket takes it for `duration_s`.

    Returns (sent, refused): refused counts frames the kernel turned away
    (ENOBUFS and the like); EAGAIN is retried.
    """
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be within 1..{MAX_BATCH}")
    cdef mmsghdr msgs[MAX_BATCH]
    cdef iovec iov
    cdef const char *data = frame
    cdef Py_ssize_t length = len(frame)
    cdef uint64_t sent = 0, refused = 0
    cdef int k, r
    cdef int64_t end
    iov.iov_base = <void *>data
    iov.iov_len = length
    memset(msgs, 0, sizeof(msgs))
    for k in range(batch):
        msgs[k].msg_hdr.msg_iov = &iov
        msgs[k].msg_hdr.msg_iovlen = 1
    with nogil:
        end = clock_ns() + <int64_t>(duration_s * 1e9)
        while clock_ns() < end:
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
        raise ValueError(f"batch must be within 1..{MAX_BATCH}")
    cdef mmsghdr msgs[MAX_BATCH]
    cdef iovec iov[MAX_BATCH]
    cdef uint8_t control[MAX_BATCH][CONTROL_BYTES]
    cdef sockaddr_ll addr[MAX_BATCH]
    cdef uint8_t *frames = <uint8_t *>malloc(MAX_BATCH * 2048)
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
        free(frames)
    return {"packets": packets, "bytes": nbytes, "first_ns": first, "last_ns": last}
