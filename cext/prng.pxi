# Per-direction pseudo-random numbers: xoshiro256** seeded by splitmix64.
# One generator per link direction (netem's habit) so a seeded run is
# reproducible whatever the other links do.
from libc.math cimport log, sqrt, cos, sin, M_PI

cdef struct Prng:
    uint64_t s[4]
    bint has_spare          # Box–Muller makes normals in pairs
    double spare


cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef inline uint64_t _splitmix64(uint64_t *state) noexcept nogil:
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline void prng_seed(Prng *g, uint64_t seed) noexcept nogil:
    cdef uint64_t sm = seed
    cdef int i
    for i in range(4):
        g.s[i] = _splitmix64(&sm)
    g.has_spare = False
    g.spare = 0.0


cdef inline uint64_t prng_next(Prng *g) noexcept nogil:
    cdef uint64_t result = _rotl(g.s[1] * 5, 7) * 9
    cdef uint64_t t = g.s[1] << 17
    g.s[2] ^= g.s[0]
    g.s[3] ^= g.s[1]
    g.s[1] ^= g.s[2]
    g.s[0] ^= g.s[3]
    g.s[2] ^= t
    g.s[3] = _rotl(g.s[3], 45)
    return result


cdef inline double prng_uniform(Prng *g) noexcept nogil:
    """Uniform in [0, 1) with 53 random bits."""
    return <double>(prng_next(g) >> 11) * (1.0 / 9007199254740992.0)


cdef inline bint prng_chance(Prng *g, double p) noexcept nogil:
    """True with probability p; p <= 0 never draws (keeps streams stable when off)."""
    if p <= 0.0:
        return False
    return prng_uniform(g) < p


cdef inline double prng_normal(Prng *g) noexcept nogil:
    """Standard normal (Box–Muller, the second value kept for the next call)."""
    cdef double u1, u2, r
    if g.has_spare:
        g.has_spare = False
        return g.spare
    u1 = prng_uniform(g)
    while u1 <= 0.0:
        u1 = prng_uniform(g)
    u2 = prng_uniform(g)
    r = sqrt(-2.0 * log(u1))
    g.spare = r * sin(2.0 * M_PI * u2)
    g.has_spare = True
    return r * cos(2.0 * M_PI * u2)


cdef inline uint32_t prng_below(Prng *g, uint32_t n) noexcept nogil:
    """Uniform integer in [0, n) (multiply-shift; bias < 2^-32, irrelevant here)."""
    return <uint32_t>(((prng_next(g) >> 32) * <uint64_t>n) >> 32)
