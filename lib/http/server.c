/* lib/http/server.c — the HTTP server: listening socket, accept loop,
 * connection list, limits on open connections, graceful stop.
 *
 * zk_http_server_run() spawns the accept task and waits for it. The accept
 * task takes one permit of the `slots` semaphore per connection before it
 * accepts (so at max_connections further clients wait in the kernel's
 * backlog, untouched, instead of being accepted and dropped), then spawns
 * one detached task per connection (conn.c).
 *
 * Graceful stop, from any thread: set `stopping`, cancel the accept task,
 * and wake every idle connection by shutting down the read side of its
 * socket (its pending recv returns 0). A connection marks itself idle
 * before it checks `stopping` and the stopper sets `stopping` before it
 * looks at the marks (both sequentially consistent), so either the
 * connection sees the stop or the stopper sees the connection idle. A
 * busy connection answers its request with Connection: close and ends.
 * A connection leaves the list before it closes its fd, and shutdown runs
 * under the list lock, so the stopper never touches a reused fd number.
 *
 * Read timeouts: one sweep task per server walks the connection list every
 * sweep_ns (a quarter of the shortest read timeout, at most 1 s) and shuts
 * the read side of each connection whose published deadline has passed
 * (conn.c), under the list lock like the stopper. A per-recv linked
 * timeout would be exact; the sweep costs nothing per request and lets a
 * timeout run up to one period late. With no connection the sweep waits
 * on sweep_wake instead of ticking, so an idle server makes no wake-ups;
 * it ends once the server is stopping and its last connection is gone.
 *
 * Lifetime: the server is reference counted (its owner, the accept task,
 * each connection), so a run that is cancelled, or a runtime shut down
 * under it, never leaves a connection with a freed server. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/select.h"
#include "zokio/time.h"

#define DEF_BACKLOG 1024
#define DEF_MAX_CONNS 16384u
#define DEF_HEAD_TIMEOUT (10 * ZK_NSEC_PER_SEC)
#define DEF_IDLE_TIMEOUT (10 * ZK_NSEC_PER_SEC)
#define DEF_IO_TIMEOUT (30 * ZK_NSEC_PER_SEC)
#define DEF_MAX_BODY (1u << 20)

static void server_free(zk_http_server_t *srv)
{
	if (srv->own_lfd && srv->lfd >= 0)
		close(srv->lfd);
	zk_sem_destroy(&srv->slots);
	zk_notify_destroy(&srv->drained);
	zk_notify_destroy(&srv->sweep_wake);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

void zk__http_server_unref(zk_http_server_t *srv)
{
	if (atomic_fetch_sub(&srv->refs, 1) == 1)
		server_free(srv);
}

int zk_http_server_create(zk_http_server_t **out, const zk_http_server_config_t *cfg)
{
	if (!out || !cfg || !cfg->handler)
		return -EINVAL;
	zk_http_server_t *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->cfg = *cfg;
	zk_http_server_config_t *c = &srv->cfg;
	if (!c->backlog)
		c->backlog = DEF_BACKLOG;
	if (!c->max_connections)
		c->max_connections = DEF_MAX_CONNS;
	if (!c->head_timeout_ns)
		c->head_timeout_ns = DEF_HEAD_TIMEOUT;
	if (!c->idle_timeout_ns)
		c->idle_timeout_ns = DEF_IDLE_TIMEOUT;
	if (!c->io_timeout_ns)
		c->io_timeout_ns = DEF_IO_TIMEOUT;
	if (!c->max_body)
		c->max_body = DEF_MAX_BODY;
	if (!c->limits.max_request_line)
		c->limits.max_request_line = 8192;
	if (!c->limits.max_head)
		c->limits.max_head = 16384;
	if (!c->server_name)
		c->server_name = "zokio";
	if (strlen(c->server_name) > 256 || strpbrk(c->server_name, "\r\n")) {
		free(srv);
		return -EINVAL;
	}
	c->host = NULL; /* not kept: the caller's string */
	atomic_init(&srv->refs, 1);
	pthread_mutex_init(&srv->lock, NULL);
	zk_sem_init(&srv->slots, c->max_connections);
	zk_notify_init(&srv->drained);
	zk_notify_init(&srv->sweep_wake);
	uint64_t shortest = c->head_timeout_ns < c->idle_timeout_ns ? c->head_timeout_ns
								    : c->idle_timeout_ns;
	srv->sweep_ns = shortest / 4;
	if (srv->sweep_ns > ZK__HTTP_SWEEP_MAX)
		srv->sweep_ns = ZK__HTTP_SWEEP_MAX;
	if (srv->sweep_ns < ZK__HTTP_SWEEP_MIN)
		srv->sweep_ns = ZK__HTTP_SWEEP_MIN;
	if (cfg->listen_fd > 0) {
		srv->lfd = cfg->listen_fd;
	} else {
		int fd = zk_tcp_listen(cfg->host, cfg->port, c->backlog);
		if (fd < 0) {
			srv->lfd = -1;
			server_free(srv);
			return fd;
		}
		srv->lfd = fd;
		srv->own_lfd = true;
	}
	*out = srv;
	return 0;
}

int zk_http_server_port(const zk_http_server_t *srv)
{
	return srv ? zk_socket_port(srv->lfd) : -EINVAL;
}

unsigned zk_http_server_connections(const zk_http_server_t *srv)
{
	return srv ? atomic_load(&((zk_http_server_t *)srv)->active) : 0;
}

/* Ends the recv of every connection whose read deadline has passed. Under
 * srv->lock: a connection unlinks itself before it closes its fd. */
static void sweep_expired(zk_http_server_t *srv)
{
	uint64_t now = zk__http_coarse_now();
	for (zk_http_conn_t *c = srv->conns; c; c = c->next) {
		uint64_t d = atomic_load_explicit(&c->deadline, memory_order_relaxed);
		if (d == 0 || d == ZK__HTTP_EXPIRED || d > now)
			continue;
		if (atomic_compare_exchange_strong_explicit(&c->deadline, &d, ZK__HTTP_EXPIRED,
							    memory_order_relaxed,
							    memory_order_relaxed))
			shutdown(c->fd, SHUT_RD);
	}
}

static void *sweep_main(void *arg)
{
	zk_http_server_t *srv = arg;
	atomic_store(&srv->sweep_started, true);
	for (;;) {
		if (atomic_load(&srv->stopping) && atomic_load(&srv->active) == 0)
			break;
		pthread_mutex_lock(&srv->lock);
		bool empty = srv->conns == NULL;
		if (!empty)
			sweep_expired(srv);
		pthread_mutex_unlock(&srv->lock);
		/* Empty: the acceptor's next connection (or a stop, or the
		 * last connection leaving after a stop) wakes us; a permit
		 * stored meanwhile is not lost. */
		int r = empty ? zk_notify_wait(&srv->sweep_wake) : zk_sleep_ns(srv->sweep_ns);
		if (r == -ECANCELED)
			break;
	}
	zk__http_server_unref(srv);
	return NULL;
}

static void *accept_main(void *arg)
{
	zk_http_server_t *srv = arg;
	intptr_t err = 0;
	atomic_store(&srv->acc_started, true);
	while (!atomic_load(&srv->stopping)) {
		int r = zk_sem_acquire(&srv->slots, 1);
		if (r < 0)
			break;
		int fd = zk_accept(srv->lfd, NULL, NULL);
		if (fd < 0) {
			zk_sem_release(&srv->slots, 1);
			if (fd == -ECANCELED)
				break;
			if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
				/* Out of fds or memory: let connections finish. */
				zk_sleep_ms(10);
				continue;
			}
			if (fd == -ECONNABORTED || fd == -EINTR || fd == -EAGAIN || fd == -EPROTO)
				continue;
			err = fd;
			break;
		}
		/* Responses leave whole, one send per burst: Nagle would only
		 * hold back the tail of a large one (ignored on non-TCP). */
		(void)zk_tcp_nodelay(fd, true);
		zk_http_conn_t *c = calloc(1, sizeof(*c));
		if (c) {
			c->srv = srv;
			c->fd = fd;
			atomic_fetch_add(&srv->refs, 1);
			atomic_fetch_add(&srv->active, 1);
			pthread_mutex_lock(&srv->lock);
			bool first = srv->conns == NULL;
			c->next = srv->conns;
			if (srv->conns)
				srv->conns->prev = c;
			srv->conns = c;
			pthread_mutex_unlock(&srv->lock);
			if (first)
				zk_notify_one(&srv->sweep_wake); /* first one: sweep again */
			if (zk_spawn(NULL, zk__http_conn_main, c) == 0)
				continue;
			pthread_mutex_lock(&srv->lock);
			if (c->prev)
				c->prev->next = c->next;
			else
				srv->conns = c->next;
			if (c->next)
				c->next->prev = c->prev;
			pthread_mutex_unlock(&srv->lock);
			atomic_fetch_sub(&srv->active, 1);
			atomic_fetch_sub(&srv->refs, 1); /* the owner's ref remains */
			free(c);
		}
		zk_close(fd);
		zk_sem_release(&srv->slots, 1);
	}
	zk__http_server_unref(srv); /* the reference run() took for us */
	return (void *)err;
}

int zk_http_server_stop(zk_http_server_t *srv)
{
	if (!srv)
		return -EINVAL;
	atomic_store(&srv->stopping, true);
	pthread_mutex_lock(&srv->lock);
	if (srv->acceptor)
		zk_cancel(srv->acceptor);
	for (zk_http_conn_t *c = srv->conns; c; c = c->next)
		if (atomic_load(&c->idle))
			shutdown(c->fd, SHUT_RD);
	pthread_mutex_unlock(&srv->lock);
	zk_notify_one(&srv->sweep_wake); /* it may end now */
	return 0;
}

int zk_http_server_run(zk_http_server_t *srv)
{
	if (!srv || atomic_exchange(&srv->ran, true))
		return -EINVAL;
	zk_task_t *acc, *sweep;
	atomic_fetch_add(&srv->refs, 1);
	int r = zk_spawn(&sweep, sweep_main, srv);
	if (r < 0) {
		atomic_fetch_sub(&srv->refs, 1);
		return r;
	}
	atomic_fetch_add(&srv->refs, 1);
	r = zk_spawn(&acc, accept_main, srv);
	if (r < 0) {
		atomic_fetch_sub(&srv->refs, 1);
		atomic_store(&srv->stopping, true);
		zk_notify_one(&srv->sweep_wake);
		if (zk_join(sweep, NULL) == -ECANCELED && !atomic_load(&srv->sweep_started))
			zk__http_server_unref(srv);
		return r;
	}
	srv->sweeper = sweep;
	pthread_mutex_lock(&srv->lock);
	srv->acceptor = acc;
	bool stop = atomic_load(&srv->stopping);
	pthread_mutex_unlock(&srv->lock);
	if (stop)
		zk_cancel(acc);
	void *res = NULL;
	int jr = zk_join(acc, &res);
	pthread_mutex_lock(&srv->lock);
	srv->acceptor = NULL;
	pthread_mutex_unlock(&srv->lock);
	/* From here on nothing accepts (or, if we were cancelled, the
	 * acceptor is cancelled too and ends on its own): tell every
	 * connection. */
	zk_http_server_stop(srv);
	if (!atomic_load(&srv->acc_started))
		zk__http_server_unref(srv); /* its reference, which it never dropped */
	/* The acceptor we cancelled because a stop came first: a normal stop.
	 * -ECANCELED is for a caller that was itself cancelled. */
	if (jr == -ECANCELED && !zk_cancelled())
		jr = 0;
	if (jr < 0) {
		/* Stopping: the sweep ends with the last connection. */
		zk_detach(srv->sweeper);
		return jr;
	}
	if (srv->own_lfd) {
		/* Clients still in the backlog get a reset now rather than a
		 * hang until the server is freed. */
		int fd = srv->lfd;
		srv->lfd = -1;
		zk_close(fd);
	}
	while (atomic_load(&srv->active) > 0) {
		int w = zk_notify_wait(&srv->drained);
		if (w < 0) {
			zk_detach(srv->sweeper);
			return w;
		}
	}
	/* Stopping with no connection left: the sweep ends on its own. */
	if (zk_join(srv->sweeper, NULL) == -ECANCELED && !atomic_load(&srv->sweep_started))
		zk__http_server_unref(srv); /* cancelled before it ran */
	srv->sweeper = NULL;
	return (int)(intptr_t)res;
}

void zk_http_server_free(zk_http_server_t *srv)
{
	if (srv)
		zk__http_server_unref(srv);
}
