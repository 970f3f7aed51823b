/* tests/test_net_direct.c — direct descriptors and pinned tasks: an
 * acceptor with ZK_ACCEPT_DIRECT hands out sockets kept in a worker's ring
 * (io_uring) or, elsewhere, ordinary fds; echo through them with pinned
 * and unpinned tasks (which hop to the owning worker), streams on them,
 * the ring's table running full (-ENFILE) and recovering; pinned tasks
 * stay on their worker under stealing pressure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(net_direct, .timeout = 120);

/* Direct descriptors exist on io_uring (also wrapped by the fault
 * injection backend, which forwards them; epoll has none). */
static bool expect_direct(zk_runtime_t *rt)
{
	(void)rt;
	return zt_backend_is_uring() && zt_uring_feature("direct");
}

static int connect_to(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ZT_CHECK(fd >= 0);
	struct sockaddr_storage ss;
	socklen_t len;
	ZT_CHECK_EQ(zk_addr_ip("127.0.0.1", port, &ss, &len), 0);
	int r = zk_connect(fd, (struct sockaddr *)&ss, len);
	ZT_CHECK_EQ(r, 0);
	return fd;
}

/* ---- echo through direct descriptors -------------------------------------------------------- */

struct echo_srv {
	zk_runtime_t *rt;
	int lfd;
	unsigned conns;
	bool pinned;       /* serve each connection pinned to its worker */
	bool stream;       /* receive with zk_stream instead of zk_recv */
	bool direct;       /* expect direct descriptors */
	atomic_long served;
	atomic_long direct_seen;
	atomic_long moved; /* unpinned: ran on the owner after an op */
};

struct conn_arg {
	struct echo_srv *srv;
	int fd;
};

static void *serve_conn(void *arg)
{
	struct conn_arg *c = arg;
	struct echo_srv *srv = c->srv;
	int fd = c->fd;
	free(c);
	int owner = zk_fd_worker(fd);
	char buf[512];
	if (srv->stream) {
		zk_stream_t *s;
		ZT_CHECK_EQ(zk_stream_open(&s, fd), 0);
		for (;;) {
			zk_rbuf_t rb;
			ssize_t n = zk_stream_recv(s, &rb);
			ZT_CHECK(n >= 0);
			if (n <= 0)
				break;
			ZT_CHECK_EQ(zk_send_all(fd, rb.data, rb.len), rb.len);
			zk_rbuf_release(&rb);
		}
		ZT_CHECK_EQ(zk_stream_close(s), 0);
	} else {
		for (;;) {
			ssize_t n = zk_recv(fd, buf, sizeof(buf), 0);
			ZT_CHECK(n >= 0);
			if (n <= 0)
				break;
			if (owner >= 0 && zk_worker_index() == owner)
				atomic_fetch_add(&srv->moved, 1);
			ZT_CHECK_EQ(zk_send_all(fd, buf, (size_t)n), n);
		}
	}
	if (owner >= 0 && srv->pinned)
		ZT_CHECK_EQ(zk_worker_index(), owner);
	ZT_CHECK_EQ(zk_close(fd), 0);
	atomic_fetch_add(&srv->served, 1);
	return NULL;
}

static void *accept_loop(void *arg)
{
	struct echo_srv *srv = arg;
	zk_acceptor_t *a;
	ZT_CHECK_EQ(zk_acceptor_open_flags(&a, srv->lfd, ZK_ACCEPT_DIRECT), 0);
	for (unsigned i = 0; i < srv->conns; i++) {
		int fd = zk_acceptor_next(a);
		ZT_CHECK(fd >= 0);
		if (fd < 0)
			break;
		int owner = zk_fd_worker(fd);
		if (srv->direct) {
			ZT_CHECK(fd >= ZK_FD_DIRECT);
			ZT_CHECK(owner >= 0 && (unsigned)owner < zk_runtime_workers(srv->rt));
			/* No fd of the process: a plain syscall refuses it. */
			ZT_CHECK_EQ(zk_tcp_nodelay(fd, true), -EBADF);
			atomic_fetch_add(&srv->direct_seen, 1);
		} else {
			ZT_CHECK_EQ(owner, -ENOENT);
		}
		struct conn_arg *c = malloc(sizeof(*c));
		c->srv = srv;
		c->fd = fd;
		if (srv->pinned && owner >= 0)
			ZT_CHECK_EQ(zk_spawn_pinned(srv->rt, NULL, serve_conn, c, (unsigned)owner), 0);
		else
			ZT_CHECK_EQ(zk_spawn(NULL, serve_conn, c), 0);
	}
	ZT_CHECK_EQ(zk_acceptor_close(a), 0);
	return NULL;
}

static void *echo_client(void *arg)
{
	struct echo_srv *srv = arg;
	int fd = connect_to((uint16_t)zk_socket_port(srv->lfd));
	unsigned seed = (unsigned)zk_task_id();
	char out[3000], in[3000];
	zt_fill(out, sizeof(out), seed);
	for (int round = 0; round < 3; round++) {
		ZT_CHECK_EQ(zk_send_all(fd, out, sizeof(out)), sizeof(out));
		ZT_CHECK_EQ(zk_recv_exact(fd, in, sizeof(in)), sizeof(in));
		ZT_CHECK(memcmp(in, out, sizeof(in)) == 0);
	}
	ZT_CHECK_EQ(zk_shutdown(fd, SHUT_WR), 0);
	ZT_CHECK_EQ(zk_recv(fd, in, 1, 0), 0);
	zk_close(fd);
	return NULL;
}

static void *echo_main(void *arg)
{
	struct echo_srv *srv = arg;
	srv->lfd = zk_tcp_listen("127.0.0.1", 0, 512);
	ZT_CHECK(srv->lfd >= 0);
	zk_task_t *acc;
	ZT_CHECK_EQ(zk_spawn(&acc, accept_loop, srv), 0);
	zk_task_t **cl = calloc(srv->conns, sizeof(*cl));
	for (unsigned i = 0; i < srv->conns; i++)
		ZT_CHECK_EQ(zk_spawn(&cl[i], echo_client, srv), 0);
	for (unsigned i = 0; i < srv->conns; i++)
		ZT_CHECK_EQ(zk_join(cl[i], NULL), 0);
	ZT_CHECK_EQ(zk_join(acc, NULL), 0);
	ZT_CHECK(zt_task_wait_at_least(&srv->served, (long)srv->conns, 10000));
	free(cl);
	zk_close(srv->lfd);
	return NULL;
}

static void run_echo(bool pinned, bool stream)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct echo_srv srv = {.rt = rt, .conns = (unsigned)zt_scaled(200, 20), .pinned = pinned,
			       .stream = stream, .direct = expect_direct(rt)};
	zt_run(rt, echo_main, &srv);
	cr_assert_eq(atomic_load(&srv.served), (long)srv.conns);
	if (srv.direct)
		cr_assert_eq(atomic_load(&srv.direct_seen), (long)srv.conns);
	if (srv.direct && !pinned && !stream)
		cr_assert_gt(atomic_load(&srv.moved), 0);
	zk_runtime_free(rt);
}

Test(net_direct, echo_pinned_recv_send)
{
	run_echo(true, false);
}

Test(net_direct, echo_unpinned_tasks_hop_to_the_owner)
{
	run_echo(false, false);
}

Test(net_direct, echo_pinned_streams)
{
	run_echo(true, true);
}

Test(net_direct, echo_unpinned_streams)
{
	run_echo(false, true);
}

/* ---- a full table --------------------------------------------------------------------------- */

#define TABLE 40

struct full {
	zk_runtime_t *rt;
	int lfd;
	bool direct;
	atomic_long armed;  /* the first connection is in: the table exists */
	atomic_long raised; /* the client raised RLIMIT_NOFILE again */
	int held[TABLE * 2];
	unsigned nheld;
	int enfile;
};

static void *full_server(void *arg)
{
	struct full *f = arg;
	zk_acceptor_t *a;
	ZT_CHECK_EQ(zk_acceptor_open_flags(&a, f->lfd, ZK_ACCEPT_DIRECT), 0);
	int fd = zk_acceptor_next(a);
	ZT_CHECK(fd >= 0);
	f->held[f->nheld++] = fd;
	atomic_store(&f->armed, 1);
	ZT_CHECK(zt_task_wait_at_least(&f->raised, 1, 10000));
	/* TABLE + 5 more connections arrive; the table holds TABLE. */
	while (f->nheld < TABLE) {
		fd = zk_acceptor_next(a);
		ZT_CHECK(fd >= 0);
		if (fd < 0)
			break;
		f->held[f->nheld++] = fd;
	}
	if (f->direct) {
		f->enfile = zk_acceptor_next(a);
		ZT_CHECK_EQ(f->enfile, -ENFILE);
		/* Free ten slots: the next connections fit again (the ones
		 * left in the backlog, then five new ones sending 'y'). */
		for (int i = 0; i < 10; i++)
			ZT_CHECK_EQ(zk_close(f->held[--f->nheld]), 0);
		atomic_store(&f->raised, 2);
		int ys = 0;
		while (ys < 5 && f->nheld < TABLE) {
			fd = zk_acceptor_next(a);
			ZT_CHECK(fd >= ZK_FD_DIRECT);
			if (fd < 0)
				break;
			/* The slot works: echo one byte. */
			char b;
			ZT_CHECK_EQ(zk_recv(fd, &b, 1, 0), 1);
			ZT_CHECK_EQ(zk_send(fd, &b, 1, 0), 1);
			ys += b == 'y';
			f->held[f->nheld++] = fd;
		}
		ZT_CHECK_EQ(ys, 5);
	}
	ZT_CHECK_EQ(zk_acceptor_close(a), 0);
	for (unsigned i = 0; i < f->nheld; i++)
		ZT_CHECK_EQ(zk_close(f->held[i]), 0);
	return NULL;
}

static void *full_main(void *arg)
{
	struct full *f = arg;
	/* Every task on worker 0: the acceptor arms there, and its table
	 * is sized while the limit is low. */
	ZT_CHECK_EQ(zk_task_pin(), 0);
	struct rlimit old, low;
	ZT_CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	f->lfd = zk_tcp_listen("127.0.0.1", 0, 512);
	ZT_CHECK(f->lfd >= 0);
	uint16_t port = (uint16_t)zk_socket_port(f->lfd);
	low = old;
	low.rlim_cur = TABLE;
	/* (Ordinary fds, where there is no table, need the normal limit.) */
	if (f->direct)
		ZT_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
	zk_task_t *srv;
	ZT_CHECK_EQ(zk_spawn_pinned(f->rt, &srv, full_server, f, 0), 0);
	int first = connect_to(port);
	ZT_CHECK(zt_task_wait_at_least(&f->armed, 1, 10000));
	ZT_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
	atomic_store(&f->raised, 1);
	int cl[TABLE + 5];
	for (int i = 0; i < TABLE + 4; i++) {
		cl[i] = connect_to(port);
		/* (One of these the full table drops: a send may fail.) */
		zk_send(cl[i], "x", 1, MSG_DONTWAIT);
	}
	if (f->direct) {
		ZT_CHECK(zt_task_wait_at_least(&f->raised, 2, 10000));
		for (int i = 0; i < 5; i++) {
			int fd = connect_to(port);
			/* Connections the full table refused were closed by the
			 * kernel; these are served. */
			char b = 'y';
			ZT_CHECK_EQ(zk_send(fd, &b, 1, 0), 1);
			ZT_CHECK_EQ(zk_recv(fd, &b, 1, 0), 1);
			ZT_CHECK_EQ(b, 'y');
			zk_close(fd);
		}
	}
	ZT_CHECK_EQ(zk_join(srv, NULL), 0);
	for (int i = 0; i < TABLE + 4; i++)
		zk_close(cl[i]);
	zk_close(first);
	zk_close(f->lfd);
	return NULL;
}

Test(net_direct, full_table_gives_enfile_then_recovers)
{
	zk_runtime_t *rt = zt_runtime(1);
	struct full f = {.rt = rt, .direct = expect_direct(rt)};
	zt_run(rt, full_main, &f);
	zk_runtime_free(rt);
}

/* ---- descriptors that name nothing ---------------------------------------------------------- */

static void *bad_fds(void *arg)
{
	(void)arg;
	char b;
	/* A worker index the runtime does not have. */
	ZT_CHECK_EQ(zk_recv(ZK_FD_DIRECT | (200 << 20) | 3, &b, 1, 0), -EBADF);
	/* A slot of a worker whose ring has no table (or on epoll). */
	ZT_CHECK_EQ(zk_send(ZK_FD_DIRECT | 5, &b, 1, 0), -EBADF);
	ZT_CHECK_EQ(zk_close(ZK_FD_DIRECT | 7), -EBADF);
	ZT_CHECK_EQ(zk_fd_worker(-1), -EBADF);
	ZT_CHECK_EQ(zk_fd_worker(3), -ENOENT);
	ZT_CHECK_EQ(zk_fd_worker(ZK_FD_DIRECT | (300 << 20)), -EBADF);
	ZT_CHECK_EQ(zk_fd_worker(ZK_FD_DIRECT | (1 << 20) | 9), 1);
	zk_acceptor_t *a;
	ZT_CHECK_EQ(zk_acceptor_open_flags(&a, 3, 4), -EINVAL);
	return NULL;
}

Test(net_direct, descriptors_naming_nothing_are_ebadf)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, bad_fds, NULL);
	zk_runtime_free(rt);
}

/* ---- pinned tasks ------------------------------------------------------------------------------ */

struct pinned {
	zk_runtime_t *rt;
	atomic_long wrong;
	atomic_long done;
};

struct pin_arg {
	struct pinned *p;
	unsigned worker;
};

static void *pinned_task(void *arg)
{
	struct pin_arg *pa = arg;
	for (int i = 0; i < 200; i++) {
		if (zk_worker_index() != (int)pa->worker)
			atomic_fetch_add(&pa->p->wrong, 1);
		if (i % 3 == 0)
			zk_sleep_ms(0);
		else
			zk_yield();
	}
	atomic_fetch_add(&pa->p->done, 1);
	return NULL;
}

static void *busy_task(void *arg)
{
	(void)arg;
	for (int i = 0; i < 200; i++)
		zk_yield();
	return NULL;
}

static void *pinned_main(void *arg)
{
	struct pinned *p = arg;
	unsigned nw = zk_runtime_workers(p->rt);
	ZT_CHECK_EQ(zk_spawn_pinned(p->rt, NULL, busy_task, NULL, nw), -EINVAL);
	struct pin_arg pa[16];
	zk_task_t *h[16], *busy[64];
	/* Busy unpinned tasks keep every queue full, so idle workers steal. */
	for (int i = 0; i < 64; i++)
		ZT_CHECK_EQ(zk_spawn(&busy[i], busy_task, NULL), 0);
	for (unsigned i = 0; i < 16; i++) {
		pa[i].p = p;
		pa[i].worker = i % nw;
		ZT_CHECK_EQ(zk_spawn_pinned(p->rt, &h[i], pinned_task, &pa[i], pa[i].worker), 0);
	}
	/* Pin ourselves: we stay where we are across suspensions. */
	int me = zk_task_pin();
	ZT_CHECK(me >= 0);
	for (int i = 0; i < 50; i++) {
		zk_yield();
		ZT_CHECK_EQ(zk_worker_index(), me);
	}
	ZT_CHECK_EQ(zk_task_unpin(), 0);
	for (int i = 0; i < 16; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	for (int i = 0; i < 64; i++)
		ZT_CHECK_EQ(zk_join(busy[i], NULL), 0);
	return NULL;
}

Test(net_direct, pinned_tasks_stay_on_their_worker)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct pinned p = {.rt = rt};
	zt_run(rt, pinned_main, &p);
	cr_assert_eq(atomic_load(&p.wrong), 0);
	cr_assert_eq(atomic_load(&p.done), 16);
	/* Spawned from outside the runtime, woken from outside. */
	struct pin_arg pa[4];
	zk_task_t *h[4];
	for (unsigned i = 0; i < 4; i++) {
		pa[i].p = &p;
		pa[i].worker = i % 2;
		cr_assert_eq(zk_spawn_pinned(rt, &h[i], pinned_task, &pa[i], pa[i].worker), 0);
	}
	cr_assert(zt_wait_at_least(&p.done, 20, 10000));
	for (int i = 0; i < 4; i++)
		zk_detach(h[i]);
	cr_assert_eq(atomic_load(&p.wrong), 0);
	cr_assert_eq(zk_task_pin(), -EPERM);
	cr_assert_eq(zk_task_unpin(), -EPERM);
	zk_runtime_free(rt);
}
