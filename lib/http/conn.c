/* lib/http/conn.c — one connection's task: read requests, run the handler,
 * keep the connection alive between requests, close it.
 *
 * Buffering: rbuf holds what was received and not yet used, [pos, rlen).
 * A request's head is parsed in place (the parser keeps its scan offset,
 * so a head arriving in pieces is scanned once); the handler's request
 * points into rbuf. Pipelined requests already in rbuf are served without
 * a recv, and their responses gather in wbuf, which is flushed only before
 * the task would wait for more input (or when it fills): a burst of
 * pipelined requests costs one send.
 *
 * Timeouts: waiting for a new request on a kept-alive connection is
 * bounded by idle_timeout; once its first byte arrived the whole head must
 * follow within head_timeout, whatever the pace (a slowloris client
 * dribbling one byte per second is closed, with a 408). These waits carry
 * no linked timeout: arming and disarming one per recv cost more than the
 * recv's own submission (an extra hrtimer and CQE per request). Instead the
 * connection publishes a deadline while it waits and the server's sweep
 * (server.c) shuts the read side of a connection whose deadline passed,
 * which ends its recv. Body reads and sends keep their linked timeouts:
 * they are off the keep-alive fast path. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http_internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/time.h"

/* Lingering close bounds: how long to wait for the client's FIN after
 * ours, per recv, and how much of its input to drop meanwhile. */
#define LINGER_NS (500 * ZK_NSEC_PER_MSEC)
#define LINGER_MAX_BYTES (1u << 20)

/* Makes room after rlen: drops used bytes at the front, then grows up to
 * limit. Returns the free bytes (0: full at the limit). */
static size_t make_room(zk_http_conn_t *c, size_t limit)
{
	if (c->pos > 0 && c->rlen - c->pos < c->rcap / 2) {
		memmove(c->rbuf, c->rbuf + c->pos, c->rlen - c->pos);
		c->rlen -= c->pos;
		c->pos = 0;
	}
	if (c->rlen < c->rcap)
		return c->rcap - c->rlen;
	if (c->rcap >= limit)
		return 0;
	size_t ncap = c->rcap * 2;
	if (ncap > limit)
		ncap = limit;
	char *nb = realloc(c->rbuf, ncap);
	if (!nb)
		return 0;
	c->rbuf = nb;
	c->rcap = ncap;
	return c->rcap - c->rlen;
}

static void set_idle(zk_http_conn_t *c, bool idle)
{
	atomic_store(&c->idle, idle);
}

/* Reads the next request head into rbuf. Returns the head length, 0 when
 * the connection should just close (peer gone, idle timeout, stop), or a
 * negative parse / timeout error to answer with a status. */
static int read_head(zk_http_conn_t *c, zk_http_request_t *req)
{
	zk_http_server_t *srv = c->srv;
	zk_http_parser_t p;
	zk_http_parser_reset(&p);
	size_t limit = srv->cfg.limits.max_head + ZK__HTTP_BODY_SPACE;
	uint64_t head_deadline = 0;
	for (;;) {
		size_t have = c->rlen - c->pos;
		if (have) {
			int r = zk_http_parse(&p, c->rbuf + c->pos, have, req, &srv->cfg.limits);
			if (r != -EAGAIN)
				return r;
			if (!head_deadline)
				head_deadline = zk__http_deadline(srv->cfg.head_timeout_ns);
		}
		/* About to wait for input: responses queued so far go out. */
		if (c->wlen && zk__http_flush(c) < 0)
			return 0;
		if (!make_room(c, limit))
			return -EMSGSIZE;
		uint64_t deadline;
		if (head_deadline) {
			if (zk__http_coarse_now() >= head_deadline)
				return -ETIMEDOUT;
			deadline = head_deadline;
		} else {
			deadline = zk__http_deadline(srv->cfg.idle_timeout_ns);
			set_idle(c, true);
			if (atomic_load(&srv->stopping)) {
				set_idle(c, false);
				return 0;
			}
		}
		atomic_store_explicit(&c->deadline, deadline, memory_order_relaxed);
		ssize_t n = zk_recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
		bool expired = atomic_exchange_explicit(&c->deadline, 0, memory_order_relaxed) ==
			       ZK__HTTP_EXPIRED;
		set_idle(c, false);
		if (expired) {
			/* The read side is shut: nothing more will come. */
			c->broken = !head_deadline;
			return head_deadline ? -ETIMEDOUT : 0;
		}
		if (n <= 0) {
			c->broken = n < 0;
			return 0;
		}
		/* make_room may move the head to the front of rbuf: the
		 * parser's offsets are relative to its start, so p stays valid. */
		c->rlen += (size_t)n;
	}
}

/* Moves rbuf to a buffer of cap bytes, moving req's pointers with it. */
static bool regrow(zk_http_conn_t *c, zk_http_request_t *req, size_t cap)
{
	char *nb = malloc(cap);
	if (!nb)
		return false;
	memcpy(nb, c->rbuf, c->rlen);
	char *old = c->rbuf;
#define MOVE(p) ((p) = (p) ? nb + ((p) - old) : NULL)
	MOVE(req->method);
	MOVE(req->target);
	for (unsigned i = 0; i < req->nheaders; i++) {
		MOVE(req->headers[i].name);
		MOVE(req->headers[i].value);
	}
#undef MOVE
	free(old);
	c->rbuf = nb;
	c->rcap = cap;
	return true;
}

/* Sets up the body reader for req (its head is at pos, head_len long). */
static void begin_request(zk_http_conn_t *c, zk_http_request_t *req)
{
	c->req = req;
	c->minor = req->minor;
	c->is_head = req->is_head;
	c->body_start = c->pos + req->head_len;
	c->pos = c->body_start;
	c->body_chunked = req->chunked;
	c->body_left = req->chunked ? 0 : (req->content_length > 0 ? req->content_length : 0);
	memset(&c->chunk, 0, sizeof(c->chunk));
	c->body_done = !req->chunked && c->body_left == 0;
	c->body_read = 0;
	c->expect_continue = req->expect_continue && !c->body_done;
	c->body_error = false;
	c->status = 0;
	c->head_done = c->responded = c->chunked_out = c->no_body = false;
	c->body_bytes = 0;
	if (!req->keep_alive)
		c->closing = true;
	/* A chunked body is decoded behind the head: make room for it. */
	if (req->chunked && c->rcap - c->body_start < ZK__HTTP_BODY_SPACE / 2 &&
	    !regrow(c, req, c->body_start + ZK__HTTP_BODY_SPACE))
		c->body_error = true;
}

static void unlink_conn(zk_http_conn_t *c)
{
	zk_http_server_t *srv = c->srv;
	pthread_mutex_lock(&srv->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&srv->lock);
}

void *zk__http_conn_main(void *arg)
{
	zk_http_conn_t *c = arg;
	zk_http_server_t *srv = c->srv;
	c->rcap = ZK__HTTP_RBUF_MIN;
	c->rbuf = malloc(c->rcap);
	c->wbuf = malloc(ZK__HTTP_WBUF);
	zk_http_request_t *req = malloc(sizeof(*req));
	while (c->rbuf && c->wbuf && req && !c->closing && !c->broken) {
		int r = read_head(c, req);
		if (r == 0)
			break;
		if (r < 0) {
			/* A head we cannot read: answer and close (the rest of
			 * the stream cannot be trusted to start a request). */
			zk__http_error_response(c, zk_http_error_status(r));
			break;
		}
		begin_request(c, req);
		if (atomic_load(&srv->stopping))
			c->closing = true;
		if (req->content_length > (int64_t)srv->cfg.max_body) {
			zk__http_error_response(c, 413);
			break;
		}
		int hr = srv->cfg.handler(c, req, srv->cfg.ctx);
		if (c->broken)
			break;
		if (!c->responded) {
			if (c->status == 0) {
				zk_http_respond(c, 500, NULL, NULL, 0);
			} else {
				/* A response begun and not finished cannot be
				 * completed honestly: the client sees it cut. */
				c->closing = true;
				break;
			}
		}
		if (hr < 0)
			c->closing = true;
		if (!c->closing && zk__http_discard_body(c) < 0)
			c->closing = true;
	}
	if (c->wlen && !c->broken)
		zk__http_flush(c);
	unlink_conn(c);
	if (c->closing && !c->broken && c->rbuf) {
		/* Lingering close: closing a socket with unread input sends a
		 * reset, which can destroy our last response before the client
		 * reads it (a refused body still arriving, pipelined requests
		 * after a Connection: close). So: FIN first, then read and drop
		 * input until the client closes, for a bounded time and size. */
		zk_shutdown(c->fd, SHUT_WR);
		for (size_t drained = 0; drained < LINGER_MAX_BYTES;) {
			zk_timeout_next(LINGER_NS);
			ssize_t n = zk_recv(c->fd, c->rbuf, c->rcap, 0);
			if (n <= 0)
				break;
			drained += (size_t)n;
		}
	}
	zk_close(c->fd);
	free(req);
	free(c->rbuf);
	free(c->wbuf);
	free(c);
	zk_sem_release(&srv->slots, 1);
	if (atomic_fetch_sub(&srv->active, 1) == 1 && atomic_load(&srv->stopping)) {
		zk_notify_one(&srv->drained);
		zk_notify_one(&srv->sweep_wake); /* its last connection is gone */
	}
	zk__http_server_unref(srv);
	return NULL;
}
