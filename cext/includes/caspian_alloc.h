/* Every C block the engine allocates goes through these, so that tests can
 * see that a failed call left nothing behind (uvloop's habit: count the
 * allocations, assert they return to where they were).
 *
 * csp_live_blocks counts blocks allocated and not yet freed. The loop thread
 * frees (a replaced Params, a finished schedule) while the control thread
 * allocates, so the count is atomic; relaxed order is enough for a count.
 *
 * csp_fail_after is a test hook: when set to n > 0, the n-th allocation from
 * then on returns NULL (and the hook disarms), so each step of a call that
 * allocates in several steps can be made to fail in turn. Only the control
 * thread allocates, so the countdown needs no stronger ordering either.
 * One translation unit (engine.pyx) includes this: the statics are the module's. */
#ifndef CASPIAN_ALLOC_H
#define CASPIAN_ALLOC_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int64_t csp_live_blocks = 0;
static int64_t csp_fail_after = 0;

static inline int csp_alloc_refused(void) {
    if (__atomic_load_n(&csp_fail_after, __ATOMIC_RELAXED) <= 0)
        return 0;
    return __atomic_sub_fetch(&csp_fail_after, 1, __ATOMIC_RELAXED) == 0;
}

static inline void *csp_counted(void *p) {
    if (p != NULL)
        __atomic_add_fetch(&csp_live_blocks, 1, __ATOMIC_RELAXED);
    return p;
}

static inline void *csp_malloc(size_t size) {
    return csp_alloc_refused() ? NULL : csp_counted(malloc(size));
}

static inline void *csp_calloc(size_t count, size_t size) {
    return csp_alloc_refused() ? NULL : csp_counted(calloc(count, size));
}

static inline void csp_free(void *p) {
    if (p != NULL) {
        __atomic_sub_fetch(&csp_live_blocks, 1, __ATOMIC_RELAXED);
        free(p);
    }
}

/* A new array of n_new items: the first n_old copied from old, the rest zeroed.
 * old stays as it is, so a caller that allocates in several steps can still
 * give up with the old arrays intact (it frees them once it commits). */
static inline void *csp_grown_copy(const void *old, size_t n_old, size_t n_new, size_t size) {
    void *fresh = csp_calloc(n_new, size);
    if (fresh != NULL && old != NULL)
        memcpy(fresh, old, n_old * size);
    return fresh;
}

static inline int64_t csp_allocated_blocks(void) {
    return __atomic_load_n(&csp_live_blocks, __ATOMIC_RELAXED);
}

static inline void csp_fail_allocation_after(int64_t n) {
    __atomic_store_n(&csp_fail_after, n, __ATOMIC_RELAXED);
}
#endif
