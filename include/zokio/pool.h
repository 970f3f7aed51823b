/* zokio/pool.h — a client-side connection pool keyed by address.
 *
 * zk_pool_get() hands out a connected stream socket (TCP, or Unix stream)
 * to the given address: an idle one kept from earlier if it is still
 * healthy, else a new one. zk_pool_put() gives it back, to be kept idle for
 * the next caller or closed. A connection checked out is the caller's
 * alone until it is put back.
 *
 * Health check on checkout: an idle connection whose peer closed or reset
 * it while it sat in the pool (or that has unread bytes, which no request
 * asked for) is closed and never handed out; the next idle one is tried,
 * then a new connection. The check is one non-blocking MSG_PEEK: it catches
 * a peer that is gone, not one that is merely unreachable (use
 * zk_tcp_keepalive for that).
 *
 * Limits: max_idle_per_key idle connections per address (the most recently
 * returned are kept: they are the warmest), an idle timeout after which an
 * idle connection is closed rather than reused, and max_total open
 * connections (idle + checked out) over all addresses. At max_total, a get
 * first closes an idle connection of another address to make room, and
 * otherwise waits (FIFO, cancellable) until a connection is put back.
 *
 * Every call is thread-safe and may be made from any task on any worker;
 * only zk_pool_get suspends. Addresses are kept in a list: the pool is
 * meant for a moderate number of distinct peers (tens to hundreds). */
#ifndef ZOKIO_POOL_H
#define ZOKIO_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zk_pool zk_pool_t;

struct zk_pool_config {
	unsigned max_idle_per_key;   /* idle connections kept per address (0: 8) */
	unsigned max_total;          /* open connections over all addresses (0: 256) */
	uint64_t idle_timeout_ns;    /* idle longer than this: closed, not reused
	                              * (0: 90 s) */
	uint64_t connect_timeout_ns; /* a new connection's connect (0: no limit) */
};

struct zk_pool_stats {
	uint64_t idle;      /* idle connections now */
	uint64_t in_use;    /* checked out now */
	uint64_t waiting;   /* tasks waiting in zk_pool_get for room */
	uint64_t connects;  /* new connections made */
	uint64_t reuses;    /* checkouts served by an idle connection */
	uint64_t dead;      /* idle connections the health check found dead */
	uint64_t expired;   /* idle connections closed by the idle timeout */
	uint64_t evicted;   /* idle connections closed to make room (max_total) */
};

/* Creates a pool; cfg NULL takes every default. Callable from any thread.
 * Returns 0 or -EINVAL (out NULL), -ENOMEM. */
int zk_pool_create(zk_pool_t **out, const struct zk_pool_config *cfg);

/* Closes every idle connection and frees the pool. Callable from any
 * thread. Returns 0, -EINVAL (p NULL), or -EBUSY (connections are checked
 * out or tasks wait in zk_pool_get; nothing is freed). */
int zk_pool_free(zk_pool_t *p);

/* A connection to addr, written as for zk_addr_parse ("127.0.0.1:80",
 * "[::1]:8080", "/run/app.sock", "@name"). Suspends. Returns the fd (owned
 * by the caller until zk_pool_put), or -errno: -EINVAL (p NULL, addr
 * unparsable), -ENAMETOOLONG, -EPERM outside a task, -ECANCELED, the
 * connect's errors (-ECONNREFUSED, -ETIMEDOUT after connect_timeout_ns,
 * -ENOENT for a missing Unix path, ...), -EMFILE, -ENOMEM. */
int zk_pool_get(zk_pool_t *p, const char *addr);

/* zk_pool_get on a socket address (AF_INET, AF_INET6 or AF_UNIX). Also
 * -EAFNOSUPPORT for another family, -EINVAL for sa NULL or len larger
 * than a sockaddr_storage. */
int zk_pool_get_addr(zk_pool_t *p, const struct sockaddr *sa, socklen_t len);

/* Gives fd back. reusable: the caller left the connection at a message
 * boundary (nothing unread, nothing half sent); it is kept idle unless its
 * address already has max_idle_per_key idle ones, else closed. Either way
 * a task waiting for room is woken. Never suspends; callable
 * from any thread. Returns 0 or -EINVAL (p NULL, fd not checked out from
 * this pool). */
int zk_pool_put(zk_pool_t *p, int fd, bool reusable);

/* Closes the idle connections past the idle timeout (zk_pool_get does it
 * lazily for the address it serves). Returns how many were closed, or
 * -EINVAL (p NULL). Callable from any thread. */
int zk_pool_reap(zk_pool_t *p);

/* A snapshot of the counters. Returns 0 or -EINVAL (a NULL argument). */
int zk_pool_stats(zk_pool_t *p, struct zk_pool_stats *st);

#ifdef __cplusplus
}
#endif
#endif
