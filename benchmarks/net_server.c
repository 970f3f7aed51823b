/* benchmarks/net_server.c — Zokio's side of the network benchmarks
 * (zk-net-server): a TCP echo server and a minimal HTTP/1.1 "hello"
 * responder, one task per connection. benchmarks/tokio/src/net_server.rs and
 * benchmarks/go/server.go serve the same two protocols; zk-net-load (echo,
 * connection capacity) and wrk (HTTP) drive all three, and benchmarks/run
 * compares them.
 *
 *   zk-net-server --mode echo|http [--workers N] [--port P] [--sleeper] [--direct]
 *
 * Listens on 127.0.0.1:P (0 picks a free port), prints "port=<P>" on stdout
 * once it accepts, and serves until it is killed. The accept loop is a task
 * (run by zk_block_on on a worker, not on the main thread), as the Tokio
 * side spawns its accept loop onto the runtime. --sleeper adds one task
 * that sleeps for an hour: the idle benchmark's "a timer is pending" case.
 *
 * --direct (echo): the connection-capacity setup. Each worker runs its own
 * listener (SO_REUSEPORT on one port: the kernel spreads connections
 * evenly) and acceptor (pinned to it) that takes connections as io_uring direct
 * descriptors, kept in the worker's ring instead of the process's fd table
 * (whose 20 000 hard limit here would cap the server), and serves each in a
 * task pinned to that worker, receiving through a zk_stream (an idle
 * connection holds no receive buffer). Each ring holds RLIMIT_NOFILE
 * connections (at most 65 536; the soft limit is raised to the hard one
 * first): an acceptor whose ring is full pauses until one of its
 * connections closes, rather than accept a connection the kernel would
 * then drop (-ENFILE), and the other workers' acceptors take the rest. */
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zokio/zokio.h"

/* The same bytes as the Tokio responder sends. */
static const char RESPONSE[] = "HTTP/1.1 200 OK\r\n"
			       "Content-Type: text/plain\r\n"
			       "Content-Length: 13\r\n"
			       "\r\n"
			       "Hello, World!";
#define RESPONSE_LEN (sizeof(RESPONSE) - 1)

/* Read buffer per connection: on the task's stack, like Tokio's [u8; 4096]
 * in the connection future and Go's 4 KiB slice. */
#define BUF_SIZE 4096

static int listen_fd;
static zk_task_fn conn_handler;
static bool with_sleeper;
static zk_runtime_t *runtime;

static int send_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = zk_send(fd, p, len, 0);
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[BUF_SIZE];
	ssize_t n;
	while ((n = zk_recv(fd, buf, sizeof(buf), 0)) > 0)
		if (send_all(fd, buf, (size_t)n) < 0)
			break;
	zk_close(fd);
	return NULL;
}

/* Answers every complete request head (up to the blank line) with the fixed
 * response; keep-alive, so the loop ends only when the peer closes. Bodies
 * are not read: wrk sends GETs. Pipelined requests that arrive together are
 * answered with one send. */
static void *http_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char in[BUF_SIZE];
	char out[8 * RESPONSE_LEN];
	size_t fill = 0;
	for (;;) {
		ssize_t n = zk_recv(fd, in + fill, sizeof(in) - fill, 0);
		if (n <= 0)
			break;
		/* A terminator may straddle the previous read's end. */
		size_t scan = fill >= 3 ? fill - 3 : 0, start = 0, out_len = 0;
		fill += (size_t)n;
		const char *end;
		while ((end = memmem(in + scan, fill - scan, "\r\n\r\n", 4))) {
			start = scan = (size_t)(end - in) + 4;
			if (out_len + RESPONSE_LEN > sizeof(out)) {
				if (send_all(fd, out, out_len) < 0)
					goto done;
				out_len = 0;
			}
			memcpy(out + out_len, RESPONSE, RESPONSE_LEN);
			out_len += RESPONSE_LEN;
		}
		if (out_len && send_all(fd, out, out_len) < 0)
			break;
		memmove(in, in + start, fill - start);
		fill -= start;
		if (fill == sizeof(in))
			break; /* a request head larger than the buffer */
	}
done:
	zk_close(fd);
	return NULL;
}

static void *sleeper(void *arg)
{
	(void)arg;
	zk_sleep_ms(3600 * 1000);
	return NULL;
}

static void *acceptor(void *arg)
{
	(void)arg;
	if (with_sleeper && zk_spawn(NULL, sleeper, NULL) < 0)
		abort();
	for (;;) {
		int fd = zk_accept(listen_fd, NULL, NULL);
		if (fd == -ECANCELED)
			break;
		if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
			/* Out of descriptors (the capacity benchmark gets
			 * here): back off instead of spinning on the error. */
			zk_sleep_ms(10);
			continue;
		}
		if (fd < 0)
			continue; /* e.g. -ECONNABORTED: that peer gave up */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (zk_spawn(NULL, conn_handler, (void *)(intptr_t)fd) < 0)
			close(fd);
	}
	return NULL;
}

/* ---- --direct ---------------------------------------------------------------------- */

/* Per worker: connections open in its ring (touched by that worker only:
 * the acceptor and the connections are pinned there), and the ring's
 * table size. */
static unsigned live[256];
static unsigned ring_slots;

static void *echo_stream_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	zk_stream_t *s;
	if (zk_stream_open(&s, fd) == 0) {
		for (;;) {
			zk_rbuf_t rb;
			ssize_t n = zk_stream_recv(s, &rb);
			if (n <= 0)
				break;
			ssize_t w = zk_send_all(fd, rb.data, rb.len);
			zk_rbuf_release(&rb);
			if (w < 0)
				break;
		}
		zk_stream_close(s);
	}
	zk_close(fd);
	if (zk_fd_worker(fd) >= 0)
		live[zk_fd_worker(fd)]--;
	return NULL;
}

static void *direct_acceptor(void *arg)
{
	(void)arg;
	int me = zk_worker_index();
	int lfd = listen_fd;
	if (me > 0) {
		lfd = zk_tcp_listen_flags("127.0.0.1", (uint16_t)zk_socket_port(listen_fd), SOMAXCONN,
					  ZK_TCP_REUSEPORT);
		if (lfd < 0)
			abort();
	}
	zk_acceptor_t *a;
	if (zk_acceptor_open_flags(&a, lfd, ZK_ACCEPT_DIRECT) < 0)
		abort();
	bool told = false;
	for (;;) {
		if (live[me] >= ring_slots) {
			/* Full: a benchmark server may poll (a sleeping task). */
			zk_sleep_ms(10);
			continue;
		}
		int fd = zk_acceptor_next(a);
		if (fd == -ECANCELED)
			break;
		if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
			if (!told)
				fprintf(stderr, "zk-net-server: worker %d: %s\n", zk_worker_index(),
					strerror(-fd));
			told = true;
			zk_sleep_ms(10);
			continue;
		}
		if (fd < 0)
			continue;
		int owner = zk_fd_worker(fd);
		if (owner >= 0)
			live[owner]++;
		int r = owner >= 0 ? zk_spawn_pinned(runtime, NULL, echo_stream_conn,
						     (void *)(intptr_t)fd, (unsigned)owner)
				   : zk_spawn(NULL, echo_stream_conn, (void *)(intptr_t)fd);
		if (r < 0)
			zk_close(fd);
	}
	zk_acceptor_close(a);
	if (lfd != listen_fd)
		zk_close(lfd);
	return NULL;
}

static void *direct_main(void *arg)
{
	(void)arg;
	unsigned n = zk_runtime_workers(runtime);
	zk_task_t **h = calloc(n, sizeof(*h));
	if (!h)
		abort();
	for (unsigned i = 0; i < n; i++)
		if (zk_spawn_pinned(runtime, &h[i], direct_acceptor, NULL, i) < 0)
			abort();
	for (unsigned i = 0; i < n; i++)
		zk_join(h[i], NULL);
	free(h);
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: zk-net-server --mode echo|http [--workers N] [--port P] [--sleeper] "
		   "[--direct]\n");
}

int main(int argc, char **argv)
{
	const char *mode = "echo";
	unsigned workers = 1;
	long port = 0;
	bool direct = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--mode") == 0 && v) {
			mode = v, i++;
		} else if (strcmp(a, "--workers") == 0 && v) {
			workers = (unsigned)strtoul(v, NULL, 10), i++;
		} else if (strcmp(a, "--port") == 0 && v) {
			port = strtol(v, NULL, 10), i++;
		} else if (strcmp(a, "--sleeper") == 0) {
			with_sleeper = true;
		} else if (strcmp(a, "--direct") == 0) {
			direct = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (strcmp(mode, "echo") == 0)
		conn_handler = echo_conn;
	else if (strcmp(mode, "http") == 0)
		conn_handler = http_conn;
	else {
		usage(stderr);
		return 2;
	}
	if (workers < 1 || port < 0 || port > 65535 || (direct && conn_handler != echo_conn)) {
		usage(stderr);
		return 2;
	}
	if (direct) {
		/* Each ring's table gets RLIMIT_NOFILE (soft) slots. */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		ring_slots = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
				     ? (unsigned)rl.rlim_cur
				     : 65536;
		if (workers > 256) {
			usage(stderr);
			return 2;
		}
	}

	listen_fd = zk_tcp_listen_flags("127.0.0.1", (uint16_t)port, SOMAXCONN,
					direct ? ZK_TCP_REUSEPORT : 0);
	if (listen_fd < 0) {
		fprintf(stderr, "zk-net-server: listen: %s\n", strerror(-listen_fd));
		return 1;
	}
	zk_config_t cfg = {.workers = workers};
	zk_runtime_t *rt;
	int r = zk_runtime_create(&rt, &cfg);
	if (r < 0) {
		fprintf(stderr, "zk-net-server: runtime: %s\n", strerror(-r));
		return 1;
	}
	runtime = rt;
	printf("port=%d\n", zk_socket_port(listen_fd));
	fflush(stdout);
	r = zk_block_on(rt, direct ? direct_main : acceptor, NULL, NULL);
	zk_runtime_free(rt);
	return r < 0 ? 1 : 0;
}
