/* tests/test_pool.c — pool.h: the client-side connection pool against a
 * real server on 127.0.0.1 (and a Unix socket): reuse, the health check on
 * checkout (peer closed, reset, unsolicited bytes), max idle per key, idle
 * timeout, max total (waiting, eviction, cancellation), errors, and many
 * tasks sharing one pool. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(pool, .timeout = 60);

/* ---- the server --------------------------------------------------------------------------
 * Each request is a command byte and a 32-bit value; the reply is
 * value * 2 + 1. After replying, 'c' closes the connection, 'r' resets it,
 * 'u' sends one byte nobody asked for. */

struct server {
	int lfd;
	char addr[ZK_ADDR_STRLEN];
	atomic_long accepted;
	atomic_long closed;
	zk_task_t *task;
};

static void *serve_conn(void *arg)
{
	struct server *s = ((void **)arg)[0];
	int fd = (int)(intptr_t)((void **)arg)[1];
	free(arg);
	for (;;) {
		char req[5];
		ssize_t n = zk_recv_exact(fd, req, sizeof(req));
		if (n != (ssize_t)sizeof(req))
			break;
		uint32_t v;
		memcpy(&v, req + 1, 4);
		v = v * 2 + 1;
		if (zk_send_all(fd, &v, 4) != 4)
			break;
		if (req[0] == 'c')
			break;
		if (req[0] == 'r') {
			struct linger lg = {.l_onoff = 1, .l_linger = 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			break;
		}
		if (req[0] == 'u')
			zk_send(fd, "!", 1, 0);
	}
	zk_close(fd);
	atomic_fetch_add(&s->closed, 1);
	return NULL;
}

static void *accept_loop(void *arg)
{
	struct server *s = arg;
	for (;;) {
		int fd = zk_accept(s->lfd, NULL, NULL);
		if (fd < 0)
			break; /* cancelled at the end of the test */
		atomic_fetch_add(&s->accepted, 1);
		void **a = malloc(2 * sizeof(void *));
		a[0] = s;
		a[1] = (void *)(intptr_t)fd;
		ZT_CHECK_EQ(zk_spawn(NULL, serve_conn, a), 0);
	}
	return NULL;
}

static void server_start_tcp(struct server *s)
{
	s->lfd = zk_tcp_listen("127.0.0.1", 0, 1024);
	ZT_CHECK(s->lfd >= 0);
	snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", zk_socket_port(s->lfd));
	ZT_CHECK_EQ(zk_spawn(&s->task, accept_loop, s), 0);
}

/* Call once every client connection is closed: waits until each handler
 * has seen its EOF and left, since they point into s. */
static void server_stop(struct server *s)
{
	zk_cancel(s->task);
	ZT_CHECK_EQ(zk_join(s->task, NULL), 0);
	zk_close(s->lfd);
	ZT_CHECK(zt_task_wait_at_least(&s->closed, atomic_load(&s->accepted), 10000));
}

/* One request on fd; true if the reply is right. */
static bool request(int fd, char cmd, uint32_t v)
{
	char req[5] = {cmd};
	memcpy(req + 1, &v, 4);
	if (zk_send_all(fd, req, sizeof(req)) != (ssize_t)sizeof(req))
		return false;
	uint32_t r = 0;
	return zk_recv_exact(fd, &r, 4) == 4 && r == v * 2 + 1;
}

static struct zk_pool_stats stats(zk_pool_t *p)
{
	struct zk_pool_stats st;
	ZT_CHECK_EQ(zk_pool_stats(p, &st), 0);
	return st;
}

/* ---- reuse and the health check ------------------------------------------------------------ */

static void *reuse(void *arg)
{
	(void)arg;
	struct server s = {0};
	server_start_tcp(&s);
	zk_pool_t *p;
	ZT_CHECK_EQ(zk_pool_create(&p, NULL), 0);
	int fd = zk_pool_get(p, s.addr);
	ZT_CHECK(fd >= 0);
	ZT_CHECK(request(fd, 'e', 1));
	ZT_CHECK_EQ(stats(p).in_use, 1);
	ZT_CHECK_EQ(zk_pool_put(p, fd, true), 0);
	ZT_CHECK_EQ(stats(p).idle, 1);
	ZT_CHECK_EQ(stats(p).in_use, 0);
	for (uint32_t i = 0; i < 10; i++) {
		int again = zk_pool_get(p, s.addr);
		ZT_CHECK_EQ(again, fd); /* the idle connection, not a new one */
		ZT_CHECK(request(again, 'e', i));
		ZT_CHECK_EQ(zk_pool_put(p, again, true), 0);
	}
	struct zk_pool_stats st = stats(p);
	ZT_CHECK_EQ(st.connects, 1);
	ZT_CHECK_EQ(st.reuses, 10);
	ZT_CHECK_EQ(atomic_load(&s.accepted), 1);
	/* Not reusable: closed, and the server sees the EOF. */
	fd = zk_pool_get(p, s.addr);
	ZT_CHECK_EQ(zk_pool_put(p, fd, false), 0);
	ZT_CHECK_EQ(stats(p).idle, 0);
	ZT_CHECK(zt_task_wait_at_least(&s.closed, 1, 10000));
	ZT_CHECK_EQ(zk_pool_free(p), 0);
	server_stop(&s);
	return NULL;
}

Test(pool, a_returned_connection_is_reused_for_the_same_address)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, reuse, NULL);
	zk_runtime_free(rt);
}

/* The server ends the connection ('c' close, 'r' reset, 'u' stray byte)
 * while the client still holds it; the client waits until that is visible
 * on its socket, then puts it back as reusable, as a client that did not
 * look would. The next get must not hand it out. */
static void *health(void *arg)
{
	char cmd = (char)(intptr_t)arg;
	struct server s = {0};
	server_start_tcp(&s);
	zk_pool_t *p;
	ZT_CHECK_EQ(zk_pool_create(&p, NULL), 0);
	int fd = zk_pool_get(p, s.addr);
	ZT_CHECK(fd >= 0);
	ZT_CHECK(request(fd, cmd, 5));
	int ev = zk_poll(fd, cmd == 'u' ? POLLIN : POLLRDHUP);
	ZT_CHECK(ev > 0);
	ZT_CHECK_EQ(zk_pool_put(p, fd, true), 0);
	ZT_CHECK_EQ(stats(p).idle, 1);
	int fresh = zk_pool_get(p, s.addr);
	ZT_CHECK(fresh >= 0);
	ZT_CHECK(request(fresh, 'e', 6)); /* a working connection */
	struct zk_pool_stats st = stats(p);
	ZT_CHECK_EQ(st.dead, 1);
	ZT_CHECK_EQ(st.connects, 2);
	ZT_CHECK_EQ(st.reuses, 0);
	ZT_CHECK_EQ(st.idle, 0);
	ZT_CHECK_EQ(atomic_load(&s.accepted), 2);
	ZT_CHECK_EQ(zk_pool_put(p, fresh, true), 0);
	ZT_CHECK_EQ(zk_pool_free(p), 0);
	server_stop(&s);
	return NULL;
}

Test(pool, health_check_drops_a_connection_the_peer_closed)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, health, (void *)(intptr_t)'c');
	zk_runtime_free(rt);
}

Test(pool, health_check_drops_a_connection_the_peer_reset)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, health, (void *)(intptr_t)'r');
	zk_runtime_free(rt);
}

Test(pool, health_check_drops_a_connection_with_unsolicited_bytes)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, health, (void *)(intptr_t)'u');
	zk_runtime_free(rt);
}

/* ---- limits ---------------------------------------------------------------------------------- */

static void *idle_limits(void *arg)
{
	(void)arg;
	struct server s = {0};
	server_start_tcp(&s);
	zk_pool_t *p;
	struct zk_pool_config cfg = {.max_idle_per_key = 2, .idle_timeout_ns = 30 * ZK_NSEC_PER_MSEC};
	ZT_CHECK_EQ(zk_pool_create(&p, &cfg), 0);
	int fds[5];
	for (int i = 0; i < 5; i++) {
		fds[i] = zk_pool_get(p, s.addr);
		ZT_CHECK(fds[i] >= 0);
		ZT_CHECK(request(fds[i], 'e', (uint32_t)i));
	}
	ZT_CHECK_EQ(stats(p).connects, 5);
	for (int i = 0; i < 5; i++)
		ZT_CHECK_EQ(zk_pool_put(p, fds[i], true), 0);
	/* Two kept, three closed (the server sees their EOF). */
	ZT_CHECK_EQ(stats(p).idle, 2);
	ZT_CHECK(zt_task_wait_at_least(&s.closed, 3, 10000));
	/* The most recently returned is handed out first. */
	int fd = zk_pool_get(p, s.addr);
	ZT_CHECK_EQ(fd, fds[1]);
	ZT_CHECK_EQ(zk_pool_put(p, fd, true), 0);
	/* Past the idle timeout, nothing idle is reused. */
	zk_sleep_ms(60);
	ZT_CHECK_EQ(zk_pool_reap(p), 2);
	ZT_CHECK_EQ(stats(p).idle, 0);
	ZT_CHECK_EQ(stats(p).expired, 2);
	fd = zk_pool_get(p, s.addr);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_pool_put(p, fd, true), 0);
	zk_sleep_ms(60);
	/* Lazily, on get. */
	int fd2 = zk_pool_get(p, s.addr);
	ZT_CHECK(fd2 >= 0);
	ZT_CHECK(request(fd2, 'e', 9));
	ZT_CHECK_EQ(stats(p).expired, 3);
	ZT_CHECK_EQ(stats(p).connects, 7);
	ZT_CHECK_EQ(zk_pool_put(p, fd2, true), 0);
	ZT_CHECK_EQ(zk_pool_free(p), 0);
	server_stop(&s);
	return NULL;
}

Test(pool, idle_connections_are_capped_per_key_and_expire)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, idle_limits, NULL);
	zk_runtime_free(rt);
}

struct waiter {
	zk_pool_t *p;
	const char *addr;
	atomic_long fd;
	atomic_long done;
};

static void *get_and_record(void *arg)
{
	struct waiter *w = arg;
	atomic_store(&w->fd, zk_pool_get(w->p, w->addr));
	atomic_store(&w->done, 1);
	return NULL;
}

static bool wait_waiting(zk_pool_t *p, uint64_t n)
{
	for (int i = 0; i < 10000; i++) {
		if (stats(p).waiting == n)
			return true;
		zk_sleep_ms(1);
	}
	return false;
}

static void *total_limit(void *arg)
{
	(void)arg;
	struct server s1 = {0}, s2 = {0};
	server_start_tcp(&s1);
	server_start_tcp(&s2);
	zk_pool_t *p;
	struct zk_pool_config cfg = {.max_total = 2};
	ZT_CHECK_EQ(zk_pool_create(&p, &cfg), 0);
	int a = zk_pool_get(p, s1.addr), b = zk_pool_get(p, s1.addr);
	ZT_CHECK(a >= 0 && b >= 0);
	/* A third get waits for room... */
	struct waiter w = {.p = p, .addr = s2.addr, .fd = -1};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, get_and_record, &w), 0);
	ZT_CHECK(wait_waiting(p, 1));
	ZT_CHECK_EQ(atomic_load(&w.done), 0);
	/* ...and a put of a reusable connection for another address makes
	 * room by eviction. */
	ZT_CHECK_EQ(zk_pool_put(p, a, true), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	int c = (int)atomic_load(&w.fd);
	ZT_CHECK(c >= 0);
	ZT_CHECK(request(c, 'e', 3));
	ZT_CHECK_EQ(stats(p).evicted, 1);
	ZT_CHECK_EQ(stats(p).in_use, 2);
	/* A waiter for the same address gets the returned connection. */
	w.addr = s1.addr;
	atomic_store(&w.done, 0);
	ZT_CHECK_EQ(zk_spawn(&h, get_and_record, &w), 0);
	ZT_CHECK(wait_waiting(p, 1));
	ZT_CHECK_EQ(zk_pool_put(p, b, true), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&w.fd), b);
	ZT_CHECK_EQ(stats(p).reuses, 1);
	/* A waiting get is cancellable. */
	ZT_CHECK_EQ(zk_spawn(&h, get_and_record, &w), 0);
	ZT_CHECK(wait_waiting(p, 1));
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&w.fd), -ECANCELED);
	ZT_CHECK_EQ(stats(p).waiting, 0);
	/* Busy pools are not freed. */
	ZT_CHECK_EQ(zk_pool_free(p), -EBUSY);
	ZT_CHECK_EQ(zk_pool_put(p, b, true), 0);
	ZT_CHECK_EQ(zk_pool_put(p, c, true), 0);
	ZT_CHECK_EQ(zk_pool_free(p), 0);
	server_stop(&s1);
	server_stop(&s2);
	return NULL;
}

Test(pool, max_total_makes_gets_wait_evict_or_reuse)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, total_limit, NULL);
	zk_runtime_free(rt);
}

/* ---- errors ------------------------------------------------------------------------------------ */

static void *errors(void *arg)
{
	(void)arg;
	zk_pool_t *p;
	ZT_CHECK_EQ(zk_pool_create(&p, NULL), 0);
	int lfd = zk_tcp_listen("127.0.0.1", 0, 1);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", zk_socket_port(lfd));
	zk_close(lfd); /* nothing listens there now */
	ZT_CHECK_EQ(zk_pool_get(p, addr), -ECONNREFUSED);
	ZT_CHECK_EQ(stats(p).in_use, 0); /* the failed connect gave its slot back */
	ZT_CHECK_EQ(zk_pool_get(p, "not an address"), -EINVAL);
	ZT_CHECK_EQ(zk_pool_get(p, "127.0.0.1"), -EINVAL);
	ZT_CHECK_EQ(zk_pool_get(NULL, addr), -EINVAL);
	ZT_CHECK_EQ(zk_pool_get_addr(p, NULL, 0), -EINVAL);
	struct sockaddr other = {.sa_family = AF_APPLETALK};
	ZT_CHECK_EQ(zk_pool_get_addr(p, &other, sizeof(other)), -EAFNOSUPPORT);
	ZT_CHECK_EQ(zk_pool_put(p, 0, true), -EINVAL);
	ZT_CHECK_EQ(zk_pool_put(p, -1, true), -EINVAL);
	ZT_CHECK_EQ(zk_pool_put(NULL, 3, true), -EINVAL);
	ZT_CHECK_EQ(zk_pool_reap(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_pool_stats(p, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_pool_free(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_pool_free(p), 0);
	return NULL;
}

Test(pool, errors_are_reported_and_leave_no_slot_taken)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, errors, NULL);
	zk_runtime_free(rt);
	zk_pool_t *p;
	cr_assert_eq(zk_pool_create(NULL, NULL), -EINVAL);
	cr_assert_eq(zk_pool_create(&p, NULL), 0);
	cr_assert_eq(zk_pool_get(p, "127.0.0.1:1"), -EPERM);
	cr_assert_eq(zk_pool_free(p), 0);
}

/* ---- Unix sockets and many tasks ----------------------------------------------------------- */

struct shared {
	zk_pool_t *p;
	const char *addr;
	unsigned rounds;
	atomic_long ok;
};

static void *hammer(void *arg)
{
	struct shared *sh = arg;
	for (unsigned i = 0; i < sh->rounds; i++) {
		int fd = zk_pool_get(sh->p, sh->addr);
		ZT_CHECK(fd >= 0);
		if (fd < 0)
			return NULL;
		bool good = request(fd, 'e', i * 31 + (uint32_t)zk_task_id());
		ZT_CHECK(good);
		ZT_CHECK_EQ(zk_pool_put(sh->p, fd, good), 0);
		if (good)
			atomic_fetch_add(&sh->ok, 1);
	}
	return NULL;
}

static void *many_tasks(void *arg)
{
	const char *dir = arg;
	struct server s = {0};
	char path[ZK_ADDR_STRLEN - 8];
	snprintf(path, sizeof(path), "%s/pool.sock", dir);
	s.lfd = zk_unix_listen(path, 256);
	ZT_CHECK(s.lfd >= 0);
	snprintf(s.addr, sizeof(s.addr), "%s", path);
	ZT_CHECK_EQ(zk_spawn(&s.task, accept_loop, &s), 0);
	zk_pool_t *p;
	struct zk_pool_config cfg = {.max_total = 8, .max_idle_per_key = 8};
	ZT_CHECK_EQ(zk_pool_create(&p, &cfg), 0);
	enum { TASKS = 40 };
	struct shared sh = {.p = p, .addr = s.addr, .rounds = (unsigned)zt_scaled(50, 5)};
	zk_task_t *h[TASKS];
	for (int i = 0; i < TASKS; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], hammer, &sh), 0);
	for (int i = 0; i < TASKS; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	ZT_CHECK_EQ(atomic_load(&sh.ok), (long)(TASKS * sh.rounds));
	struct zk_pool_stats st = stats(p);
	ZT_CHECK(st.connects <= 8);
	ZT_CHECK(atomic_load(&s.accepted) <= 8);
	ZT_CHECK_EQ(st.connects + st.reuses, TASKS * sh.rounds);
	ZT_CHECK_EQ(st.in_use, 0);
	ZT_CHECK_EQ(st.waiting, 0);
	ZT_CHECK_EQ(zk_pool_free(p), 0);
	server_stop(&s);
	return NULL;
}

Test(pool, many_tasks_share_a_bounded_pool_over_a_unix_socket)
{
	zk_runtime_t *rt = zt_runtime(2);
	char *dir = zt_tmpdir();
	zt_run(rt, many_tasks, dir);
	zk_runtime_free(rt);
	zt_rmtree(dir);
}
