/* tools/zk_perf_vgshim.c — LD_PRELOAD shim that lets Zokio's io_uring backend
 * run under valgrind 3.19 (tools/zk-perf builds it and preloads it into the
 * benchmark it runs under callgrind; it is never linked into Zokio).
 *
 * Valgrind runs one client thread at a time (a "big lock"), and only gives
 * the lock up during a syscall it knows may block. Valgrind 3.19 does not
 * count io_uring_enter among those, so a worker that parks in
 * io_uring_enter(GETEVENTS) keeps the lock: the thread that would wake it (an
 * eventfd write from another worker or from the main thread) never runs, and
 * the process hangs at 0% CPU (see axboe/liburing#657).
 *
 * The shim replaces liburing's blocking waits (Zokio uses one of them,
 * io_uring_submit_and_wait_timeout()) by a submit that does not wait followed
 * by ppoll() on the ring fd, which valgrind does treat as blocking.
 * ppoll() only wakes for a ring that posts completions to its CQ at once, so
 * the shim also clears the setup flags that defer completions to the next
 * io_uring_enter (DEFER_TASKRUN, and with it SINGLE_ISSUER) or post them
 * without waking the task (COOP_TASKRUN, TASKRUN_FLAG). The user-space code
 * paths the benchmarks count are the same either way. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef int (*init_params_fn)(unsigned, struct io_uring *, struct io_uring_params *);

int io_uring_queue_init_params(unsigned entries, struct io_uring *ring, struct io_uring_params *p)
{
	static init_params_fn real;
	if (!real) {
		real = (init_params_fn)dlsym(RTLD_NEXT, "io_uring_queue_init_params");
		if (!real) {
			fprintf(stderr, "zk_perf_vgshim: no io_uring_queue_init_params\n");
			abort();
		}
	}
	p->flags &= ~(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
	return real(entries, ring, p);
}

/* Submits what is queued without waiting, then sleeps in ppoll() until the
 * CQ holds wait_nr completions or the timeout passes (-ETIME). */
static int submit_then_poll(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
			    struct __kernel_timespec *ts, sigset_t *sigmask)
{
	int r = io_uring_submit(ring);
	if (r < 0)
		return r;
	struct timespec deadline = {0, 0};
	if (ts) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += ts->tv_sec;
		deadline.tv_nsec += ts->tv_nsec;
		while (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
	}
	for (;;) {
		if (io_uring_cq_ready(ring) >= (wait_nr ? wait_nr : 1)) {
			if (!cqe_ptr)
				return r;
			return io_uring_peek_cqe(ring, cqe_ptr);
		}
		struct timespec left, *lp = NULL;
		if (ts) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			left.tv_sec = deadline.tv_sec - now.tv_sec;
			left.tv_nsec = deadline.tv_nsec - now.tv_nsec;
			if (left.tv_nsec < 0) {
				left.tv_sec--;
				left.tv_nsec += 1000000000;
			}
			if (left.tv_sec < 0)
				return -ETIME;
			lp = &left;
		}
		struct pollfd pfd = {.fd = ring->ring_fd, .events = POLLIN};
		int n = ppoll(&pfd, 1, lp, sigmask);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n == 0)
			return -ETIME;
	}
}

/* The waits of liburing 2.3's API that can block. (io_uring_wait_cqe and
 * io_uring_wait_cqe_nr are inline and end in __io_uring_get_cqe.) A direct
 * io_uring_enter(GETEVENTS) call is not covered: zk-perf's timeout catches
 * the hang that would follow. */
int io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
				     unsigned wait_nr, struct __kernel_timespec *ts, sigset_t *sigmask)
{
	return submit_then_poll(ring, cqe_ptr, wait_nr, ts, sigmask);
}

int io_uring_wait_cqes(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
		       struct __kernel_timespec *ts, sigset_t *sigmask)
{
	return submit_then_poll(ring, cqe_ptr, wait_nr, ts, sigmask);
}

int io_uring_wait_cqe_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
			      struct __kernel_timespec *ts)
{
	return submit_then_poll(ring, cqe_ptr, 1, ts, NULL);
}

int io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
	if (wait_nr == 0)
		return io_uring_submit(ring);
	return submit_then_poll(ring, NULL, wait_nr, NULL, NULL);
}

typedef int (*get_cqe_fn)(struct io_uring *, struct io_uring_cqe **, unsigned, unsigned,
			  sigset_t *);

int __io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned submit,
		       unsigned wait_nr, sigset_t *sigmask)
{
	if (wait_nr == 0) {
		static get_cqe_fn real;
		if (!real) {
			real = (get_cqe_fn)dlsym(RTLD_NEXT, "__io_uring_get_cqe");
			if (!real) {
				fprintf(stderr, "zk_perf_vgshim: no __io_uring_get_cqe\n");
				abort();
			}
		}
		return real(ring, cqe_ptr, submit, 0, sigmask);
	}
	return submit_then_poll(ring, cqe_ptr, wait_nr, NULL, sigmask);
}
