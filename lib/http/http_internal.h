/* lib/http/http_internal.h — what the HTTP server's files share: the server
 * and connection records. server.c owns the server (listening socket,
 * accept loop, connection list, graceful stop); conn.c owns a connection
 * (its buffers, the request loop); response.c the response helpers and the
 * request body reader; date.c the cached Date header. */
#ifndef ZOKIO_HTTP_INTERNAL_H
#define ZOKIO_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "zokio/http.h"
#include "zokio/sync.h"
#include "zokio/task.h"

/* The response head of one request must fit in this (status line, Date,
 * Server and the handler's headers). */
#define ZK__HTTP_HEAD_MAX 8192
/* Response buffer: small responses of a pipelined burst gather here and
 * leave in one send. */
#define ZK__HTTP_WBUF 16384
/* First size of a connection's request buffer; it grows up to max_head
 * plus ZK__HTTP_BODY_SPACE only when a request needs it, so an idle
 * keep-alive connection costs little. */
#define ZK__HTTP_RBUF_MIN 2048
#define ZK__HTTP_BODY_SPACE 8192
/* Read timeouts are swept, not armed per recv (see server.c): the sweep
 * runs every quarter of the shortest timeout, at most every SWEEP_MAX, so
 * a timeout fires up to one sweep period late. */
#define ZK__HTTP_SWEEP_MAX (1000 * 1000 * 1000ull)
#define ZK__HTTP_SWEEP_MIN (1000 * 1000ull)
/* conn->deadline once the sweep has expired the connection. */
#define ZK__HTTP_EXPIRED UINT64_MAX

/* The clock read timeouts are kept on: CLOCK_MONOTONIC_COARSE, a vDSO
 * read of the last tick (no TSC read), because its few ms of resolution
 * are far below the sweep's. */
static inline uint64_t zk__http_coarse_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* now + timeout, saturated below ZK__HTTP_EXPIRED (a huge timeout means
 * never, not a wrapped deadline that has already passed). */
static inline uint64_t zk__http_deadline(uint64_t timeout_ns)
{
	uint64_t now = zk__http_coarse_now();
	return timeout_ns < ZK__HTTP_EXPIRED - 1 - now ? now + timeout_ns : ZK__HTTP_EXPIRED - 1;
}

struct zk_http_server {
	zk_http_server_config_t cfg;   /* defaults filled in */
	int lfd;                       /* listening socket */
	bool own_lfd;                  /* created by us: closed with the server */
	_Atomic unsigned refs;         /* owner + acceptor + each connection */
	_Atomic bool stopping;         /* zk_http_server_stop() was called */
	_Atomic bool ran;              /* zk_http_server_run() was entered */
	_Atomic bool acc_started;      /* the acceptor task began to run */
	_Atomic unsigned active;       /* connections open */
	zk_sem_t slots;                /* max_connections permits */
	zk_notify_t drained;           /* the last connection left while stopping */
	pthread_mutex_t lock;          /* conns list, acceptor handle */
	struct zk_http_conn *conns;    /* open connections (stop closes idle ones) */
	zk_task_t *acceptor;           /* the accept task while it runs */
	zk_task_t *sweeper;            /* the timeout sweep task (run() joins it) */
	_Atomic bool sweep_started;    /* it began to run (and owns a reference) */
	uint64_t sweep_ns;             /* its period */
	zk_notify_t sweep_wake;        /* the list became non-empty, or stop */
};

struct zk_http_conn {
	zk_http_server_t *srv;
	int fd;
	struct zk_http_conn *prev, *next; /* srv->conns, under srv->lock */
	_Atomic bool idle;             /* waiting for a request, nothing buffered */
	/* While read_head waits in recv: when (coarse clock) the sweep may
	 * end the wait by shutting the read side down; 0 when not waiting.
	 * The sweep swaps a passed deadline for ZK__HTTP_EXPIRED before its
	 * shutdown, the connection swaps it back to 0 after each recv: so
	 * exactly one of them sees the expiry. */
	_Atomic uint64_t deadline;
	bool closing;                  /* close once the response is out */
	bool broken;                   /* I/O failed: close without another write */
	/* Request bytes: [pos, rlen) are unparsed / unread. */
	char *rbuf;
	size_t rcap, rlen, pos;
	/* The request being served. */
	const zk_http_request_t *req;
	int minor;
	bool is_head;
	size_t body_start;             /* rbuf offset where its body begins */
	int64_t body_left;             /* Content-Length bytes still unread */
	bool body_chunked;
	zk_http_chunked_t chunk;
	bool body_done;
	uint64_t body_read;
	bool expect_continue;
	bool body_error;               /* framing error or too large: close */
	/* Response. */
	char *wbuf;
	size_t wlen;                   /* bytes queued in wbuf */
	size_t head_start;             /* where this response's head begins */
	int status;                    /* 0: not begun */
	bool head_done;                /* head ended (Content-Length or chunked) */
	bool responded;                /* the response is complete */
	bool chunked_out;              /* sending Transfer-Encoding: chunked */
	bool no_body;                  /* HEAD, 204, 304 */
	uint64_t body_bytes;           /* body bytes of this response */
};

/* date.c: the current "Date: ...\r\n" line (37 bytes) into out. */
#define ZK__HTTP_DATE_LINE 37
void zk__http_date_line(char *out);

/* conn.c */
void *zk__http_conn_main(void *arg);
void zk__http_server_unref(zk_http_server_t *srv);

/* response.c: send every queued byte; 0 or -errno (marks c broken). */
int zk__http_flush(zk_http_conn_t *c);
/* Writes the whole buffer (after flushing queued bytes); 0 or -errno. */
int zk__http_send_all(zk_http_conn_t *c, const void *p, size_t n);
/* A minimal response with no body for an error status, and close. */
void zk__http_error_response(zk_http_conn_t *c, int status);
/* Reads and drops the rest of the request body (up to max_body). 0 if the
 * connection can go on, < 0 if it must close. */
int zk__http_discard_body(zk_http_conn_t *c);

#endif
