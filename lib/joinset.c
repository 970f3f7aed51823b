/* lib/joinset.c — join sets: spawn many, join them as they finish, abort
 * all. Also the base of structured scopes (scope.c).
 *
 * Each task of a set is spawned with an exit hook (zk__spawn_with_exit):
 * when it returns, its worker calls js_on_exit, which hands the finished
 * task straight to a waiting joiner whose claim succeeds, or appends it to
 * the set's "done" FIFO. The set holds the task's handle until it is
 * joined, so the result stays readable.
 *
 * Life time: the set is reference counted (its owner plus one per task it
 * holds). zk_joinset_free aborts the running tasks and drops the owner's
 * reference; a task finishing after that frees its own entry, and the last
 * one frees the set. So an exit hook never touches freed memory. */
#include <errno.h>

#include "waitq.h"
#include "zokio/select.h"

struct js_entry {
	struct js_entry *prev, *next;
	struct zk_task *task;    /* the handle (one reference) */
	struct zk_joinset *js;
};

struct zk_joinset {
	pthread_mutex_t lock;
	_Atomic long refs;             /* owner + entries */
	zk_runtime_t *rt;
	struct js_entry *live;         /* running tasks */
	struct js_entry *done_head, *done_tail; /* finished, not joined */
	size_t nlive, ndone;
	bool freed;                    /* the owner let go */
	bool closed;                   /* spawns refused */
	struct zk__waitq waiters;      /* joiners */
};

static void js_unref(struct zk_joinset *js)
{
	if (atomic_fetch_sub_explicit(&js->refs, 1, memory_order_acq_rel) == 1) {
		pthread_mutex_destroy(&js->lock);
		zk__free(js);
	}
}

int zk_joinset_create(zk_joinset_t **out, zk_runtime_t *rt)
{
	if (!out)
		return -EINVAL;
	if (!rt)
		rt = zk_runtime_current();
	if (!rt)
		return -EINVAL;
	struct zk_joinset *js = zk__calloc(1, sizeof(*js));
	if (!js)
		return -ENOMEM;
	pthread_mutex_init(&js->lock, NULL);
	atomic_init(&js->refs, 1);
	js->rt = rt;
	*out = js;
	return 0;
}

static void live_unlink(struct zk_joinset *js, struct js_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		js->live = e->next;
	if (e->next)
		e->next->prev = e->prev;
	e->prev = e->next = NULL;
	js->nlive--;
}

/* The task's worker, right after the task returned (or was cancelled
 * before it ran). */
static void js_on_exit(struct zk_task *t)
{
	struct js_entry *e = t->on_exit_ctx;
	struct zk_joinset *js = e->js;
	struct zk__sel *woken = NULL;
	pthread_mutex_lock(&js->lock);
	/* The spawner links the entry while it holds the lock, around the
	 * spawn itself, so it is linked by now. */
	live_unlink(js, e);
	if (js->freed) {
		pthread_mutex_unlock(&js->lock);
		zk__task_release(t); /* the handle */
		zk__free(e);
		js_unref(js);
		return;
	}
	struct zk__waiter *w;
	while ((w = zk__waitq_pop(&js->waiters))) {
		if (zk__waiter_claim(w)) {
			w->item = e;
			woken = w->sel;
			break;
		}
	}
	if (!woken) {
		e->next = NULL;
		e->prev = js->done_tail;
		if (js->done_tail)
			js->done_tail->next = e;
		else
			js->done_head = e;
		js->done_tail = e;
		js->ndone++;
	}
	pthread_mutex_unlock(&js->lock);
	if (woken)
		zk__sel_wake(woken);
}

int zk_joinset_spawn(zk_joinset_t *js, zk_task_fn fn, void *arg, uint64_t *id)
{
	if (!js || !fn)
		return -EINVAL;
	struct js_entry *e = zk__calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->js = js;
	pthread_mutex_lock(&js->lock);
	if (js->closed || js->freed) {
		pthread_mutex_unlock(&js->lock);
		zk__free(e);
		return -ECANCELED;
	}
	/* Under the lock, so the exit hook (which takes it) finds the entry
	 * linked and its handle set even if the task ends at once. */
	zk_task_t *h;
	int r = zk__spawn_with_exit(js->rt, &h, fn, arg, js_on_exit, e);
	if (r < 0) {
		pthread_mutex_unlock(&js->lock);
		zk__free(e);
		return r;
	}
	e->task = h;
	e->next = js->live;
	if (js->live)
		js->live->prev = e;
	js->live = e;
	js->nlive++;
	atomic_fetch_add_explicit(&js->refs, 1, memory_order_relaxed);
	if (id)
		*id = zk_task_handle_id(h);
	pthread_mutex_unlock(&js->lock);
	return 0;
}

/* Takes an entry off the done list (under the lock). */
static struct js_entry *done_pop(struct zk_joinset *js)
{
	struct js_entry *e = js->done_head;
	if (!e)
		return NULL;
	js->done_head = e->next;
	if (js->done_head)
		js->done_head->prev = NULL;
	else
		js->done_tail = NULL;
	js->ndone--;
	return e;
}

/* Reports a joined entry into the arm and frees it (outside the lock). */
static void take_entry(struct zk__arm *a, struct js_entry *e)
{
	struct zk_task *t = e->task;
	struct zk_joinset *js = e->js;
	a->aux = t->id;
	if (t->exit_res == -ECANCELED && !t->started) {
		a->res = -ESRCH;
	} else {
		a->res = t->exit_res;
		if (a->value)
			*(void **)a->value = t->result;
	}
	zk__task_release(t);
	zk__free(e);
	js_unref(js);
}

/* ---- join arm: a->obj = js, a->value = void ** (may be NULL) -------------- */

static bool join_try(struct zk__arm *a)
{
	struct zk_joinset *js = a->obj;
	pthread_mutex_lock(&js->lock);
	struct js_entry *e = done_pop(js);
	bool empty = !e && js->nlive == 0;
	pthread_mutex_unlock(&js->lock);
	if (e) {
		take_entry(a, e);
		return true;
	}
	if (empty) {
		a->res = -ECHILD;
		return true;
	}
	return false;
}

static int join_reg(struct zk__arm *a)
{
	struct zk_joinset *js = a->obj;
	int ret = ZK__REG_WAIT;
	pthread_mutex_lock(&js->lock);
	if (js->done_head || js->nlive == 0)
		ret = zk__waiter_claim(&a->w) ? ZK__REG_CLAIMED : ZK__REG_LOST;
	else
		zk__waitq_push(&js->waiters, &a->w);
	pthread_mutex_unlock(&js->lock);
	return ret;
}

static void join_unreg(struct zk__arm *a)
{
	struct zk_joinset *js = a->obj;
	pthread_mutex_lock(&js->lock);
	zk__waitq_remove(&js->waiters, &a->w);
	pthread_mutex_unlock(&js->lock);
}

static bool join_finish(struct zk__arm *a)
{
	if (a->w.item) {
		take_entry(a, a->w.item);
		return true;
	}
	return join_try(a);
}

const struct zk__arm_ops zk__joinset_join_arm = {
	.try_op = join_try, .reg = join_reg, .unreg = join_unreg, .finish = join_finish,
};

int zk__joinset_join(zk_joinset_t *js, void **result, uint64_t *id, uint64_t deadline,
		     unsigned flags)
{
	if (!js)
		return -EINVAL;
	struct zk__arm a = {.ops = &zk__joinset_join_arm, .obj = js, .value = result};
	int r = zk__wait_one(&a, deadline, flags);
	if (id && a.aux) /* a task was taken (ids are never 0) */
		*id = a.aux;
	return r;
}

int zk_joinset_join_next(zk_joinset_t *js, void **result, uint64_t *id)
{
	return zk__joinset_join(js, result, id, ZK__NO_DEADLINE, 0);
}

int zk_joinset_join_next_timeout(zk_joinset_t *js, void **result, uint64_t *id,
				 uint64_t timeout_ns)
{
	return zk__joinset_join(js, result, id, zk__deadline_after(timeout_ns), 0);
}

int zk_joinset_try_join_next(zk_joinset_t *js, void **result, uint64_t *id)
{
	int r = zk__joinset_join(js, result, id, ZK__DEADLINE_NOW, 0);
	return r == -ETIMEDOUT ? -EAGAIN : r;
}

/* Under the lock. */
static int abort_locked(struct zk_joinset *js)
{
	int n = 0;
	for (struct js_entry *e = js->live; e; e = e->next) {
		zk_cancel(e->task);
		n++;
	}
	return n;
}

int zk_joinset_abort_all(zk_joinset_t *js)
{
	if (!js)
		return -EINVAL;
	pthread_mutex_lock(&js->lock);
	int n = abort_locked(js);
	pthread_mutex_unlock(&js->lock);
	return n;
}

size_t zk_joinset_len(zk_joinset_t *js)
{
	if (!js)
		return 0;
	pthread_mutex_lock(&js->lock);
	size_t n = js->nlive + js->ndone;
	pthread_mutex_unlock(&js->lock);
	return n;
}

/* Closes js to spawns, optionally cancels what runs, and joins every task
 * without being cancellable. */
int zk__joinset_drain(zk_joinset_t *js, bool cancel)
{
	pthread_mutex_lock(&js->lock);
	js->closed = true;
	if (cancel)
		abort_locked(js);
	pthread_mutex_unlock(&js->lock);
	for (;;) {
		int r = zk__joinset_join(js, NULL, NULL, ZK__NO_DEADLINE, ZK__SEL_NOCANCEL);
		if (r == -ECHILD)
			return 0;
		if (r == -EPERM)
			return r;
	}
}

int zk_joinset_shutdown(zk_joinset_t *js)
{
	if (!js)
		return -EINVAL;
	return zk__joinset_drain(js, true);
}

void zk_joinset_free(zk_joinset_t *js)
{
	if (!js)
		return;
	pthread_mutex_lock(&js->lock);
	js->freed = true;
	js->closed = true;
	abort_locked(js);
	struct js_entry *e;
	while ((e = done_pop(js))) {
		zk__task_release(e->task);
		zk__free(e);
		atomic_fetch_sub_explicit(&js->refs, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&js->lock);
	js_unref(js);
}

/* For scope.c: reopens a drained set (scope_wait leaves it usable). */
void zk__joinset_reopen(zk_joinset_t *js)
{
	pthread_mutex_lock(&js->lock);
	js->closed = false;
	pthread_mutex_unlock(&js->lock);
}

/* For scope.c: how many tasks still run. */
size_t zk__joinset_live(zk_joinset_t *js)
{
	pthread_mutex_lock(&js->lock);
	size_t n = js->nlive;
	pthread_mutex_unlock(&js->lock);
	return n;
}
