/* lib/chan_broadcast.c — broadcast channel: every receiver sees every
 * message, lagging receivers are told how many they missed.
 *
 * A ring of the last `cap` messages and the position of the next one
 * (tail), under one mutex; each receiver keeps its own position. A
 * receiver more than cap behind has lost the messages that were
 * overwritten: it is told how many and moves to the oldest kept. Sends
 * never wait; each send wakes every waiting receiver (they are all
 * interested). Messages are plain void * values, so the ring needs no
 * per-slot reference counts: overwriting one frees nothing. */
#include <errno.h>

#include "waitq.h"
#include "zokio/sync.h"

struct zk_bcast {
	pthread_mutex_t lock;
	size_t cap;
	void **ring;
	uint64_t tail;      /* position of the next message */
	long subscribers;
	bool closed;
	struct zk__waitq waiters;
};

int zk_bcast_create(zk_bcast_t **out, size_t capacity)
{
	if (!out || capacity == 0 || capacity > ((size_t)1 << 32))
		return -EINVAL;
	struct zk_bcast *b = zk__calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->ring = zk__calloc(capacity, sizeof(void *));
	if (!b->ring) {
		zk__free(b);
		return -ENOMEM;
	}
	b->cap = capacity;
	pthread_mutex_init(&b->lock, NULL);
	*out = b;
	return 0;
}

void zk_bcast_free(zk_bcast_t *b)
{
	if (!b)
		return;
	pthread_mutex_destroy(&b->lock);
	zk__free(b->ring);
	zk__free(b);
}

static void wake_all_locked(struct zk__waitq *q, struct zk__wakelist *wl)
{
	struct zk__waiter *w;
	while ((w = zk__waitq_pop(q)))
		if (zk__waiter_claim(w))
			zk__wakelist_add(wl, w->sel);
}

int zk_bcast_send(zk_bcast_t *b, void *value)
{
	if (!b)
		return -EINVAL;
	struct zk__wakelist wl = {NULL, NULL};
	pthread_mutex_lock(&b->lock);
	if (b->closed) {
		pthread_mutex_unlock(&b->lock);
		return -EPIPE;
	}
	b->ring[b->tail % b->cap] = value;
	b->tail++;
	long n = b->subscribers;
	wake_all_locked(&b->waiters, &wl);
	pthread_mutex_unlock(&b->lock);
	zk__wakelist_flush(&wl);
	return n > INT32_MAX ? INT32_MAX : (int)n;
}

int zk_bcast_close(zk_bcast_t *b)
{
	if (!b)
		return -EINVAL;
	struct zk__wakelist wl = {NULL, NULL};
	pthread_mutex_lock(&b->lock);
	bool was = b->closed;
	b->closed = true;
	wake_all_locked(&b->waiters, &wl);
	pthread_mutex_unlock(&b->lock);
	zk__wakelist_flush(&wl);
	return was ? -EALREADY : 0;
}

int zk_bcast_subscribe(zk_bcast_t *b, zk_bcast_rx_t *rx)
{
	if (!b || !rx)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	rx->b = b;
	rx->next = b->tail;
	b->subscribers++;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

int zk_bcast_unsubscribe(zk_bcast_rx_t *rx)
{
	if (!rx || !rx->b)
		return -EINVAL;
	zk_bcast_t *b = rx->b;
	pthread_mutex_lock(&b->lock);
	b->subscribers--;
	pthread_mutex_unlock(&b->lock);
	rx->b = NULL;
	return 0;
}

/* ---- receive arm: a->obj = rx, a->value = void **, a->aux = missed -------- */

/* Under b->lock. */
static bool rx_ready_locked(zk_bcast_t *b, zk_bcast_rx_t *rx)
{
	return rx->next < b->tail || b->closed;
}

static bool brx_try(struct zk__arm *a)
{
	zk_bcast_rx_t *rx = a->obj;
	zk_bcast_t *b = rx->b;
	bool got = true;
	pthread_mutex_lock(&b->lock);
	if (rx->next < b->tail) {
		uint64_t oldest = b->tail > b->cap ? b->tail - b->cap : 0;
		if (rx->next < oldest) {
			a->aux = oldest - rx->next;
			rx->next = oldest;
			a->res = -EOVERFLOW;
		} else {
			*(void **)a->value = b->ring[rx->next % b->cap];
			rx->next++;
			a->res = 0;
		}
	} else if (b->closed) {
		a->res = -EPIPE;
	} else {
		got = false;
	}
	pthread_mutex_unlock(&b->lock);
	return got;
}

static int brx_reg(struct zk__arm *a)
{
	zk_bcast_rx_t *rx = a->obj;
	zk_bcast_t *b = rx->b;
	int ret = ZK__REG_WAIT;
	pthread_mutex_lock(&b->lock);
	if (rx_ready_locked(b, rx))
		ret = zk__waiter_claim(&a->w) ? ZK__REG_CLAIMED : ZK__REG_LOST;
	else
		zk__waitq_push(&b->waiters, &a->w);
	pthread_mutex_unlock(&b->lock);
	return ret;
}

static void brx_unreg(struct zk__arm *a)
{
	zk_bcast_rx_t *rx = a->obj;
	zk_bcast_t *b = rx->b;
	pthread_mutex_lock(&b->lock);
	zk__waitq_remove(&b->waiters, &a->w);
	pthread_mutex_unlock(&b->lock);
}

const struct zk__arm_ops zk__bcast_recv_arm = {
	.try_op = brx_try, .reg = brx_reg, .unreg = brx_unreg, .finish = brx_try,
};

static int recv_common(zk_bcast_rx_t *rx, void **value, uint64_t *missed, uint64_t deadline)
{
	if (!rx || !rx->b)
		return -EINVAL;
	void *dummy;
	struct zk__arm a = {.ops = &zk__bcast_recv_arm, .obj = rx,
			    .value = value ? value : &dummy};
	int r = zk__wait_one(&a, deadline, 0);
	if (r == -EOVERFLOW && missed)
		*missed = a.aux;
	return r;
}

int zk_bcast_recv(zk_bcast_rx_t *rx, void **value, uint64_t *missed)
{
	return recv_common(rx, value, missed, ZK__NO_DEADLINE);
}

int zk_bcast_recv_timeout(zk_bcast_rx_t *rx, void **value, uint64_t *missed,
			  uint64_t timeout_ns)
{
	return recv_common(rx, value, missed, zk__deadline_after(timeout_ns));
}

int zk_bcast_try_recv(zk_bcast_rx_t *rx, void **value, uint64_t *missed)
{
	int r = recv_common(rx, value, missed, ZK__DEADLINE_NOW);
	return r == -ETIMEDOUT ? -EAGAIN : r;
}
