/* lib/chan_watch.c — watch channel: one value that changes, receivers wait
 * for a newer version than the one they saw.
 *
 * The value and its version live under one mutex; each receiver keeps the
 * version it saw last. A send bumps the version and wakes every waiting
 * receiver; a receiver that wakes takes whatever is latest then, so values
 * sent in between are skipped, by design. */
#include <errno.h>

#include "waitq.h"
#include "zokio/sync.h"

struct zk_watch {
	pthread_mutex_t lock;
	void *value;
	uint64_t version;
	bool closed;
	struct zk__waitq waiters;
};

int zk_watch_create(zk_watch_t **out, void *initial)
{
	if (!out)
		return -EINVAL;
	struct zk_watch *w = zk__calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	w->value = initial;
	*out = w;
	return 0;
}

void zk_watch_free(zk_watch_t *w)
{
	if (!w)
		return;
	pthread_mutex_destroy(&w->lock);
	zk__free(w);
}

static void wake_all_locked(struct zk__waitq *q, struct zk__wakelist *wl)
{
	struct zk__waiter *x;
	while ((x = zk__waitq_pop(q)))
		if (zk__waiter_claim(x))
			zk__wakelist_add(wl, x->sel);
}

int zk_watch_send(zk_watch_t *w, void *value)
{
	if (!w)
		return -EINVAL;
	struct zk__wakelist wl = {NULL, NULL};
	pthread_mutex_lock(&w->lock);
	if (w->closed) {
		pthread_mutex_unlock(&w->lock);
		return -EPIPE;
	}
	w->value = value;
	w->version++;
	wake_all_locked(&w->waiters, &wl);
	pthread_mutex_unlock(&w->lock);
	zk__wakelist_flush(&wl);
	return 0;
}

int zk_watch_close(zk_watch_t *w)
{
	if (!w)
		return -EINVAL;
	struct zk__wakelist wl = {NULL, NULL};
	pthread_mutex_lock(&w->lock);
	bool was = w->closed;
	w->closed = true;
	wake_all_locked(&w->waiters, &wl);
	pthread_mutex_unlock(&w->lock);
	zk__wakelist_flush(&wl);
	return was ? -EALREADY : 0;
}

void *zk_watch_get(zk_watch_t *w, uint64_t *version)
{
	if (!w)
		return NULL;
	pthread_mutex_lock(&w->lock);
	void *v = w->value;
	if (version)
		*version = w->version;
	pthread_mutex_unlock(&w->lock);
	return v;
}

int zk_watch_subscribe(zk_watch_t *w, zk_watch_rx_t *rx)
{
	if (!w || !rx)
		return -EINVAL;
	pthread_mutex_lock(&w->lock);
	rx->w = w;
	rx->seen = w->version;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

/* ---- changed arm: a->obj = rx, a->value = void ** -------------------------- */

static bool ch_try(struct zk__arm *a)
{
	zk_watch_rx_t *rx = a->obj;
	zk_watch_t *w = rx->w;
	bool got = true;
	pthread_mutex_lock(&w->lock);
	if (w->version != rx->seen) {
		*(void **)a->value = w->value;
		rx->seen = w->version;
		a->res = 0;
	} else if (w->closed) {
		a->res = -EPIPE;
	} else {
		got = false;
	}
	pthread_mutex_unlock(&w->lock);
	return got;
}

static int ch_reg(struct zk__arm *a)
{
	zk_watch_rx_t *rx = a->obj;
	zk_watch_t *w = rx->w;
	int ret = ZK__REG_WAIT;
	pthread_mutex_lock(&w->lock);
	if (w->version != rx->seen || w->closed)
		ret = zk__waiter_claim(&a->w) ? ZK__REG_CLAIMED : ZK__REG_LOST;
	else
		zk__waitq_push(&w->waiters, &a->w);
	pthread_mutex_unlock(&w->lock);
	return ret;
}

static void ch_unreg(struct zk__arm *a)
{
	zk_watch_rx_t *rx = a->obj;
	zk_watch_t *w = rx->w;
	pthread_mutex_lock(&w->lock);
	zk__waitq_remove(&w->waiters, &a->w);
	pthread_mutex_unlock(&w->lock);
}

const struct zk__arm_ops zk__watch_changed_arm = {
	.try_op = ch_try, .reg = ch_reg, .unreg = ch_unreg, .finish = ch_try,
};

static int changed_common(zk_watch_rx_t *rx, void **value, uint64_t deadline)
{
	if (!rx || !rx->w)
		return -EINVAL;
	void *dummy;
	struct zk__arm a = {.ops = &zk__watch_changed_arm, .obj = rx,
			    .value = value ? value : &dummy};
	return zk__wait_one(&a, deadline, 0);
}

int zk_watch_changed(zk_watch_rx_t *rx, void **value)
{
	return changed_common(rx, value, ZK__NO_DEADLINE);
}

int zk_watch_changed_timeout(zk_watch_rx_t *rx, void **value, uint64_t timeout_ns)
{
	return changed_common(rx, value, zk__deadline_after(timeout_ns));
}
