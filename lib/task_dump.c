/* lib/task_dump.c — the task dump: every live task, its state, what it waits
 * on, for how long, and where it was spawned.
 *
 * A task notes its wait in its own record when it parks (zk__obs_park): the
 * struct zk__wait it publishes lives on its stack, which a dump on another
 * thread must not read (the task may resume and pop it at any moment). The
 * record itself stays valid while the dump holds its shard's lock: a record
 * is unlinked, under that lock, before it is freed or reused. The notes are
 * relaxed atomics written by the task and read racily: a dump taken while a
 * task moves on may pair its new state with its old wait, never garbage.
 *
 * Spawn sites: zk_spawn_at() leaves file:line in a thread-local that the
 * spawn it makes (same thread, no suspension in between) moves into the new
 * record; plain zk_spawn leaves it empty ("?"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "waitq.h"
#include "zokio/metrics.h"
#include "zokio/time.h"

extern const struct zk__arm_ops zk__chan_recv_arm, zk__chan_send_arm, zk__mutex_lock_arm,
    zk__sem_acquire_arm, zk__notify_wait_arm, zk__bcast_recv_arm, zk__watch_changed_arm,
    zk__joinset_join_arm;

_Thread_local const char *zk__spawn_file __attribute__((tls_model("initial-exec")));
_Thread_local int zk__spawn_line __attribute__((tls_model("initial-exec")));

int zk_spawn_at(zk_task_t **handle, zk_task_fn fn, void *arg, const char *file, int line)
{
	zk__spawn_file = file;
	zk__spawn_line = line;
	int r = zk_spawn(handle, fn, arg);
	zk__spawn_file = NULL;
	return r;
}

int zk_spawn_on_at(zk_runtime_t *rt, zk_task_t **handle, zk_task_fn fn, void *arg,
		   const char *file, int line)
{
	zk__spawn_file = file;
	zk__spawn_line = line;
	int r = zk_spawn_on(rt, handle, fn, arg);
	zk__spawn_file = NULL;
	return r;
}

/* The sync part of a park note (obs_park.h): which primitive. Returns the
 * wait's deadline, or 0. */
uint64_t zk__obs_park_sync(struct zk_task *t, const struct zk__wait *wt)
{
	const struct zk__arm *a = wt->what;
	const struct zk__sel *s = wt->obj;
	atomic_store_explicit(&t->obs.w_ptr, a->ops, memory_order_relaxed);
	atomic_store_explicit(&t->obs.w_obj, a->obj, memory_order_relaxed);
	return s->deadline != ZK__NO_DEADLINE ? s->deadline : 0;
}

static const char *sync_name(const void *ops)
{
	if (ops == &zk__chan_recv_arm)
		return "channel_recv";
	if (ops == &zk__chan_send_arm)
		return "channel_send";
	if (ops == &zk__mutex_lock_arm)
		return "mutex";
	if (ops == &zk__sem_acquire_arm)
		return "semaphore";
	if (ops == &zk__notify_wait_arm)
		return "notify";
	if (ops == &zk__bcast_recv_arm)
		return "broadcast";
	if (ops == &zk__watch_changed_arm)
		return "watch";
	if (ops == &zk__joinset_join_arm)
		return "joinset";
	return "sync";
}

static const char *state_name(uint32_t s)
{
	if (s & ZK__T_DONE)
		return "done";
	if (s & ZK__T_RUNNING)
		return "running";
	if (s == ZK__T_SCHEDULED)
		return "runnable";
	return "suspended";
}

/* What the dump shows of one task, copied under its shard's lock so that
 * the (slow) formatting runs with no lock held: a worker spawning or
 * freeing a task on that shard never waits for a dump to print. */
struct row {
	uint64_t id;
	uint32_t state;
	uint64_t kfd, arg, since;
	const void *ptr, *obj;
	const char *file;
	int line;
};

static void copy_row(struct row *r, struct zk_task *t)
{
	r->id = t->id;
	r->state = atomic_load_explicit(&t->state, memory_order_acquire);
	r->kfd = atomic_load_explicit(&t->obs.w_kfd, memory_order_relaxed);
	r->arg = atomic_load_explicit(&t->obs.w_arg, memory_order_relaxed);
	r->since = atomic_load_explicit(&t->obs.w_since, memory_order_relaxed);
	r->ptr = atomic_load_explicit(&t->obs.w_ptr, memory_order_relaxed);
	r->obj = atomic_load_explicit(&t->obs.w_obj, memory_order_relaxed);
	r->file = t->obs.spawn_file;
	r->line = t->obs.spawn_line;
}

/* One task, as JSON (json) or as a text line. */
static void dump_one(FILE *f, const struct row *t, uint64_t now, bool json, bool first)
{
	const char *state = state_name(t->state);
	bool waiting = t->state == ZK__T_IDLE;
	char spawn[256];
	if (t->file)
		snprintf(spawn, sizeof(spawn), "%s:%d", t->file, t->line);
	else
		snprintf(spawn, sizeof(spawn), "?");
	/* The wait description. */
	char wait[192] = "";
	uint64_t waited_ms = 0;
	if (waiting) {
		uint32_t kind = (uint32_t)(t->kfd >> 32);
		int32_t fd = (int32_t)(uint32_t)t->kfd;
		uint64_t arg = t->arg;
		waited_ms = t->since && now > t->since ? (now - t->since) / ZK_NSEC_PER_MSEC : 0;
		const char *op;
		switch (kind) {
		case ZK__WAIT_IO:
			op = zk_metrics_io_name((unsigned)arg);
			snprintf(wait, sizeof(wait),
				 json ? "{\"kind\":\"io\",\"op\":\"%s\",\"fd\":%d}" : "io %s fd=%d",
				 op ? op : "op", (int)fd);
			break;
		case ZK__WAIT_TIMER:
			snprintf(wait, sizeof(wait),
				 json ? "{\"kind\":\"timer\",\"deadline_ns\":%llu,\"in_ms\":%lld}"
				      : "timer deadline=%llu (in %lld ms)",
				 (unsigned long long)arg,
				 (long long)((int64_t)(arg - zk_now_ns()) / (int64_t)ZK_NSEC_PER_MSEC));
			break;
		case ZK__WAIT_JOIN:
			snprintf(wait, sizeof(wait),
				 json ? "{\"kind\":\"join\",\"task\":%llu}" : "join task=%llu",
				 (unsigned long long)arg);
			break;
		case ZK__WAIT_SYNC:
		case ZK__WAIT_SELECT:
			snprintf(wait, sizeof(wait),
				 json ? "{\"kind\":\"%s\",\"object\":\"%p\",\"select\":%s,"
					"\"deadline_ns\":%llu}"
				      : "%s object=%p%s deadline=%llu",
				 sync_name(t->ptr), t->obj,
				 json ? (kind == ZK__WAIT_SELECT ? "true" : "false")
				      : (kind == ZK__WAIT_SELECT ? " (select)" : ""),
				 (unsigned long long)arg);
			break;
		default:
			snprintf(wait, sizeof(wait), json ? "{\"kind\":\"other\"}" : "other");
			break;
		}
	}
	if (json) {
		fprintf(f, "%s{\"id\":%llu,\"state\":\"%s\",\"wait\":%s,\"waited_ms\":%llu,"
			"\"spawn\":\"",
			first ? "" : ",", (unsigned long long)t->id, state, waiting ? wait : "null",
			(unsigned long long)waited_ms);
		for (const char *c = spawn; *c; c++) {
			if (*c == '"' || *c == '\\')
				fputc('\\', f);
			if ((unsigned char)*c >= 0x20)
				fputc(*c, f);
		}
		fputs("\"}", f);
	} else {
		fprintf(f, "task %llu %s", (unsigned long long)t->id, state);
		if (waiting)
			fprintf(f, " %llums on %s", (unsigned long long)waited_ms, wait);
		fprintf(f, " spawned at %s\n", spawn);
	}
}

/* Walks every shard: counts its tasks, sizes a buffer with no lock held,
 * copies the rows under the lock (tasks linked in between are left out:
 * the dump is a snapshot), formats them after. Returns the number of tasks
 * written, or -ENOMEM. */
static int dump_all(zk_runtime_t *rt, FILE *f, bool json)
{
	uint64_t now = zk__coarse_now();
	int n = 0;
	struct row *rows = NULL;
	size_t cap = 0;
	for (unsigned i = 0; i < rt->nshards; i++) {
		struct zk__live_shard *sh = &rt->shards[i];
		size_t count = 0;
		pthread_mutex_lock(&sh->lock);
		for (struct zk_task *t = sh->head; t; t = t->live_next)
			count++;
		pthread_mutex_unlock(&sh->lock);
		if (count == 0)
			continue;
		if (count > cap) {
			struct row *nr = realloc(rows, count * sizeof(*rows));
			if (!nr) {
				free(rows);
				return -ENOMEM;
			}
			rows = nr;
			cap = count;
		}
		size_t got = 0;
		pthread_mutex_lock(&sh->lock);
		for (struct zk_task *t = sh->head; t && got < cap; t = t->live_next)
			copy_row(&rows[got++], t);
		pthread_mutex_unlock(&sh->lock);
		for (size_t k = 0; k < got; k++, n++)
			dump_one(f, &rows[k], now, json, n == 0);
	}
	free(rows);
	return n;
}

int zk_task_dump_json(zk_runtime_t *rt, char **out, size_t *len)
{
	if (!rt || !out)
		return -EINVAL;
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f)
		return -ENOMEM;
	fputs("{\"tasks\":[", f);
	int listed = dump_all(rt, f, true);
	fputs("]}", f);
	if (fclose(f) != 0 || !buf || listed < 0) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

int zk_task_dump(zk_runtime_t *rt, FILE *f)
{
	if (!rt || !f)
		return -EINVAL;
	return dump_all(rt, f, false);
}

/* Shutdown is about to cancel every task still alive: with
 * ZK_TASK_DUMP_AT_EXIT=1 in the environment, say which ones first (a task
 * nobody joined or cancelled is usually a leak). */
void zk__obs_dump_at_shutdown(zk_runtime_t *rt)
{
	const char *v = getenv("ZK_TASK_DUMP_AT_EXIT");
	if (!v || !*v || strcmp(v, "0") == 0)
		return;
	uint64_t live = zk__live_tasks(rt);
	if (live == 0)
		return;
	fprintf(stderr, "zokio: %llu task(s) alive at shutdown, cancelling:\n",
		(unsigned long long)live);
	zk_task_dump(rt, stderr);
}
