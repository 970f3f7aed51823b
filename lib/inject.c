/* lib/inject.c — the global injection queue: tasks spawned or woken from
 * outside the runtime, and the overflow of full local queues.
 *
 * A mutex-protected intrusive FIFO, like Tokio's inject queue: it is touched
 * far less often than the local queues (workers look at it once every
 * ZK__GLOBAL_INTERVAL tasks, or when their own queue is empty), and an atomic
 * length lets them skip the lock when it is empty. */
#include "internal.h"

void zk__inject_init(struct zk__inject *q)
{
	pthread_mutex_init(&q->lock, NULL);
	q->head = q->tail = NULL;
	atomic_init(&q->len, 0);
	q->closed = false;
}

void zk__inject_destroy(struct zk__inject *q)
{
	pthread_mutex_destroy(&q->lock);
}

void zk__inject_push_batch(struct zk__inject *q, struct zk_task *head, struct zk_task *tail,
			   size_t n)
{
	tail->next = NULL;
	pthread_mutex_lock(&q->lock);
	if (q->tail)
		q->tail->next = head;
	else
		q->head = head;
	q->tail = tail;
	atomic_fetch_add_explicit(&q->len, n, memory_order_seq_cst);
	pthread_mutex_unlock(&q->lock);
}

void zk__inject_push(struct zk__inject *q, struct zk_task *t)
{
	zk__inject_push_batch(q, t, t, 1);
}

struct zk_task *zk__inject_pop(struct zk__inject *q)
{
	if (zk__inject_empty(q))
		return NULL;
	pthread_mutex_lock(&q->lock);
	struct zk_task *t = q->head;
	if (t) {
		q->head = t->next;
		if (!q->head)
			q->tail = NULL;
		t->next = NULL;
		atomic_fetch_sub_explicit(&q->len, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&q->lock);
	return t;
}

size_t zk__inject_pop_batch(struct zk__inject *q, size_t max, struct zk_task **head)
{
	*head = NULL;
	if (max == 0 || zk__inject_empty(q))
		return 0;
	pthread_mutex_lock(&q->lock);
	struct zk_task *first = q->head, *last = NULL, *it = first;
	size_t n = 0;
	while (it && n < max) {
		last = it;
		it = it->next;
		n++;
	}
	if (last) {
		q->head = it;
		if (!it)
			q->tail = NULL;
		last->next = NULL;
		atomic_fetch_sub_explicit(&q->len, n, memory_order_relaxed);
	}
	pthread_mutex_unlock(&q->lock);
	*head = first;
	return n;
}
