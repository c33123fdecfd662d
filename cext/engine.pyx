# cython: language_level=3
"""caspian's fast path (placeholder while the engine lands; see cext/README)."""
from libc.stdint cimport int64_t

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_REALTIME

def now_ns() -> int:
    """CLOCK_REALTIME in ns: the clock the engine and kernel packet stamps share."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
