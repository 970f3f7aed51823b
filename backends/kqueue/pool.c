/* backends/kqueue/pool.c — the blocking pool of the kqueue backend: the
 * epoll backend's pool (backends/epoll/blocking_pool.c, interface in
 * blocking_pool.h) compiled for FreeBSD and macOS.
 *
 * Owns nothing of its own. The pool is plain POSIX threads except for one
 * call: it times a thread's idle exit on CLOCK_MONOTONIC through
 * pthread_condattr_setclock, which FreeBSD has and macOS does not. Rather
 * than keep a second copy of the pool that would drift from the first, this
 * file includes it with that one call shimmed on macOS. (The cleaner end
 * state is a three-line #ifdef __APPLE__ in blocking_pool.c itself; this
 * file then shrinks to the #include.) The jobs themselves run through
 * zk__op_syscall, which backends/kqueue/op_bsd.c defines for these systems.
 *
 * Linux builds compile this file to nothing. */
#if defined(__FreeBSD__) || defined(__APPLE__)

#ifdef __APPLE__
#include <pthread.h>
#include <time.h>
/* macOS condition variables time out on the wall clock only. The pool's
 * one timed wait is an idle thread deciding to exit after POOL_IDLE_NS, so
 * a wall-clock step merely ends an idle thread early or keeps it a little
 * longer; deadlines must then be computed on the same clock the wait uses. */
#define pthread_condattr_setclock(attr, clock) ((void)(attr), (void)(clock))
#undef CLOCK_MONOTONIC
#define CLOCK_MONOTONIC CLOCK_REALTIME
#endif

#include "../epoll/blocking_pool.c"

#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int zk__kqueue_pool_unused;
#endif
