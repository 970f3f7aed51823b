/* tests/test_ring.c — a full submission queue: more operations, timeouts and
 * cancellations at once than the ring has SQ entries (the smallest ring, 8
 * entries). Nothing may be lost: every operation completes exactly once with
 * the right result, on every backend. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

#define NOPS 64

struct ring_test {
	int sv[NOPS][2];
	atomic_long parked;
	long results[NOPS];
	bool timed;
};

struct op_arg {
	struct ring_test *rt;
	int i;
};

static void *recv_one(void *arg)
{
	struct op_arg *a = arg;
	char c;
	if (a->rt->timed)
		ZT_CHECK_EQ(zk_timeout_next(20 * ZK_NSEC_PER_MSEC), 0);
	atomic_fetch_add(&a->rt->parked, 1);
	a->rt->results[a->i] = zk_recv(a->rt->sv[a->i][0], &c, 1, 0);
	return NULL;
}

static zk_runtime_t *small_ring_runtime(void)
{
	zk_config_t cfg = {.workers = 1, .ring_entries = 8};
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	return rt;
}

static void open_pairs(struct ring_test *t)
{
	for (int i = 0; i < NOPS; i++)
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t->sv[i]), 0);
}

static void close_pairs(struct ring_test *t)
{
	for (int i = 0; i < NOPS; i++) {
		close(t->sv[i][0]);
		close(t->sv[i][1]);
	}
}

/* All receivers park, then all are cancelled in one go from the same
 * worker: the cancel requests overflow the 8-entry SQ. */
static void *cancel_all(void *arg)
{
	struct ring_test *t = arg;
	zk_task_t *h[NOPS];
	struct op_arg args[NOPS];
	for (int i = 0; i < NOPS; i++) {
		args[i] = (struct op_arg){t, i};
		ZT_CHECK_EQ(zk_spawn(&h[i], recv_one, &args[i]), 0);
	}
	ZT_CHECK(zt_task_wait_at_least(&t->parked, NOPS, 10000));
	ZT_CHECK_EQ(zk_sleep_ms(10), 0); /* let the last receives reach the kernel */
	/* Half get data first, so cancels race with real completions. */
	for (int i = 0; i < NOPS; i += 2)
		ZT_CHECK_EQ(write(t->sv[i][1], "x", 1), 1);
	for (int i = 0; i < NOPS; i++)
		ZT_CHECK_EQ(zk_cancel(h[i]), 0);
	for (int i = 0; i < NOPS; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(ring, cancelling_more_ops_than_sq_entries_completes_each_once)
{
	struct ring_test *t = calloc(1, sizeof(*t));
	open_pairs(t);
	zk_runtime_t *rt = small_ring_runtime();
	zt_run(rt, cancel_all, t);
	zk_runtime_free(rt);
	for (int i = 0; i < NOPS; i++) {
		if (i % 2 == 0)
			/* Data was there: either the byte or the cancel won. */
			cr_expect(t->results[i] == 1 || t->results[i] == -ECANCELED, "op %d: %ld", i,
				  t->results[i]);
		else
			cr_expect_eq(t->results[i], -ECANCELED, "op %d: %ld", i, t->results[i]);
	}
	close_pairs(t);
	free(t);
}

/* Linked timeouts need two adjacent SQEs each: 64 of them at once go
 * through the full-SQ path, and every one must time out. */
static void *timeout_all(void *arg)
{
	struct ring_test *t = arg;
	zk_task_t *h[NOPS];
	struct op_arg args[NOPS];
	for (int i = 0; i < NOPS; i++) {
		args[i] = (struct op_arg){t, i};
		ZT_CHECK_EQ(zk_spawn(&h[i], recv_one, &args[i]), 0);
	}
	for (int i = 0; i < NOPS; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(ring, linked_timeouts_beyond_sq_entries_all_fire)
{
	struct ring_test *t = calloc(1, sizeof(*t));
	t->timed = true;
	open_pairs(t);
	zk_runtime_t *rt = small_ring_runtime();
	zt_run(rt, timeout_all, t);
	zk_runtime_free(rt);
	for (int i = 0; i < NOPS; i++)
		cr_expect_eq(t->results[i], -ETIMEDOUT, "op %d: %ld", i, t->results[i]);
	close_pairs(t);
	free(t);
}

/* Shutdown while 64 receives sit in an 8-entry ring: every one completes
 * with -ECANCELED and the runtime frees everything. */
static void *park_all_then_return(void *arg)
{
	struct ring_test *t = arg;
	static struct op_arg args[NOPS];
	for (int i = 0; i < NOPS; i++) {
		args[i] = (struct op_arg){t, i};
		ZT_CHECK_EQ(zk_spawn(NULL, recv_one, &args[i]), 0);
	}
	ZT_CHECK(zt_task_wait_at_least(&t->parked, NOPS, 10000));
	return NULL;
}

Test(ring, shutdown_with_more_ops_than_sq_entries_cancels_each)
{
	struct ring_test *t = calloc(1, sizeof(*t));
	open_pairs(t);
	for (int i = 0; i < NOPS; i++)
		t->results[i] = 1; /* overwritten by each receive's result */
	zk_runtime_t *rt = small_ring_runtime();
	zt_run(rt, park_all_then_return, t);
	cr_assert_eq(zk_runtime_shutdown(rt), 0);
	zk_runtime_free(rt);
	for (int i = 0; i < NOPS; i++)
		cr_expect_eq(t->results[i], -ECANCELED, "op %d: %ld", i, t->results[i]);
	close_pairs(t);
	free(t);
}
