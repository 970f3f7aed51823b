/* lib/scope.c — structured cancellation scopes, on top of join sets.
 *
 * A scope is a join set whose results nobody wants and whose end is a
 * barrier: zk_scope_end closes it, cancels what still runs and joins every
 * child with a wait that cannot itself be cancelled, so a cancelled parent
 * still outlives its children. Cancellation propagates down because each
 * child that owns a scope ends it the same way when it is cancelled. */
#include <errno.h>

#include "waitq.h"
#include "zokio/select.h"

int zk__joinset_join(zk_joinset_t *js, void **result, uint64_t *id, uint64_t deadline,
		     unsigned flags);
int zk__joinset_drain(zk_joinset_t *js, bool cancel);
void zk__joinset_reopen(zk_joinset_t *js);

int zk_scope_begin(zk_scope_t *s, zk_runtime_t *rt)
{
	if (!s)
		return -EINVAL;
	s->js = NULL;
	return zk_joinset_create(&s->js, rt);
}

int zk_scope_spawn(zk_scope_t *s, zk_task_fn fn, void *arg)
{
	if (!s || !s->js)
		return -EINVAL;
	return zk_joinset_spawn(s->js, fn, arg, NULL);
}

int zk_scope_cancel(zk_scope_t *s)
{
	if (!s || !s->js)
		return -EINVAL;
	zk_joinset_abort_all(s->js);
	return 0;
}

int zk_scope_wait(zk_scope_t *s)
{
	if (!s || !s->js)
		return -EINVAL;
	for (;;) {
		int r = zk__joinset_join(s->js, NULL, NULL, ZK__NO_DEADLINE, 0);
		if (r == -ECHILD)
			return 0;
		if (r == -EPERM)
			return r;
		if (r == -ECANCELED && zk_cancelled()) {
			/* Our own cancel: pass it on, and still outlive them. */
			r = zk__joinset_drain(s->js, true);
			zk__joinset_reopen(s->js);
			return r < 0 ? r : -ECANCELED;
		}
	}
}

int zk_scope_end(zk_scope_t *s)
{
	if (!s || !s->js)
		return -EINVAL;
	int r = zk__joinset_drain(s->js, true);
	if (r < 0)
		return r;
	zk_joinset_free(s->js);
	s->js = NULL;
	return 0;
}
