# C externs the engine uses: sockets, batched I/O, polling, clocks, eventfd.
# Only the fields the engine touches are declared (Cython needs no more).

from libc.stdint cimport int64_t, uint64_t, uint32_t, uint16_t, uint8_t

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int nanosleep(const timespec *req, timespec *rem)
    int CLOCK_REALTIME

cdef extern from "<errno.h>" nogil:
    int errno
    int EAGAIN
    int EWOULDBLOCK
    int EINTR
    int ENOBUFS

cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    cdef struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    cdef struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    cdef struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    cmsghdr *CMSG_FIRSTHDR(msghdr *msg)
    cmsghdr *CMSG_NXTHDR(msghdr *msg, cmsghdr *cmsg)
    unsigned char *CMSG_DATA(cmsghdr *cmsg)
    int recvmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags, timespec *timeout)
    int sendmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags)
    int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
    int SO_TYPE
    int MSG_DONTWAIT
    int MSG_TRUNC
    int SOL_SOCKET
    int SCM_TIMESTAMPNS

cdef extern from "<linux/if_packet.h>" nogil:
    cdef struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]
    int PACKET_OUTGOING

cdef extern from "<poll.h>" nogil:
    cdef struct pollfd:
        int fd
        short events
        short revents
    ctypedef unsigned long nfds_t
    int POLLIN
    int ppoll(pollfd *fds, nfds_t nfds, const timespec *tmo, const void *sigmask)

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        uint32_t u32
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    # ns timeout (Linux 5.11+, glibc 2.35+): epoll_wait's is whole milliseconds
    int epoll_pwait2(int epfd, epoll_event *events, int maxevents, const timespec *timeout, const void *sigmask)
    int EPOLL_CTL_ADD
    int EPOLLIN
    int EPOLL_CLOEXEC

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t write(int fd, const void *buf, size_t count)
    int close(int fd)

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from "caspian_atomic.h" nogil:
    int csp_load_int(const int *p)
    void csp_store_int(int *p, int v)
    uint64_t csp_load_u64(const uint64_t *p)
    void csp_store_u64(uint64_t *p, uint64_t v)
    int64_t csp_load_i64(const int64_t *p)
    void csp_store_i64(int64_t *p, int64_t v)
    void *csp_load_ptr(void **p)
    void *csp_xchg_ptr(void **p, void *v)
    void csp_cpu_relax()

# The engine's own allocator: counted, with a failure hook for tests (caspian_alloc.h).
cdef extern from "caspian_alloc.h" nogil:
    void *csp_malloc(size_t size)
    void *csp_calloc(size_t count, size_t size)
    void csp_free(void *p)
    void *csp_grown_copy(const void *old, size_t n_old, size_t n_new, size_t size)
    int64_t csp_allocated_blocks()
    void csp_fail_allocation_after(int64_t n)
