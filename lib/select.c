/* lib/select.c — zk_select / zk_select_all (the public face of waitq.c's
 * selections) and zk_timeout_call.
 *
 * Each zk_sel_t becomes an arm of one selection: every operation that
 * cannot complete at once registers with its object, and the first one to
 * be ready claims the selection; the rest are unregistered without having
 * done anything. That is what makes every operation of a select
 * cancel-safe: only the winner's operation is performed. */
#include <errno.h>
#include <string.h>

#include "waitq.h"
#include "zokio/select.h"

extern const struct zk__arm_ops zk__chan_recv_arm, zk__chan_send_arm, zk__notify_wait_arm,
    zk__sem_acquire_arm, zk__mutex_lock_arm, zk__joinset_join_arm, zk__bcast_recv_arm,
    zk__watch_changed_arm;
int zk__joinset_join(zk_joinset_t *js, void **result, uint64_t *id, uint64_t deadline,
		     unsigned flags);

/* Arms kept on the stack for small selects. */
#define STACK_ARMS 8

/* Fills arm a for op; returns 0 or -EINVAL. */
static int make_arm(struct zk__arm *a, zk_sel_t *op)
{
	memset(a, 0, sizeof(*a));
	a->obj = op->obj;
	a->value = &op->value;
	switch (op->kind) {
	case ZK_SEL_RECV:
		a->ops = &zk__chan_recv_arm;
		a->n = 1;
		break;
	case ZK_SEL_SEND:
		a->ops = &zk__chan_send_arm;
		a->value = op->value;
		break;
	case ZK_SEL_NOTIFY:
		a->ops = &zk__notify_wait_arm;
		break;
	case ZK_SEL_ACQUIRE:
		if (op->n > ZK_SEM_MAX_PERMITS)
			return -EINVAL;
		a->ops = &zk__sem_acquire_arm;
		a->n = op->n;
		break;
	case ZK_SEL_LOCK:
		a->ops = &zk__mutex_lock_arm;
		break;
	case ZK_SEL_RDLOCK:
	case ZK_SEL_WRLOCK:
		a->ops = &zk__sem_acquire_arm;
		a->obj = op->obj ? &((zk_rwlock_t *)op->obj)->sem : NULL;
		a->n = op->kind == ZK_SEL_RDLOCK ? 1 : ZK_RWLOCK_MAX_READERS;
		break;
	case ZK_SEL_JOIN:
		a->ops = &zk__joinset_join_arm;
		break;
	case ZK_SEL_BCAST_RECV:
		if (op->obj && !((zk_bcast_rx_t *)op->obj)->b)
			return -EINVAL;
		a->ops = &zk__bcast_recv_arm;
		break;
	case ZK_SEL_WATCH:
		if (op->obj && !((zk_watch_rx_t *)op->obj)->w)
			return -EINVAL;
		a->ops = &zk__watch_changed_arm;
		break;
	default:
		return -EINVAL;
	}
	return a->obj ? 0 : -EINVAL;
}

/* Copies a completed arm's outcome back into its op. */
static void report(zk_sel_t *op, struct zk__arm *a)
{
	op->res = a->res;
	switch (op->kind) {
	case ZK_SEL_RECV:
		op->res = a->res > 0 ? 0 : a->res;
		break;
	case ZK_SEL_JOIN:
		op->n = a->aux;
		break;
	case ZK_SEL_BCAST_RECV:
		if (a->res == -EOVERFLOW)
			op->n = a->aux;
		break;
	default:
		break;
	}
}

/* One selection over the ops of `ops` whose index is in map[0..m). */
static int select_some(zk_sel_t *ops, const size_t *map, size_t m, uint64_t deadline)
{
	struct zk__arm stack_arms[STACK_ARMS];
	struct zk__arm *arms = m <= STACK_ARMS ? stack_arms : zk__alloc(m * sizeof(*arms));
	if (!arms)
		return -ENOMEM;
	int r = 0;
	for (size_t k = 0; k < m && r == 0; k++)
		r = make_arm(&arms[k], &ops[map[k]]);
	if (r == 0) {
		r = zk__select(arms, m, zk__sel_start(m), deadline, 0);
		if (r >= 0) {
			report(&ops[map[r]], &arms[r]);
			r = (int)map[r];
		}
	}
	if (arms != stack_arms)
		zk__free(arms);
	return r;
}

static int enabled_map(zk_sel_t *ops, size_t n, size_t **map_out, size_t *stack_map)
{
	size_t *map = n <= STACK_ARMS ? stack_map : zk__alloc(n * sizeof(size_t));
	if (!map)
		return -ENOMEM;
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (ops[i].kind != ZK_SEL_NONE)
			map[m++] = i;
	*map_out = map;
	return (int)m;
}

int zk_select(zk_sel_t *ops, size_t n, uint64_t timeout_ns)
{
	if ((!ops && n) || n > ZK_SELECT_MAX)
		return -EINVAL;
	size_t stack_map[STACK_ARMS], *map;
	int m = enabled_map(ops, n, &map, stack_map);
	if (m < 0)
		return m;
	int r = select_some(ops, map, (size_t)m, zk__deadline_after(timeout_ns));
	if (map != stack_map)
		zk__free(map);
	return r;
}

int zk_select_all(zk_sel_t *ops, size_t n, uint64_t timeout_ns)
{
	if ((!ops && n) || n > ZK_SELECT_MAX)
		return -EINVAL;
	size_t stack_map[STACK_ARMS], *map;
	int m = enabled_map(ops, n, &map, stack_map);
	if (m < 0)
		return m;
	for (int k = 0; k < m; k++)
		ops[map[k]].res = -EINPROGRESS;
	uint64_t deadline = zk__deadline_after(timeout_ns);
	int r = 0;
	size_t left = (size_t)m;
	while (left > 0) {
		r = select_some(ops, map, left, deadline);
		if (r < 0)
			break;
		/* Drop the completed op from the map (order does not matter:
		 * the start index is random anyway). */
		for (size_t k = 0; k < left; k++) {
			if (map[k] == (size_t)r) {
				map[k] = map[--left];
				break;
			}
		}
		r = 0;
	}
	if (map != stack_map)
		zk__free(map);
	return r;
}

/* ---- zk_timeout_call ------------------------------------------------------ */

int zk_timeout_call(uint64_t timeout_ns, zk_task_fn fn, void *arg, void **result)
{
	if (!fn)
		return -EINVAL;
	if (!zk_runtime_current())
		return -EPERM;
	zk_joinset_t *js;
	int r = zk_joinset_create(&js, NULL);
	if (r < 0)
		return r;
	r = zk_joinset_spawn(js, fn, arg, NULL);
	if (r < 0) {
		zk_joinset_free(js);
		return r;
	}
	void *res = NULL;
	r = zk__joinset_join(js, &res, NULL, zk__deadline_after(timeout_ns), 0);
	if (r == -ETIMEDOUT || r == -ECANCELED) {
		zk_joinset_abort_all(js);
		zk__joinset_join(js, &res, NULL, ZK__NO_DEADLINE, ZK__SEL_NOCANCEL);
	} else if (r == -ESRCH) {
		r = -ECANCELED; /* cancelled before it ran: the runtime is closing */
	}
	if (result)
		*result = res;
	zk_joinset_free(js);
	return r;
}
