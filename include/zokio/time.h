/* zokio/time.h — monotonic time, sleeping, and timeouts on single operations.
 *
 * Sleeps are entries in the calling worker's hierarchical timer wheel (1 ms
 * resolution): a sleeping task is suspended, never spun, and the nearest
 * deadline bounds how long the worker may wait in the kernel. A sleep never
 * ends early; it ends at most about one tick (1 ms) late on an idle worker. */
#ifndef ZOKIO_TIME_H
#define ZOKIO_TIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZK_NSEC_PER_MSEC 1000000ull
#define ZK_NSEC_PER_SEC 1000000000ull

/* CLOCK_MONOTONIC in nanoseconds. Callable from any thread. */
uint64_t zk_now_ns(void);

/* Suspends the calling task for at least ns nanoseconds (0 yields).
 * Returns 0, -ECANCELED (the task was cancelled, before or during the sleep),
 * or -EPERM outside a runtime task. */
int zk_sleep_ns(uint64_t ns);

/* zk_sleep_ns(ms * 1 000 000). */
int zk_sleep_ms(uint64_t ms);

/* Suspends the calling task until zk_now_ns() >= deadline_ns. A deadline in
 * the past yields once. Errors as zk_sleep_ns. */
int zk_sleep_until(uint64_t deadline_ns);

/* Arms a timeout for the *next* I/O call of the calling task (zk_read,
 * zk_recv, zk_accept, zk_poll, ... any call in fs.h/net.h that suspends,
 * except zk_close). If that call has not completed within ns nanoseconds it
 * is cancelled in the kernel (an io_uring linked timeout) and returns
 * -ETIMEDOUT. The timeout is consumed by that one call whether or not it
 * fires. ns == 0 disarms.
 * Returns 0, or -EPERM outside a runtime task. */
int zk_timeout_next(uint64_t ns);

#ifdef __cplusplus
}
#endif
#endif
