/* lib/signal.c — delivering POSIX signals to waiting tasks.
 *
 * A sigaction handler (async-signal-safe: an atomic increment and a write)
 * counts each signal and writes the eventfd of every live runtime. Every
 * worker keeps one read on its runtime's eventfd in its ring; the worker whose
 * read completes wakes, under sig_lock, each waiter whose signal's count has
 * moved since it started waiting, then re-arms its read. Waiters register and
 * read the count under the same lock, so a signal is never missed between
 * "look at the count" and "go to sleep". A handler rather than signalfd:
 * signalfd only sees signals blocked in every thread, which the runtime
 * cannot arrange for threads it does not own (the caller of zk_block_on). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "zokio/signal.h"

#define MAX_RUNTIMES 64
#define NSIG_MAX 65

static _Atomic uint64_t sig_count[NSIG_MAX];
static _Atomic int rt_fds[MAX_RUNTIMES] = {[0 ... MAX_RUNTIMES - 1] = -1};
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t installed[2];

struct zk__sigwaiter {
	struct zk__sigwaiter *next;
	struct zk_task *task;
	int signo;
	uint64_t seen;
	struct zk__wait *wait;
};

static void on_signal(int signo)
{
	int saved = errno;
	atomic_fetch_add_explicit(&sig_count[signo], 1, memory_order_seq_cst);
	uint64_t one = 1;
	for (int i = 0; i < MAX_RUNTIMES; i++) {
		int fd = atomic_load_explicit(&rt_fds[i], memory_order_acquire);
		if (fd >= 0) {
			ssize_t r = write(fd, &one, sizeof(one));
			(void)r;
		}
	}
	errno = saved;
}

static int install(int signo)
{
	int r = 0;
	pthread_mutex_lock(&install_lock);
	if (!(installed[signo / 64] & (1ull << (signo % 64)))) {
		struct sigaction sa = {0};
		sa.sa_handler = on_signal;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(signo, &sa, NULL) != 0)
			r = -errno;
		else
			installed[signo / 64] |= 1ull << (signo % 64);
	}
	pthread_mutex_unlock(&install_lock);
	return r;
}

static void dispatch(zk_runtime_t *rt)
{
	pthread_mutex_lock(&rt->sig_lock);
	struct zk__sigwaiter **pp = &rt->sig_waiters;
	while (*pp) {
		struct zk__sigwaiter *sw = *pp;
		if (atomic_load_explicit(&sig_count[sw->signo], memory_order_seq_cst) != sw->seen) {
			*pp = sw->next;
			sw->wait->res = sw->signo;
			zk__task_wake(sw->task);
		} else {
			pp = &sw->next;
		}
	}
	pthread_mutex_unlock(&rt->sig_lock);
}

static void sig_read_complete(struct zk__op *op)
{
	struct zk__worker *w = op->ctx;
	zk_runtime_t *rt = w->rt;
	if (op->res == -ECANCELED || atomic_load_explicit(&rt->stop, memory_order_acquire))
		return;
	dispatch(rt);
	op->timeout_ns = 0;
	rt->backend->submit(w->backend, op);
}

void zk__signal_worker_start(struct zk__worker *w)
{
	zk_runtime_t *rt = w->rt;
	if (rt->sig_fd < 0 || !rt->sig_ops)
		return;
	struct zk__op *op = &rt->sig_ops[w->index];
	op->opcode = ZK__OP_READ;
	op->fd = rt->sig_fd;
	op->buf = &rt->sig_bufs[w->index];
	op->len = sizeof(uint64_t);
	op->off = -1;
	op->complete = sig_read_complete;
	op->ctx = w;
	op->background = true;
	rt->backend->submit(w->backend, op);
}

int zk__signal_rt_init(zk_runtime_t *rt)
{
	rt->sig_ops = calloc(rt->nworkers, sizeof(*rt->sig_ops));
	rt->sig_bufs = calloc(rt->nworkers, sizeof(*rt->sig_bufs));
	if (!rt->sig_ops || !rt->sig_bufs)
		return -ENOMEM;
	rt->sig_fd = eventfd(0, EFD_CLOEXEC);
	if (rt->sig_fd < 0)
		return -errno;
	for (int i = 0; i < MAX_RUNTIMES; i++) {
		int expect = -1;
		if (atomic_compare_exchange_strong(&rt_fds[i], &expect, rt->sig_fd))
			return 0;
	}
	return 0; /* more than MAX_RUNTIMES runtimes: this one sees no signals */
}

void zk__signal_rt_free(zk_runtime_t *rt)
{
	if (rt->sig_fd >= 0) {
		for (int i = 0; i < MAX_RUNTIMES; i++) {
			int expect = rt->sig_fd;
			if (atomic_compare_exchange_strong(&rt_fds[i], &expect, -1))
				break;
		}
		close(rt->sig_fd);
		rt->sig_fd = -1;
	}
	free(rt->sig_ops);
	free(rt->sig_bufs);
	rt->sig_ops = NULL;
	rt->sig_bufs = NULL;
}

static void sigwait_cancel(struct zk_task *t, struct zk__wait *wt)
{
	zk_runtime_t *rt = t->rt;
	struct zk__sigwaiter *me = wt->obj;
	pthread_mutex_lock(&rt->sig_lock);
	for (struct zk__sigwaiter **pp = &rt->sig_waiters; *pp; pp = &(*pp)->next) {
		if (*pp == me) {
			*pp = me->next;
			wt->res = -ECANCELED;
			zk__task_wake(t);
			break;
		}
	}
	pthread_mutex_unlock(&rt->sig_lock);
}

int zk_signal_wait(int signo)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	if (signo <= 0 || signo >= NSIG_MAX || signo == SIGKILL || signo == SIGSTOP)
		return -EINVAL;
	if (atomic_load_explicit(&t->cancel, memory_order_acquire))
		return -ECANCELED;
	/* The count at the start of the call: a signal that lands while we
	 * install the handler or register still ends this wait. */
	uint64_t seen = atomic_load_explicit(&sig_count[signo], memory_order_seq_cst);
	int r = install(signo);
	if (r < 0)
		return r;
	zk_runtime_t *rt = t->rt;
	struct zk__wait wt = {.cancel = sigwait_cancel, .owner = NULL, .res = 0};
	struct zk__sigwaiter me = {.task = t, .signo = signo, .wait = &wt, .seen = seen};
	wt.obj = &me;
	pthread_mutex_lock(&rt->sig_lock);
	if (atomic_load_explicit(&sig_count[signo], memory_order_seq_cst) != seen) {
		/* Already arrived; the dispatch for it may have run before we
		 * were on the list. */
		pthread_mutex_unlock(&rt->sig_lock);
		return signo;
	}
	me.next = rt->sig_waiters;
	rt->sig_waiters = &me;
	pthread_mutex_unlock(&rt->sig_lock);
	return zk__task_park(t, &wt);
}
